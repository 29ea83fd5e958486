"""``raftlog check-data DIR``: every kind of damage reported with its place, nothing changed.

Real data dirs, written by a one-node cluster (RaftNode on 127.0.0.1) and then damaged
byte by byte; the checker runs through the CLI entry point as an operator runs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from raftlog.cli import main as cli_main
from raftlog.commands import Append, AppendEntry
from raftlog.config import config_from_mapping
from raftlog.raft.node import RaftNode
from tests.support.cluster import FAST_TIMING, free_port, wait_until

pytestmark = pytest.mark.unit

NEEDLE = "needle-value-"


def write_node(data_dir: Path, n: int, **settings: Any) -> None:
    node_addr = {"id": "n1", "raft": f"127.0.0.1:{free_port()}", "http": f"127.0.0.1:{free_port()}"}
    raw = {"cluster": {"name": "solo", "nodes": [node_addr]}, "node": {**FAST_TIMING, **settings}}
    node = RaftNode(config_from_mapping(raw, node_id="n1", data_dir=data_dir))
    node.start()
    try:
        wait_until(node.is_leader, 15, "leadership")

        async def write() -> None:
            for i in range(n):
                value = json.dumps(f"{NEEDLE}{i:06d}").encode()
                entry = AppendEntry(value_json=value)
                cmd = Append(log="l", entries=(entry,), timestamp_ms=int(time.time() * 1000))
                await node.propose(cmd, timeout=5)

        asyncio.run(write())
        if settings.get("snapshot_min_entries"):
            wait_until(lambda: node.snapshots.stats.taken >= 1, 15, "a snapshot")
    finally:
        node.stop()


def digest(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != "lock.mdb"
    }


def check(d: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    before = digest(d)
    code = cli_main(["check-data", str(d)])
    assert digest(d) == before, "check-data modified the data dir"
    return code, capsys.readouterr().out


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def flip_value(path: Path, value: str) -> int:
    """Flip one byte of every copy of ``value`` in the file; how many copies."""
    data = bytearray(path.read_bytes())
    needle = value.encode()
    start, copies = 0, 0
    while (at := data.find(needle, start)) >= 0:
        data[at + len(needle) - 1] ^= 0x01
        start, copies = at + len(needle), copies + 1
    path.write_bytes(bytes(data))
    return copies


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("healthy") / "n1"
    write_node(d, 60)
    return d


def copy_of(src: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "n1"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lock.mdb"))
    return dst


def test_healthy_data_dir_is_ok(healthy: Path, tmp_path: Path, capsys: Any) -> None:
    d = copy_of(healthy, tmp_path)
    code, out = check(d, capsys)
    assert code == 0, out
    assert "OK: no problem found" in out
    assert "node 'n1' of cluster 'solo'; votes" in out
    assert "raft.journal: indexes 1.." in out


def test_byte_flipped_mid_journal_is_reported_with_its_offset(
    healthy: Path, tmp_path: Path, capsys: Any
) -> None:
    d = copy_of(healthy, tmp_path)
    journal = d / "raft.journal"
    at = journal.read_bytes().find(f"{NEEDLE}000020".encode())
    assert at > 0
    flip(journal, at + 3)
    code, out = check(d, capsys)
    assert code == 1, out
    assert f"PROBLEM {journal} [byte offset" in out
    assert "a valid record follows" in out


def test_byte_flipped_in_a_stored_value_is_reported_with_log_and_offset(
    healthy: Path, tmp_path: Path, capsys: Any
) -> None:
    d = copy_of(healthy, tmp_path)
    assert flip_value(d / "state" / "data.mdb", f"{NEEDLE}000033") >= 1
    code, out = check(d, capsys)
    assert code == 1, out
    assert "data.mdb" in out and "offset 33" in out and "checksum" in out


def test_lost_journal_is_reported(healthy: Path, tmp_path: Path, capsys: Any) -> None:
    d = copy_of(healthy, tmp_path)
    (d / "raft.journal").unlink()
    code, out = check(d, capsys)
    assert code == 1, out
    assert "commit index" in out and "no record at all" in out


def test_lost_journal_and_meta_are_reported_as_state_ahead_of_the_log(
    healthy: Path, tmp_path: Path, capsys: Any
) -> None:
    d = copy_of(healthy, tmp_path)
    (d / "raft.journal").unlink()
    (d / "raft.meta").unlink()
    code, out = check(d, capsys)
    assert code == 1, out
    assert "beyond everything the journal and the snapshot hold" in out


def test_torn_tail_is_a_note_not_a_problem(healthy: Path, tmp_path: Path, capsys: Any) -> None:
    d = copy_of(healthy, tmp_path)
    journal = d / "raft.journal"
    # A half-written record after the last one, as a crash mid-append leaves it.
    with journal.open("ab") as f:
        f.write(struct.pack(">II", 40, 12345) + b"partial")
    code, out = check(d, capsys)
    assert code == 0, out
    assert "torn tail of 15 bytes" in out


def test_missing_data_dir(tmp_path: Path, capsys: Any) -> None:
    code = cli_main(["check-data", str(tmp_path / "nowhere")])
    assert code == 1
    assert "missing: no data dir here" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_damaged_snapshot_file_is_reported(tmp_path: Path, capsys: Any) -> None:
    d = tmp_path / "n1"
    write_node(d, 80, snapshot_min_entries=30)
    snapshot = d / "raft.snapshot"
    assert snapshot.exists() and snapshot.stat().st_size > 0
    code, out = check(d, capsys)
    assert code == 0, out
    data = snapshot.read_bytes()
    at = data.find(NEEDLE.encode())
    assert at > 0
    flip(snapshot, at + 2)
    code, out = check(d, capsys)
    assert code == 1, out
    assert f"PROBLEM {snapshot}" in out
