"""The dirty marker: which boot of the machine may hold unsynced LMDB commits.

The state machine commits without syncing (the Raft journal is the durable record). A
process crash loses nothing of a committed LMDB transaction: the kernel's page cache
holds it. A *system* crash (power loss, kernel panic) may lose the last transactions
and, under MDB_NOSYNC, even leave pages that older transactions freed overwritten by
unsynced ones, i.e. a damaged file. So LMDB is trusted only within the boot that wrote
it: before the first unsynced commit the marker file ``dirty`` in the state directory
records the kernel's boot id (written to a temp file, fsynced, renamed, directory
fsynced); a clean close removes it after its final sync. At open:

* no marker, or the marker of this boot: the state is what the last process committed
  (a kill -9 loses nothing), and the Raft journal replays what it lacks;
* a marker of another boot, or one that cannot be read: the state is not trusted and
  the owner rebuilds it (from the node's snapshot and the journal).

Any thread; every function may block on a small fsync.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from raftlog.state.store import atomic_write, fsync_dir

__all__ = ["BOOT_ID_FILE", "MARKER_NAME", "BootId", "clear", "read", "read_boot_id", "write"]

MARKER_NAME = "dirty"
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_PREFIX = "raftlog-unsynced-since-boot "

# Returns this boot's id, or None when the system does not say (then no marker matches
# and every unclean start rebuilds: the safe side).
BootId = Callable[[], str | None]


def read_boot_id() -> str | None:
    """The kernel's boot id (Linux), or None when it cannot be read."""
    try:
        value = BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def read(state_dir: Path) -> str | None:
    """The boot id the marker in ``state_dir`` names; None when there is no marker.

    A marker that exists but cannot be read or parsed yields "" (matches no boot)."""
    path = state_dir / MARKER_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""
    if not text.startswith(_PREFIX) or not text.endswith("\n"):
        return ""
    return text[len(_PREFIX) : -1]


def write(state_dir: Path, boot_id: str | None) -> None:
    """Record durably that ``state_dir`` may hold unsynced commits of ``boot_id``.
    Raises OSError."""
    data = f"{_PREFIX}{boot_id or 'unknown'}\n".encode()
    atomic_write(state_dir / MARKER_NAME, data, durable=True)


def clear(state_dir: Path) -> None:
    """Remove the marker (after the final sync of a clean close). Raises OSError."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_dir / MARKER_NAME)
    fsync_dir(state_dir)
