"""``raftlog check-data DIR``: scan a stopped node's data dir and report every problem.

What it checks, with the same rules the node applies at start-up (so a clean report
means the node would start on this data, and a problem here is one it would refuse):

- ``node.json``: readable, names a node and a cluster; whether the node votes yet;
- ``raft.meta`` and ``raft.journal``: opened with the journal's own code on *copies*
  in a temporary directory (opening may cut a torn tail; the originals are never
  written), so a record damaged in the middle, a damaged raft.meta or a journal shorter
  than the commit index raft.meta vouches for is reported with its byte offset and
  indexes; a torn tail past the commit index is a note, not a problem;
- the LMDB state (``state/``): every record's checksum and shape, and the agreement of
  each log's summary with its entries (``raftlog.state.verify``);
- ``raft.snapshot``: header, checksums, every record of the embedded state;
- that state, snapshot and journal fit together (``raftlog.raft.startup``).

Nothing in DIR is created or modified. Run it on a stopped node: a node writing at the
same time can make it report damage that is not there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from raftlog.errors import CorruptStorage, FatalStorageError, UnsupportedFormat
from raftlog.raft.identity import IDENTITY_FILE
from raftlog.raft.journal import DurableJournal
from raftlog.raft.snapshot_check import verify_snapshot_file
from raftlog.raft.startup import check_stores_agree, read_snapshot_ends
from raftlog.raft.storage import OsAppendFile, OsAtomicFile
from raftlog.state.store import DB_NAMES, K_LAST_APPLIED, MAX_DBS, unpack_last_applied
from raftlog.state.verify import Problem, verify_state_dir

__all__ = ["DataReport", "check_data_dir", "render"]


@dataclass
class DataReport:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_data_dir(path: Path) -> DataReport:
    """Scan data dir ``path`` (module docstring). Never raises for damaged data."""
    report = DataReport(path)
    if not path.is_dir():
        report.problems.append(Problem(str(path), "directory", "missing: no data dir here"))
        return report
    _check_identity(path, report)
    journal = _check_journal(path, report)
    state_problems = verify_state_dir(path / "state")
    report.problems.extend(state_problems)
    snapshot = path / "raft.snapshot"
    snapshot_ok = True
    if snapshot.exists() and snapshot.stat().st_size > 0:
        found = verify_snapshot_file(snapshot)
        report.problems.extend(found)
        snapshot_ok = not found
    if (path / "raft.snapshot.refused").exists():
        report.notes.append(
            "raft.snapshot.refused: a snapshot this node received and refused as damaged "
            "(kept for inspection; the node does not use it)"
        )
    if journal is not None and not state_problems and snapshot_ok:
        try:
            applied = _applied(path / "state")
            check_stores_agree(
                journal, applied, read_snapshot_ends(snapshot), where=path, compact=False
            )
        except (CorruptStorage, FatalStorageError, UnsupportedFormat) as exc:
            report.problems.append(Problem(str(path), "state, snapshot and journal", str(exc)))
    return report


def _check_identity(path: Path, report: DataReport) -> None:
    file = path / IDENTITY_FILE
    if not file.exists():
        report.problems.append(
            Problem(str(file), "file", "missing: the node cannot tell whose data this is")
        )
        return
    try:
        stored = json.loads(file.read_text(encoding="utf-8"))
        node, cluster = stored["node_id"], stored["cluster_name"]
    except (ValueError, KeyError, TypeError) as exc:
        report.problems.append(Problem(str(file), "file", f"unreadable: {exc}"))
        return
    voting = "votes" if stored.get("voter", True) else "does not vote yet (pending)"
    report.notes.append(f"{IDENTITY_FILE}: node {node!r} of cluster {cluster!r}; {voting}")


def _check_journal(path: Path, report: DataReport) -> DurableJournal | None:
    """Open copies of raft.journal and raft.meta; the journal, or None when damaged."""
    with tempfile.TemporaryDirectory(prefix="raftlog-check-") as tmp:
        copies = Path(tmp)
        sizes = {}
        for name in ("raft.journal", "raft.meta"):
            if (path / name).exists():
                shutil.copyfile(path / name, copies / name)
                sizes[name] = (path / name).stat().st_size
        try:
            journal = DurableJournal(
                OsAppendFile(copies / "raft.journal", durable=False),
                OsAtomicFile(copies / "raft.meta", durable=False),
            )
        except CorruptStorage as exc:
            where = "file" if exc.offset is None else f"byte offset {exc.offset}"
            file = exc.file.replace(str(copies), str(path))
            report.problems.append(Problem(file, where, str(exc).replace(str(copies), str(path))))
            return None
        except (FatalStorageError, UnsupportedFormat) as exc:
            report.problems.append(Problem(str(path / "raft.journal"), "file", str(exc)))
            return None
        cut = sizes.get("raft.journal", 0) - (copies / "raft.journal").stat().st_size
        if "raft.journal" in sizes and cut > 0:
            report.notes.append(
                f"raft.journal: a torn tail of {cut} bytes past the commit index (the last "
                "write, cut short by a crash, never vouched for); the node cuts it at start"
            )
        if len(journal):
            report.notes.append(
                f"raft.journal: indexes {journal[0][1]}..{journal[-1][1]}, commit index "
                f"{journal.getRaftCommitIndex()} recorded"
            )
        elif "raft.journal" in sizes:
            report.notes.append("raft.journal: empty")
        else:
            report.notes.append("raft.journal: missing (a node that has never started)")
        journal._destroy()
        return journal  # its entries stay readable in memory


def _applied(state_dir: Path) -> tuple[int, int]:
    if not (state_dir / "data.mdb").exists():
        return (0, 0)
    env = lmdb.open(str(state_dir), readonly=True, lock=False, subdir=True, max_dbs=MAX_DBS)
    try:
        with env.begin() as txn:
            meta = env.open_db(DB_NAMES[0], txn=txn, create=False)
            return unpack_last_applied(txn.get(K_LAST_APPLIED, db=meta))
    finally:
        env.close()


def render(report: DataReport) -> str:
    lines = [f"raftlog check-data {report.path}"]
    lines += [f"  note: {note}" for note in report.notes]
    for p in report.problems:
        lines.append(f"  PROBLEM {p.file} [{p.where}]: {p.what}")
    if report.ok:
        lines.append("OK: no problem found; the node would start on this data.")
    else:
        lines.append(
            f"{len(report.problems)} problem(s) found: the node refuses to start (or stops) "
            "on this data. See docs/OPERATIONS.md, 'Damaged or lost data'."
        )
    return "\n".join(lines)
