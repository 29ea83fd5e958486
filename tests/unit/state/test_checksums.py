"""Checksums on real files: a flipped byte in data.mdb or a snapshot is never served,
never installed, and never makes a node drop what it has (issue 9, deliverable 3)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest

from raftlog import checksum
from raftlog.commands import Append, AppendEntry, SetClusterMeta, Trim, encode
from raftlog.errors import CorruptStorage, UnsupportedFormat
from raftlog.raft.dump_format import DumpVerifier, encode_dump_header
from raftlog.raft.snapshot_check import verify_snapshot_file
from raftlog.state.machine import StateMachine
from raftlog.state.snapshot import CorruptSnapshot
from raftlog.state.store import DB_NAMES, K_FORMAT, STATE_FORMAT
from raftlog.state.verify import Problem, verify_state_dir

pytestmark = pytest.mark.unit

CID = "0b6f3c2e-8d51-4f0e-9a57-3f7c1b2d4e60"
MARK = b'"needle-0123456789abcdef"'


@pytest.fixture(autouse=True)
def _verification_on() -> Iterator[None]:
    checksum.set_verification(True)
    yield
    checksum.set_verification(True)


def fill(path: Path) -> StateMachine:
    sm = StateMachine(path, durability="fsync")
    cmds = [SetClusterMeta(cluster_id=CID, name="t")]
    cmds += [Append("a", (AppendEntry(b'"v%d"' % i, None),), i) for i in range(20)]
    cmds += [Append("b", (AppendEntry(MARK, "k"),), 99), Trim("a", 3)]
    for i, cmd in enumerate(cmds, start=1):
        sm.apply(i, 1, encode(cmd))
    return sm


def flip(path: Path, needle: bytes, delta: int = 0) -> int:
    """Flip one bit of the byte ``delta`` after the start of every copy of ``needle`` in
    ``path`` (LMDB's copy-on-write leaves stale copies of a page in data.mdb; one of
    them is the live one); returns the first file offset."""
    data = bytearray(path.read_bytes())
    first = at = data.find(needle)
    assert at >= 0, "needle not found"
    while at >= 0:
        data[at + delta] ^= 0x01
        at = data.find(needle, at + 1)
    path.write_bytes(bytes(data))
    return first + delta


# --- entries --------------------------------------------------------------------------


def test_a_flipped_byte_in_a_stored_value_is_refused_on_every_read_path(tmp_path: Path) -> None:
    fill(tmp_path / "s").close()
    flip(tmp_path / "s" / "data.mdb", MARK, 5)
    with StateMachine(tmp_path / "s") as sm:
        assert sm.read_range("a", 0, 100)  # other records still read
        with pytest.raises(CorruptStorage, match="log 'b' offset 0") as info:
            sm.get_entry("b", 0)
        assert info.value.file == str(tmp_path / "s" / "data.mdb")
        with pytest.raises(CorruptStorage):
            sm.read_range("b", 0, 10)
        with pytest.raises(CorruptStorage):
            sm.digest()
        assert sm.corruption is not None
        with pytest.raises(CorruptStorage):  # a snapshot never carries it
            sm.snapshot(tmp_path / "x.snap")
    assert not (tmp_path / "x.snap").exists()
    problems = verify_state_dir(tmp_path / "s")
    assert [p.where for p in problems] == ["db entries, log 'b' offset 0"]
    assert "checksum mismatch" in problems[0].what


def test_unsafe_switch_serves_the_damage(tmp_path: Path) -> None:
    fill(tmp_path / "s").close()
    flip(tmp_path / "s" / "data.mdb", MARK, 5)
    checksum.set_verification(False)
    with StateMachine(tmp_path / "s") as sm:
        entry = sm.get_entry("b", 0)
        assert entry is not None and entry.value_json != MARK  # the negative control


def test_a_value_moved_under_another_key_is_refused(tmp_path: Path) -> None:
    fill(tmp_path / "s").close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    with env.begin(write=True) as txn:
        db = env.open_db(b"entries", txn=txn)
        raw = txn.get(b"a\x00" + (5).to_bytes(8, "big"), db=db)
        txn.put(b"a\x00" + (6).to_bytes(8, "big"), raw, db=db)
    env.close()
    with StateMachine(tmp_path / "s") as sm:
        assert sm.get_entry("a", 5) is not None
        with pytest.raises(CorruptStorage, match="offset 6"):
            sm.get_entry("a", 6)


def test_apply_meeting_a_damaged_record_fail_stops(tmp_path: Path) -> None:
    fill(tmp_path / "s").close()
    flip(tmp_path / "s" / "data.mdb", b'"v10"', 2)
    with StateMachine(tmp_path / "s") as sm:
        index = sm.last_applied()[0] + 1
        with pytest.raises(CorruptStorage):
            sm.apply(index, 1, encode(Trim("a", 15)))  # walks (and counts) entries 3..14
        assert sm.last_applied()[0] == index - 1


@pytest.mark.parametrize("db", [b"logs", b"meta"])
def test_logs_and_meta_records_are_sealed_too(tmp_path: Path, db: bytes) -> None:
    fill(tmp_path / "s").close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    with env.begin(write=True) as txn:
        handle = env.open_db(db, txn=txn)
        key = b"a" if db == b"logs" else b"last_applied"
        raw = bytearray(txn.get(key, db=handle))
        raw[1] ^= 0x01
        txn.put(key, bytes(raw), db=handle)
    env.close()
    with pytest.raises(CorruptStorage), StateMachine(tmp_path / "s") as sm:
        sm.log_info("a")
    assert verify_state_dir(tmp_path / "s")


def test_format_1_store_is_upgraded_at_open(tmp_path: Path) -> None:
    with fill(tmp_path / "s") as sm:
        before = sm.digest()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=8)  # turn it back into format 1
    with env.begin(write=True) as txn:
        for name in DB_NAMES:
            db = env.open_db(name, txn=txn)
            for key, value in list(txn.cursor(db=db)):
                txn.put(key, value[:-4], db=db)
        txn.put(K_FORMAT, msgpack.packb(1), db=env.open_db(b"meta", txn=txn))
    env.close()
    assert verify_state_dir(tmp_path / "s")[0].what.startswith("format 1")
    with StateMachine(tmp_path / "s") as sm:
        assert sm.digest() == before  # same logical content, now sealed
    assert verify_state_dir(tmp_path / "s") == []


def test_verify_state_dir_reports_log_disagreements_and_missing_dirs(tmp_path: Path) -> None:
    assert verify_state_dir(tmp_path / "nope")[0].what.startswith("missing")
    fill(tmp_path / "s").close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    with env.begin(write=True) as txn:
        db = env.open_db(b"entries", txn=txn)
        txn.delete(b"a\x00" + (7).to_bytes(8, "big"), db=db)
    env.close()
    listing = sorted(os.listdir(tmp_path / "s"))
    problems = verify_state_dir(tmp_path / "s")
    assert sorted(os.listdir(tmp_path / "s")) == listing  # created nothing
    assert problems and all(p.where == "db logs, log 'a'" for p in problems)
    assert any("counts 17 entries, 16 are stored" in p.what for p in problems)
    assert isinstance(problems[0], Problem)


# --- snapshots ------------------------------------------------------------------------


def test_a_flipped_byte_in_a_snapshot_is_refused_and_the_old_state_kept(tmp_path: Path) -> None:
    with fill(tmp_path / "src") as src:
        src.snapshot(tmp_path / "s.snap")
    assert verify_snapshot_file(tmp_path / "s.snap") == []
    at = flip(tmp_path / "s.snap", MARK, 5)
    problems = verify_snapshot_file(tmp_path / "s.snap")
    assert len(problems) == 1 and "checksum mismatch" in problems[0].what
    with StateMachine(tmp_path / "dst") as dst:
        dst.apply(1, 1, encode(Append("mine", (AppendEntry(b"1", None),), 0)))
        before = dst.digest()
        with pytest.raises(CorruptSnapshot, match="checksum mismatch"):
            dst.restore(tmp_path / "s.snap")
        assert dst.digest() == before
    assert not (tmp_path / "dst.restore").exists()
    assert at > 0


def test_a_damaged_record_inside_a_snapshot_with_a_matching_trailer_is_refused(
    tmp_path: Path,
) -> None:
    with fill(tmp_path / "src") as src:
        src.snapshot(tmp_path / "s.snap")
    data = bytearray((tmp_path / "s.snap").read_bytes())
    at = data.find(MARK)
    data[at + 5] ^= 0x01
    body = bytes(data[:-20])  # re-seal the file: the trailer matches the damaged bytes
    data = body + checksum.encode_trailer(b"RLSNAPCK", len(body), checksum.crc(body))
    (tmp_path / "s.snap").write_bytes(data)
    assert "checksum mismatch" in verify_snapshot_file(tmp_path / "s.snap")[0].what
    with StateMachine(tmp_path / "dst") as dst, pytest.raises(CorruptSnapshot):
        dst.restore(tmp_path / "s.snap")


def dump_file(tmp_path: Path) -> Path:
    """A raft.snapshot as the SnapshotWriter writes it."""
    header: dict[str, Any] = {
        "format": 2,
        "last": [b"x", 22, 1],
        "prev": [b"y", 21, 1],
        "cluster": [],
        "cluster_id": CID,
    }
    path = tmp_path / "raft.snapshot"
    with fill(tmp_path / "src") as src, src.begin_snapshot() as source:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        try:
            head = encode_dump_header(header)
            os.write(fd, head)
            source.write_to(fd, crc_base=0)
        finally:
            os.close(fd)
    return path


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 1 << 10, 1 << 20])
def test_dump_verifier_checks_chunks_as_they_are_shipped(tmp_path: Path, size: int) -> None:
    path = dump_file(tmp_path)
    data = path.read_bytes()
    good = DumpVerifier()
    for c in chunks(data, size):
        good.feed(c)
    assert good.problem() is None
    assert verify_snapshot_file(path) == []
    for where in (3, 20, data.find(MARK) + 5, len(data) - 3):
        damaged = bytearray(data)
        damaged[where] ^= 0x10
        bad = DumpVerifier()
        for c in chunks(bytes(damaged), size):
            bad.feed(c)
        assert bad.problem() is not None, where
        assert verify_snapshot_file(path) == []  # the file itself is untouched


def test_snapshot_writer_refuses_a_damaged_received_dump_and_keeps_its_own(
    tmp_path: Path,
) -> None:
    from raftlog.raft.snapshots import SnapshotWriter

    (tmp_path / "leader").mkdir()
    good = dump_file(tmp_path / "leader")
    node = tmp_path / "node"
    node.mkdir()
    fatal: list[BaseException] = []
    with StateMachine(node / "state") as sm:
        sm.apply(1, 1, encode(Append("mine", (AppendEntry(b"1", None),), 0)))
        writer = SnapshotWriter(sm, node / "raft.snapshot", fatal.append, synchronous=True)
        writer.remove_placeholder()
        # The node's own dump, verified and kept.
        writer.serialize(str(node / "raft.snapshot.tmp"), ((b"c", 1, 1), (b"c", 1, 1), []))
        assert writer.check() != 0
        # (synchronous mode: the build is done; PySyncObj's rename of its placeholder
        # would come too late here, so drop the placeholder instead)
        (node / "raft.snapshot.tmp").unlink()
        own = (node / "raft.snapshot").read_bytes()
        before = sm.digest()
        # PySyncObj renames a received file over the dump, then calls the deserializer.
        received = node / "raft.snapshot.1.tmp"
        shutil.copy(good, received)
        flip(received, MARK, 5)
        os.replace(received, node / "raft.snapshot")
        with pytest.raises(UnsupportedFormat, match="checksum mismatch"):
            writer.deserialize(str(node / "raft.snapshot"))
        assert not fatal  # refused, not a fail-stop
        assert sm.digest() == before
        assert (node / "raft.snapshot").read_bytes() == own  # our dump is back
        assert (node / "raft.snapshot.refused").exists()
        assert writer.stats.refused == 1
        # The leader sends it again, intact: installed.
        shutil.copy(good, received)
        os.replace(received, node / "raft.snapshot")
        last, _prev, _cluster = writer.deserialize(str(node / "raft.snapshot"))
        assert last[1] == 22 and sm.last_applied()[0] == 23  # the leader's whole state
        assert not fatal


def test_a_damaged_own_dump_at_start_is_a_fail_stop(tmp_path: Path) -> None:
    from raftlog.raft.snapshots import SnapshotWriter

    path = dump_file(tmp_path)
    flip(path, MARK, 5)
    fatal: list[BaseException] = []
    with StateMachine(tmp_path / "node") as sm:
        writer = SnapshotWriter(sm, path, fatal.append)
        writer.remove_placeholder()
        with pytest.raises(CorruptStorage):
            writer.deserialize(str(path))
        assert isinstance(fatal[0], CorruptStorage) and fatal[0].file == str(path)
        assert sm.last_applied() == (0, 0)
    assert path.exists()  # left as found


def test_format_constants() -> None:
    assert STATE_FORMAT == 2


# --- the service: a damaged record is never answered --------------------------------


def test_a_read_meeting_damage_answers_node_stopped_and_fail_stops(tmp_path: Path) -> None:
    import asyncio

    from raftlog.config import config_from_mapping
    from raftlog.errors import NodeStopped
    from raftlog.service.log_service import LogService
    from raftlog.service.types import ReadOptions

    fill(tmp_path / "s").close()
    flip(tmp_path / "s" / "data.mdb", MARK, 5)
    nodes = [{"id": "n1", "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"}]
    config = config_from_mapping({"cluster": {"nodes": nodes}}, node_id="n1", data_dir=tmp_path)

    class Node:
        applied_index = 23
        stopped: list[BaseException] = []

        def __init__(self, state: StateMachine) -> None:
            self.state = state

        def fail_stop(self, exc: BaseException) -> None:
            self.stopped.append(exc)

    with StateMachine(tmp_path / "s") as sm:
        node = Node(sm)
        svc = LogService(node, config)  # type: ignore[arg-type]
        options = ReadOptions(consistency="any")
        entries = asyncio.run(svc.read_range("a", 3, 5, options)).entries
        assert len(entries) == 5 and not node.stopped
        with pytest.raises(NodeStopped, match="damaged data"):
            asyncio.run(svc.get_entry("b", 0, options))
        assert isinstance(node.stopped[0], CorruptStorage)
        with pytest.raises(NodeStopped):
            asyncio.run(svc.read_range("b", 0, 5, options))


def test_unsafe_skip_checksums_switch(caplog: pytest.LogCaptureFixture) -> None:
    from raftlog.cli.serve import fault_switches

    assert not fault_switches({}).skip_checksums and checksum.verification_enabled()
    with caplog.at_level("WARNING"):
        switches = fault_switches({"RAFTLOG_UNSAFE_SKIP_CHECKSUMS": "1"})
    assert switches.skip_checksums and not checksum.verification_enabled()
    assert "UNSAFE test switch: checksums" in caplog.text
