"""The one clock of the Raft layer: PySyncObj's own (CLOCK_MONOTONIC_RAW).

PySyncObj stamps every time it keeps (election deadlines, last responses) with
``pysyncobj.monotonic.monotonic``. On Linux that is CLOCK_MONOTONIC_RAW, which can be
hundreds of milliseconds apart from ``time.monotonic()`` (CLOCK_MONOTONIC): 254 ms were
measured on one machine here. Every time kept or compared inside ``raftlog.raft`` comes
from :func:`now`, so no comparison ever mixes the two. Callers outside this package get
durations (milliseconds since ...), never raw readings.
"""

from __future__ import annotations

from pysyncobj.monotonic import monotonic as _pysyncobj_monotonic

__all__ = ["now"]


def now() -> float:
    """Seconds on PySyncObj's monotonic clock. Any thread; never blocks."""
    return float(_pysyncobj_monotonic())
