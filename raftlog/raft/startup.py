"""Start-up checks between the state, the snapshot and the journal (before PySyncObj runs).

Three stores hold one node's view of the log: the LMDB state (applied through index A),
the snapshot file ``raft.snapshot`` (covers the log through index S, and names its last
two entries, ``prev`` and ``last``) and the journal (entries F..L). In a healthy data dir

- A <= max(S, L): nothing is applied before it is durable in the journal, and the
  journal drops a prefix only once a snapshot covering it is on disk;
- the journal continues the snapshot: F <= S - 1 and it holds ``prev`` and ``last``
  (PySyncObj compacts to exactly that), or it lies wholly at or below S (a snapshot
  installed from a leader, the journal not yet cleared);
- F <= max(S, A) + 1: there is no hole between what is applied or snapshotted and the
  journal, from which the node replays.

Anything else means a store was lost, replaced or rolled back behind the node's back:
the node would run with a state ahead of its log (it would vouch, in votes and acks, for
a log it does not hold) or PySyncObj would silently clear a journal that does not start
where the snapshot ends, entries after the snapshot (acknowledged ones) included. So
the node refuses to start with CorruptStorage (``raftlog serve`` exits 65), leaving
every file as found.

One repair is made: a journal that holds the snapshot's ``prev`` and ``last`` but still
starts earlier (a crash between writing a snapshot and compacting the journal) is
compacted to start at ``prev``, as PySyncObj would have done, instead of letting
PySyncObj clear it.

One rebuild is made: an LMDB state another boot left unsynced is discarded by the
state machine (``state/marker.py``: it may be damaged) and rebuilt here from the
node's own snapshot, or left empty when there is none (``rebuild_state``); the journal
must then reach back to the snapshot's end (``check_rebuild_covered``), from where
PySyncObj replays it. All of this runs on the thread calling ``RaftNode.start``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from raftlog.errors import CorruptStorage, UnsupportedFormat
from raftlog.raft.dump_format import read_dump_header
from raftlog.raft.journal import CORRUPTION_ADVICE
from raftlog.raft.snapshots import read_header
from raftlog.state.machine import StateMachine

__all__ = [
    "NO_JOURNAL",
    "RaftLog",
    "SnapshotEnds",
    "check_rebuild_covered",
    "check_stores_agree",
    "read_snapshot_ends",
    "rebuild_state",
]

log = logging.getLogger(__name__)

Entry = tuple[bytes, int, int]


class RaftLog(Protocol):
    """What the checks read of a journal (DurableJournal; an empty list when none)."""

    def __len__(self) -> int: ...

    def __getitem__(self, item: int) -> Any: ...

    def deleteEntriesTo(self, entry_to: int) -> None: ...  # noqa: N802 (PySyncObj's name)


@dataclass(frozen=True)
class SnapshotEnds:
    """The last two log entries a snapshot covers (PySyncObj's ``prev`` and ``last``)."""

    prev: Entry
    last: Entry


class _NoJournal(list[Entry]):
    """The journal of a data dir whose raft.journal is missing or empty."""

    def deleteEntriesTo(self, entry_to: int) -> None:  # noqa: N802
        raise AssertionError("an empty journal is never compacted")


NO_JOURNAL = _NoJournal()


def read_snapshot_ends(path: Path) -> SnapshotEnds | None:
    """The ends of the snapshot at ``path``; None when there is none (or an empty
    placeholder). CorruptStorage when its header cannot be read."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        with path.open("rb") as f:
            header, _ = read_header(f)
        return SnapshotEnds(_entry(header["prev"]), _entry(header["last"]))
    except Exception as exc:
        raise CorruptStorage(
            f"snapshot {path} cannot be read ({exc}). {CORRUPTION_ADVICE}", file=str(path)
        ) from exc


def _entry(value: Any) -> Entry:
    command, index, term = value
    return (bytes(command), int(index), int(term))


def check_stores_agree(
    journal: RaftLog,
    applied: tuple[int, int],
    snapshot: SnapshotEnds | None,
    *,
    where: Path,
    compact: bool = True,
) -> None:
    """Raise CorruptStorage unless state, snapshot and journal fit (module docstring).

    May compact the journal to start at the snapshot's ``prev`` (the one repair; not
    with ``compact=False``, the offline checker). Runs in RaftNode.start, before
    PySyncObj loads anything.
    """
    applied_index, applied_term = applied
    snap_index = snapshot.last[1] if snapshot else 0
    if snapshot is not None and len(journal):
        _align_to_snapshot(journal, snapshot, where, compact=compact)
    first = journal[0][1] if len(journal) else None
    last = journal[-1][1] if len(journal) else 0
    held = max(snap_index, last)

    def refuse(why: str) -> None:
        raise CorruptStorage(
            f"the data in {where} does not fit together: {why}. Applied index "
            f"{applied_index}, snapshot through {snap_index or 'none'}, journal "
            f"{'empty' if first is None else f'{first}..{last}'}. {CORRUPTION_ADVICE}",
            file=str(where),
            last_good_index=held,
        )

    if applied_index > held:
        refuse(
            f"the state has applied index {applied_index}, beyond everything the journal "
            f"and the snapshot hold ({held}): a journal (or raft.snapshot) was lost or "
            "replaced by an older one"
        )
    if first is not None and first > max(snap_index, applied_index) + 1:
        refuse(
            f"the journal starts at index {first}, but the state and the snapshot end at "
            f"{max(snap_index, applied_index)}: indexes in between are missing"
        )
    if first is not None and first <= applied_index <= last and applied_index > snap_index:
        term = journal[applied_index - first][2]
        if term != applied_term:
            refuse(
                f"the state applied index {applied_index} from term {applied_term}, but the "
                f"journal holds that index from term {term}: they are of different logs"
            )


def _align_to_snapshot(
    journal: RaftLog, snapshot: SnapshotEnds, where: Path, *, compact: bool
) -> None:
    first, last = journal[0][1], journal[-1][1]
    prev_index, last_index = snapshot.prev[1], snapshot.last[1]
    if last <= last_index:
        return  # the snapshot covers the whole journal: PySyncObj replaces it, losing nothing
    holds = first <= prev_index and all(
        journal[e[1] - first][1:] == e[1:] for e in (snapshot.prev, snapshot.last)
    )
    if not holds:
        raise CorruptStorage(
            f"the journal in {where} holds entries {first}..{last}, past the snapshot's end "
            f"({last_index}), but not the snapshot's last two entries (index {prev_index} "
            f"term {snapshot.prev[2]}, index {last_index} term {snapshot.last[2]}): it does "
            "not continue the snapshot, and starting would clear it, entries past the "
            f"snapshot included. {CORRUPTION_ADVICE}",
            file=str(where / "raft.journal"),
            last_good_index=last_index,
        )
    for entry in (snapshot.prev, snapshot.last):
        if bytes(journal[entry[1] - first][0]) != entry[0]:
            raise CorruptStorage(
                f"the journal in {where} holds index {entry[1]} term {entry[2]} with other "
                f"bytes than the snapshot names for it. {CORRUPTION_ADVICE}",
                file=str(where / "raft.journal"),
                last_good_index=entry[1] - 1,
            )
    if first < prev_index and compact:
        log.info(
            "raft journal: compacting %d..%d to start at the snapshot's index %d (a crash "
            "came between writing the snapshot and compacting the journal)",
            first,
            last,
            prev_index,
        )
        journal.deleteEntriesTo(prev_index - first)


def rebuild_state(state: StateMachine, dump: Path) -> None:
    """Rebuild a state the state machine discarded (``state.discarded``): restore the
    node's own snapshot ``dump`` (checksums verified) or keep the empty state when there
    is none; logs one WARNING. CorruptStorage when the snapshot cannot be used;
    FatalStorageError when local storage fails."""
    source = "empty (no raft.snapshot)"
    if dump.exists() and dump.stat().st_size > 0:
        try:
            with dump.open("rb") as f:
                _header, offset = read_dump_header(f)
            state.restore(dump, offset=offset)
        except (UnsupportedFormat, OSError, ValueError, KeyError) as exc:
            raise CorruptStorage(
                f"{dump} (this node's own snapshot) cannot rebuild the state discarded "
                f"after a machine restart: {exc}. {CORRUPTION_ADVICE}",
                file=str(dump),
            ) from exc
        source = f"{dump} (through index {state.last_applied()[0]})"
    log.warning(
        "REBUILDING STATE: %s; rebuilt from %s, the raft journal replays the rest",
        state.discarded,
        source,
    )


def check_rebuild_covered(journal: RaftLog, applied: int, where: Path) -> None:
    """A rebuilt state (applied through ``applied``, the snapshot's end or 0) needs the
    journal from ``applied + 1`` on: CorruptStorage (exit 65) when it starts later."""
    first = journal[0][1] if len(journal) else None
    if first is not None and first > applied + 1:
        raise CorruptStorage(
            f"the data in {where} cannot rebuild the state discarded after a machine "
            f"restart: the snapshot ends at {applied or 'none'} but the journal starts at "
            f"index {first}, so indexes {applied + 1}..{first - 1} exist nowhere on this "
            f"node. {CORRUPTION_ADVICE}",
            file=str(where / "raft.journal"),
            last_good_index=applied,
        )
