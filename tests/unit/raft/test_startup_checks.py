"""The state never runs ahead of the log: start-up checks between LMDB, snapshot, journal.

Real files: a one-node cluster writes through ``raftlog serve``'s node (RaftNode on
127.0.0.1), stops, then a store is removed or replaced the way a careless restore or a
lost disk does it; the next start must refuse with CorruptStorage (``raftlog serve``:
exit 65) and leave every file as found. The journal/snapshot alignment is also tested on
journals built directly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from raftlog.cli import main as cli_main
from raftlog.cli.local_config import generate_local_config
from raftlog.cli.serve import EXIT_CORRUPT_DATA
from raftlog.commands import Append, AppendEntry
from raftlog.config import Config, config_from_mapping, load_config
from raftlog.errors import CorruptStorage
from raftlog.raft.journal import DurableJournal
from raftlog.raft.node import RaftNode
from raftlog.raft.startup import SnapshotEnds, check_stores_agree
from raftlog.raft.storage import OsAppendFile, OsAtomicFile
from tests.support.cluster import FAST_TIMING, free_port, wait_until

pytestmark = pytest.mark.unit


def one_node(data_dir: Path) -> Config:
    node = {"id": "n1", "raft": f"127.0.0.1:{free_port()}", "http": f"127.0.0.1:{free_port()}"}
    raw = {"cluster": {"name": "solo", "nodes": [node]}, "node": dict(FAST_TIMING)}
    return config_from_mapping(raw, node_id="n1", data_dir=data_dir)


def run_and_write(data_dir: Path, n: int) -> int:
    """Start the node, append ``n`` entries, stop; returns its applied index."""
    node = RaftNode(one_node(data_dir))
    node.start()
    try:
        wait_until(lambda: node.is_leader(), 15, "leadership")

        async def write() -> None:
            for i in range(n):
                entry = AppendEntry(value_json=json.dumps(i).encode())
                cmd = Append(log="l", entries=(entry,), timestamp_ms=int(time.time() * 1000))
                await node.propose(cmd, timeout=5)

        asyncio.run(write())
        return node.applied_index
    finally:
        node.stop()


def files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def refuses(data_dir: Path) -> CorruptStorage:
    node = RaftNode(one_node(data_dir))
    before = files(data_dir)
    with pytest.raises(CorruptStorage) as info:
        node.start()
    node.stop()
    after = files(data_dir)
    after.pop("state/lock.mdb", None)
    before.pop("state/lock.mdb", None)
    assert after == before, "a refused start changed the data dir"
    assert node.failed is not None
    return info.value


@pytest.mark.timeout(60)
def test_state_ahead_of_a_lost_journal_refuses_to_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "n1"
    applied = run_and_write(data_dir, 20)
    assert applied >= 20
    (data_dir / "raft.journal").unlink()
    (data_dir / "raft.meta").unlink()
    error = refuses(data_dir)
    assert f"applied index {applied}" in str(error)
    assert "beyond everything the journal and the snapshot hold" in str(error)


@pytest.mark.timeout(60)
def test_journal_replaced_by_an_older_copy_refuses_to_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "n1"
    run_and_write(data_dir, 5)
    old = tmp_path / "old"
    old.mkdir()
    for name in ("raft.journal", "raft.meta"):
        shutil.copy(data_dir / name, old / name)
    run_and_write(data_dir, 20)
    for name in ("raft.journal", "raft.meta"):
        shutil.copy(old / name, data_dir / name)  # a restore of the journal alone
    error = refuses(data_dir)
    assert "beyond everything the journal" in str(error)


@pytest.mark.timeout(60)
def test_untouched_data_dir_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "n1"
    applied = run_and_write(data_dir, 10)
    assert run_and_write(data_dir, 3) == applied + 4  # its new no-op and three entries


@pytest.mark.timeout(60)
def test_serve_exits_65_when_the_journal_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = generate_local_config(1)
    config_file = tmp_path / "cluster.toml"
    config_file.write_text(cluster.toml, encoding="utf-8")
    data_dir = tmp_path / "n1"
    node = RaftNode(load_config(config_file, node_id="n1", data_dir=data_dir))
    node.start()
    wait_until(lambda: node.state.last_applied()[0] >= 1, 15, "the cluster id applied")
    node.stop()
    (data_dir / "raft.journal").unlink()
    (data_dir / "raft.meta").unlink()
    args = ["serve", "--config", str(config_file), "--id", "n1", "--data-dir", str(data_dir)]
    assert cli_main(args) == EXIT_CORRUPT_DATA
    err = capsys.readouterr().err
    assert "refuses to start" in err and "beyond everything the journal" in err
    assert not (data_dir / "raft.journal").exists() or (data_dir / "raft.journal").stat().st_size


# -- journal against snapshot ------------------------------------------------------------


def journal_with(d: Path, first: int, last: int, term: int = 1) -> DurableJournal:
    j = DurableJournal(
        OsAppendFile(d / "raft.journal", durable=True), OsAtomicFile(d / "raft.meta", durable=True)
    )
    for i in range(first, last + 1):
        j.add(b"c%d" % i, i, term)
    j.flush()
    return j


def ends(prev: int, last: int, term: int = 1) -> SnapshotEnds:
    return SnapshotEnds((b"c%d" % prev, prev, term), (b"c%d" % last, last, term))


def test_journal_longer_than_the_snapshot_is_compacted_not_cleared(tmp_path: Path) -> None:
    """A crash between writing the snapshot and compacting the journal: PySyncObj would
    clear the journal (its first entries are not the snapshot's) and lose 31..50."""
    j = journal_with(tmp_path, 1, 50)
    check_stores_agree(j, (30, 1), ends(29, 30), where=tmp_path)
    assert (j[0][1], j[-1][1]) == (29, 50)
    j._destroy()
    again = journal_with(tmp_path, 51, 50)  # reopen: the compaction is on disk
    assert (again[0][1], again[-1][1]) == (29, 50)
    again._destroy()


@pytest.mark.parametrize(
    ("first", "last", "snap", "why"),
    [
        (35, 50, (29, 30), "does not continue the snapshot"),  # a hole after the snapshot
        (1, 50, None, "beyond everything"),  # state at 60 with no snapshot past 50
    ],
)
def test_journal_that_does_not_continue_the_snapshot_is_refused(
    tmp_path: Path, first: int, last: int, snap: tuple[int, int] | None, why: str
) -> None:
    j = journal_with(tmp_path, first, last)
    applied = (60, 1) if snap is None else (30, 1)
    with pytest.raises(CorruptStorage) as info:
        check_stores_agree(j, applied, ends(*snap) if snap else None, where=tmp_path)
    assert why in str(info.value)
    j._destroy()


def test_journal_past_the_snapshot_in_another_term_is_refused(tmp_path: Path) -> None:
    j = journal_with(tmp_path, 1, 50, term=1)
    with pytest.raises(CorruptStorage) as info:
        check_stores_agree(j, (30, 2), ends(29, 30, term=2), where=tmp_path)
    assert "does not continue the snapshot" in str(info.value)
    assert (j[0][1], j[-1][1]) == (1, 50)  # untouched
    j._destroy()


def test_state_of_another_log_than_the_journal_is_refused(tmp_path: Path) -> None:
    j = journal_with(tmp_path, 1, 50, term=1)
    with pytest.raises(CorruptStorage) as info:
        check_stores_agree(j, (40, 3), None, where=tmp_path)
    assert "different logs" in str(info.value)
    j._destroy()


def test_journal_starting_after_the_applied_index_without_a_snapshot_is_refused(
    tmp_path: Path,
) -> None:
    j = journal_with(tmp_path, 10, 50)
    with pytest.raises(CorruptStorage) as info:
        check_stores_agree(j, (5, 1), None, where=tmp_path)
    assert "starts at index 10" in str(info.value) and "missing" in str(info.value)
    j._destroy()
