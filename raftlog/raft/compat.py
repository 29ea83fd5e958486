"""The PySyncObj version check. raftlog subclasses PySyncObj's journal, transport and
node classes and reads a few of its private attributes, so it runs only on the exact
version it was written and tested against."""

from __future__ import annotations

from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION

__all__ = ["REQUIRED_PYSYNCOBJ", "check_pysyncobj_version"]

REQUIRED_PYSYNCOBJ = "0.3.17"


def check_pysyncobj_version(found: str = PYSYNCOBJ_VERSION) -> None:
    if found != REQUIRED_PYSYNCOBJ:
        raise RuntimeError(
            f"raftlog needs pysyncobj=={REQUIRED_PYSYNCOBJ} (it relies on its internals); "
            f"found {found}. Install the pinned version: "
            f"pip install pysyncobj=={REQUIRED_PYSYNCOBJ}"
        )
