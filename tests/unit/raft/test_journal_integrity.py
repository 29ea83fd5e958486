"""Torn tail or corruption: what opening a damaged raft.journal or raft.meta does.

Real files in tmp_path through OsAppendFile/OsAtomicFile, damaged byte by byte the way a
disk or a crash damages them. The rule under test (journal.py, "Torn tail or
corruption"): a bad record is cut as a torn tail only when no valid record follows it
and it lies past the commit index raft.meta records; anything else refuses to open with
CorruptStorage and leaves both files exactly as they were.
"""

from __future__ import annotations

import json
import logging
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from raftlog.cli import main as cli_main
from raftlog.cli.local_config import generate_local_config
from raftlog.cli.serve import EXIT_CORRUPT_DATA
from raftlog.errors import CorruptStorage, UnsupportedFormat
from raftlog.raft.journal import META_VERSION, DurableJournal
from raftlog.raft.lossy import LossyAppendFile, LossyDisk
from raftlog.raft.node import IDENTITY_FILE, IDENTITY_FORMAT
from raftlog.raft.storage import OsAppendFile, OsAtomicFile

pytestmark = pytest.mark.unit

HEADER = 12  # magic + format version
REC = 8  # u32 length, u32 crc
BODY = 16  # u64 index, u64 term


def open_journal(d: Path) -> DurableJournal:
    return DurableJournal(
        OsAppendFile(d / "raft.journal", durable=True),
        OsAtomicFile(d / "raft.meta", durable=True),
    )


def payload(i: int) -> bytes:
    return bytes(random.Random(i).randrange(256) for _ in range(20 + i % 50))


def write_log(d: Path, n: int, *, commit: int, term: int = 2) -> None:
    """Records 1..n, all synced, and raft.meta with ``commit`` (as the timer saves it)."""
    j = open_journal(d)
    j.setCurrentTerm(term, "n2")
    for i in range(1, n + 1):
        j.add(payload(i), i, 1 if i <= n // 2 else term)
    j.flush()
    j.setRaftCommitIndex(commit)
    j.onOneSecondTimer()
    j._destroy()
    again = open_journal(d)
    assert again.getRaftCommitIndex() == commit  # what raft.meta now says
    again._destroy()


def record_offsets(data: bytes) -> list[int]:
    """Byte offset of every record, parsed here independently of the journal code."""
    offsets, pos = [], HEADER
    while pos < len(data):
        offsets.append(pos)
        (length,) = struct.unpack_from(">I", data, pos)
        pos += REC + length
    assert pos == len(data)
    return offsets


def flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def refused(d: Path) -> CorruptStorage:
    """Opening must fail with CorruptStorage and change neither file."""
    before = snapshot(d)
    with pytest.raises(CorruptStorage) as info:
        open_journal(d)
    assert snapshot(d) == before
    assert str(d / "raft.journal") in str(info.value) or str(d / "raft.meta") in str(info.value)
    assert "refuses to start" in str(info.value) and "docs/OPERATIONS.md" in str(info.value)
    return info.value


# -- a bad record with valid records after it is corruption, wherever it is -------------

FIELDS = {"length": 0, "crc": 4, "index": REC, "term": REC + 8, "body": REC + BODY + 5}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("index", [1, 2, 67, 150, 199])
def test_flipped_byte_with_valid_records_after_it_is_refused(
    tmp_path: Path, field: str, index: int
) -> None:
    # raft.meta's commit index (10) is below most of the damage: what refuses here is
    # the valid record after the bad one, not the commit index.
    write_log(tmp_path, 200, commit=10)
    journal = tmp_path / "raft.journal"
    offsets = record_offsets(journal.read_bytes())
    at = offsets[index - 1]
    # The top byte of the length makes it claim far more than the file holds (the
    # records after it lie inside its claimed extent); any other byte a checksum fails.
    flip(journal, at + FIELDS[field])
    exc = refused(tmp_path)
    assert exc.offset == at and exc.file == str(journal)
    assert exc.last_good_index == (index - 1 if index > 1 else None)
    assert exc.next_index == index + 1
    assert exc.commit_index == 10
    assert f"byte offset {at} " in str(exc)
    assert f"a valid record follows at byte offset {offsets[index]} (index {index + 1}" in str(exc)
    assert "intact through index 200" in str(exc)
    if index > 1:
        assert f"index {index} is unreadable" in str(exc)


@pytest.mark.parametrize("seed", range(6))
def test_byte_flipped_anywhere_in_a_synced_journal_is_refused(tmp_path: Path, seed: int) -> None:
    """The issue's scenario: one byte flipped a third (or any fraction) of the way into a
    follower's journal used to cut everything behind it. Now it never opens."""
    write_log(tmp_path, 300, commit=300)
    journal = tmp_path / "raft.journal"
    size = len(journal.read_bytes())
    rng = random.Random(seed)
    at = size // 3 if seed == 0 else rng.randrange(HEADER, size)
    flip(journal, at, 1 << rng.randrange(8))
    refused(tmp_path)


def test_damaged_first_record_with_valid_records_after_it_is_refused(tmp_path: Path) -> None:
    """No good record before the damage (so no index to filter candidates on): the scan
    tries every offset, and refuses even with no raft.meta at all."""
    write_log(tmp_path, 20, commit=5)
    (tmp_path / "raft.meta").unlink()
    journal = tmp_path / "raft.journal"
    flip(journal, HEADER + REC + BODY + 2)
    exc = refused(tmp_path)
    assert exc.last_good_index is None and exc.next_index == 2 and exc.commit_index == 0


# -- the last record: torn tail (cut) or damaged vouched-for data (refused) -------------


def append_unsynced(d: Path, index: int, command: bytes) -> None:
    """Write one more record and stop as kill -9 would: no flush, no meta write."""
    j = open_journal(d)
    j.add(command, index, 2)
    j._file.close()


@pytest.mark.parametrize("keep", [0, 3, REC, REC + 10, REC + BODY, REC + BODY + 100])
def test_torn_last_record_past_the_commit_index_is_cut(
    tmp_path: Path, keep: int, caplog: pytest.LogCaptureFixture
) -> None:
    write_log(tmp_path, 20, commit=15)
    journal = tmp_path / "raft.journal"
    good = journal.read_bytes()
    append_unsynced(tmp_path, 21, b"z" * 400)
    # A power loss kept only ``keep`` bytes of the unsynced record 21 (``keep`` = 0 is
    # the extreme where the size grew but nothing arrived: a zero-filled record).
    torn = journal.read_bytes()[: len(good) + keep] if keep else good + bytes(REC + BODY + 400)
    journal.write_bytes(torn)
    with caplog.at_level(logging.WARNING, logger="raftlog.raft.journal"):
        j = open_journal(tmp_path)
    assert [e[1] for e in j] == list(range(1, 21))
    assert journal.read_bytes() == good  # cut back to the last good record
    (warning,) = [r.getMessage() for r in caplog.records if "torn tail" in r.getMessage()]
    assert f"at byte offset {len(good)} (index 21 onward" in warning
    assert "past the commit index raft.meta records (15)" in warning
    assert "no valid record follows" in warning
    # The journal takes the entry again where the torn one was, and keeps it.
    j.add(b"again", 21, 3)
    j.flush()
    j._destroy()
    assert list(open_journal(tmp_path))[-1] == (b"again", 21, 3)


@pytest.mark.parametrize("commit", [19, 20])
@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_damaged_last_record_is_cut_only_past_the_commit_index(
    tmp_path: Path, commit: int, damage: str
) -> None:
    """Nothing valid follows the last record either way; only raft.meta's commit index
    tells a crash's torn write (past it) from damage to a synced record (at or below)."""
    write_log(tmp_path, 20, commit=commit)
    journal = tmp_path / "raft.journal"
    data = journal.read_bytes()
    last = record_offsets(data)[-1]
    if damage == "flip":
        flip(journal, last + REC + BODY + 3)
    else:
        journal.write_bytes(data[:-7])
    if commit == 20:
        exc = refused(tmp_path)
        assert exc.offset == last and exc.last_good_index == 19 and exc.commit_index == 20
        assert exc.next_index is None
        assert "at or below the commit index raft.meta records (20)" in str(exc)
    else:
        assert [e[1] for e in open_journal(tmp_path)] == list(range(1, 20))
        assert journal.read_bytes() == data[:last]


@pytest.mark.parametrize("meta", ["present", "absent"])
def test_damaged_only_record(tmp_path: Path, meta: str) -> None:
    """The file's first record with nothing before it: raft.meta's bound (any commit
    index >= 1 covers the first record) refuses; a fresh node's torn no-op is cut."""
    write_log(tmp_path, 1, commit=1)
    if meta == "absent":
        (tmp_path / "raft.meta").unlink()
    journal = tmp_path / "raft.journal"
    journal.write_bytes(journal.read_bytes()[:-5])
    if meta == "present":
        exc = refused(tmp_path)
        assert "the file's first record" in str(exc)
    else:
        assert len(open_journal(tmp_path)) == 0
        assert len(journal.read_bytes()) == HEADER


# -- indexes and terms between valid records ---------------------------------------------


@pytest.mark.parametrize(
    ("records", "bad"),
    [
        ([(1, 1), (2, 1), (4, 1)], 4),  # a gap
        ([(1, 1), (2, 1), (2, 1)], 2),  # the same index twice
        ([(5, 1), (6, 1), (3, 1)], 3),  # a step back
        ([(1, 2), (2, 1)], 2),  # the term falls
    ],
)
def test_valid_records_out_of_order_are_refused(
    tmp_path: Path, records: list[tuple[int, int]], bad: int
) -> None:
    j = open_journal(tmp_path)
    for index, term in records:
        j.add(b"cmd", index, term)  # the journal writes what it is given
    j.flush()
    j._destroy()
    exc = refused(tmp_path)
    assert exc.next_index == bad
    assert exc.offset == record_offsets((tmp_path / "raft.journal").read_bytes())[-1]
    assert f"holds index {bad}" in str(exc)


# -- raft.meta -----------------------------------------------------------------------------


def test_every_single_byte_flip_in_raft_meta_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, 5, commit=5, term=7)
    meta = tmp_path / "raft.meta"
    good = meta.read_bytes()
    assert msgpack.unpackb(good)["v"] == META_VERSION == 2
    version_byte = good.index(b"\xa1v") + 2
    for at in range(len(good)):
        for mask in (0x01, 0x80, 0xFF):
            data = bytearray(good)
            data[at] ^= mask
            meta.write_bytes(bytes(data))
            if (at, mask) == (version_byte, 0x01):  # v2 -> v3: a newer format, exit 78
                with pytest.raises(UnsupportedFormat):
                    open_journal(tmp_path)
                continue
            exc = refused(tmp_path)
            assert exc.file == str(meta) and "raft meta" in str(exc)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x83\xa1v", b"garbage that is not msgpack \xc1", msgpack.packb([1, 2, 3])],
    ids=["empty", "cut-short", "garbage", "not-a-map"],
)
def test_undecodable_raft_meta_is_refused(tmp_path: Path, content: bytes) -> None:
    write_log(tmp_path, 5, commit=5)
    (tmp_path / "raft.meta").write_bytes(content)
    exc = refused(tmp_path)
    assert exc.offset is None


@pytest.mark.parametrize("version", [None, 1])
def test_old_format_raft_meta_is_read_and_rewritten_with_a_checksum(
    tmp_path: Path, version: int | None
) -> None:
    write_log(tmp_path, 10, commit=10)
    old: dict[str, object] = {"term": 7, "voted_for": "n3", "commit_index": 6}
    if version is not None:
        old["v"] = version
    meta = tmp_path / "raft.meta"
    meta.write_bytes(msgpack.packb(old, use_bin_type=True))
    j = open_journal(tmp_path)
    assert (j.getCurrentTerm(), j.getVotedForNodeId(), j.getRaftCommitIndex()) == (7, "n3", 6)
    j.setCurrentTerm(8, None)
    j.flush()
    j._destroy()
    new = msgpack.unpackb(meta.read_bytes())
    assert new["v"] == 2 and new["crc"] == zlib.crc32(new["body"])
    assert msgpack.unpackb(new["body"]) == {"term": 8, "voted_for": None, "commit_index": 6}


@pytest.mark.parametrize(("last", "refuse"), [(6, True), (7, False)])
def test_old_format_commit_index_is_the_bound_too(tmp_path: Path, last: int, refuse: bool) -> None:
    """A damaged last record at the old meta's commit index (6) is refused; past it, cut."""
    write_log(tmp_path, 10, commit=10)
    old = {"v": 1, "term": 7, "voted_for": "n3", "commit_index": 6}
    (tmp_path / "raft.meta").write_bytes(msgpack.packb(old, use_bin_type=True))
    journal = tmp_path / "raft.journal"
    offsets = record_offsets(journal.read_bytes())
    journal.write_bytes(journal.read_bytes()[: offsets[last]])  # ``last`` is the last record
    flip(journal, offsets[last - 1] + REC + BODY)
    if refuse:
        assert refused(tmp_path).commit_index == 6
    else:
        assert [e[1] for e in open_journal(tmp_path)] == list(range(1, last))


# -- where the file loses records raft.meta covers, raft.meta is lowered first ---------------


def torn_power_loss(disk: LossyDisk) -> None:
    """A power loss after which everything written reached the disk (a truncation
    included) except the last 3 bytes: the last record is torn."""
    disk.journal.content = disk.journal.content[:-3]
    disk.journal.durable = bytearray(disk.journal.content)
    disk.power_loss()


def committed_journal(disk: LossyDisk, n: int = 10) -> DurableJournal:
    j = DurableJournal(disk.journal, disk.meta)
    j.setCurrentTerm(1, None)
    for i in range(1, n + 1):
        j.add(b"e%d" % i, i, 1)
    j.flush()
    j.setRaftCommitIndex(n)
    j.onOneSecondTimer()
    assert j._persisted_commit == n
    return j


@pytest.mark.parametrize("how", ["clear", "compaction past the log", "conflict at the first"])
def test_emptying_the_file_lowers_the_saved_commit_index_first(how: str) -> None:
    """After each of these the next record written is the file's first. raft.meta must
    stop claiming records before that happens, or a crash tearing that first record would
    read as damage to committed data at the next open."""
    disk = LossyDisk()
    j = committed_journal(disk)
    if how == "clear":  # a snapshot from the leader replaces the log
        j.clear()
        j.add(b"snap-prev", 40, 2)
        j.add(b"snap-last", 41, 2)
    elif how == "compaction past the log":
        j.deleteEntriesTo(10)
        j.add(b"e11", 11, 1)
    else:  # the whole view deleted, then a conflicting entry: the file is truncated
        j.deleteEntriesFrom(0)
        j.add(b"other", 1, 2)
    assert j._persisted_commit == 0
    torn_power_loss(disk)
    j2 = reopen_after(disk)  # a torn tail, not corruption
    assert len(j2) == (1 if how == "clear" else 0)


# -- a power loss never reads as corruption (the bound in raft.meta stays honest) ----------


def reopen_after(disk: LossyDisk) -> DurableJournal:
    return DurableJournal(disk.journal.reopen(), disk.meta)


@pytest.mark.parametrize("seed", range(40))
def test_power_loss_at_any_moment_never_reads_as_corruption(seed: int) -> None:
    """Model check on a LossyDisk: commits that run ahead of the fsync (a single node),
    lazy meta writes, conflicts above the commit index, compaction, snapshot installs
    (clear), each followed at random by a power loss that keeps a torn prefix of the
    unsynced tail. Reopening must never raise, and every record raft.meta's commit index
    covered must come back unchanged."""
    rng = random.Random(seed)
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    term, commit = 1, 1
    j.setCurrentTerm(term, None)
    j.add(b"noop", 1, term)
    j.flush()
    for _ in range(150):
        action = rng.random()
        if action < 0.35:
            for _ in range(rng.randint(1, 3)):
                j.add(rng.randbytes(rng.randrange(1, 200)), j.last_index + 1, term)
        elif action < 0.5:
            commit = rng.randint(commit, j.last_index)  # may cover unsynced entries
            j.setRaftCommitIndex(commit)
        elif action < 0.62:
            j.onOneSecondTimer()
        elif action < 0.72:
            j.flush()
        elif action < 0.8 and j.last_index > commit:  # a new leader replaces a suffix
            term += 1
            j.setCurrentTerm(term, None)
            j.deleteEntriesFrom(rng.randint(commit + 1, j.last_index) - j.first_index)
            j.add(b"t%d" % term, j.last_index + 1, term)
        elif action < 0.85 and len(j) > 2 and j[1][1] <= commit:  # compaction
            j.deleteEntriesTo(rng.randint(1, commit - j.first_index))
        elif action < 0.88:  # a snapshot from the leader replaces the log
            snap = max(commit, j.last_index) + rng.randint(1, 5)
            j.clear()
            j.add(b"snap-prev", snap - 1, term)
            j.add(b"snap-last", snap, term)
            commit = snap
            j.setRaftCommitIndex(commit)
        else:
            bound = j._persisted_commit
            view = {e[1]: e for e in j}
            disk.power_loss(rng)
            j = reopen_after(disk)  # must not raise
            loaded = {e[1]: e for e in j}
            if bound >= 1:
                assert j.last_index >= bound
                for index in range(j.first_index, bound + 1):
                    assert loaded[index] == view[index]
            commit = min(commit, j.last_index)
            if not len(j):
                j.add(b"noop", 1, term)
                commit = 1


def test_model_check_fails_without_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: if raft.meta recorded PySyncObj's commit index as is (over
    unsynced records), power losses would make honest journals read as corrupt."""
    monkeypatch.setattr(DurableJournal, "_vouch_bound", lambda self: self._commit_index)
    failures = 0
    for seed in range(40):
        try:
            test_power_loss_at_any_moment_never_reads_as_corruption(seed)
        except (CorruptStorage, AssertionError):
            failures += 1
    assert failures > 0


# -- a large torn tail is scanned, not walked byte by byte in Python ----------------------


def test_megabytes_of_torn_tail_are_scanned_and_cut(tmp_path: Path) -> None:
    write_log(tmp_path, 10, commit=10)
    journal = tmp_path / "raft.journal"
    good = journal.read_bytes()
    append_unsynced(tmp_path, 11, random.Random(1).randbytes(8 << 20))
    journal.write_bytes(journal.read_bytes()[: len(good) + (6 << 20)])
    assert [e[1] for e in open_journal(tmp_path)] == list(range(1, 11))
    assert journal.read_bytes() == good


# -- raftlog serve refuses to start, with its own exit code --------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    pysyncobj_level = logging.getLogger("pysyncobj").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("pysyncobj").setLevel(pysyncobj_level)


@pytest.mark.parametrize("damaged", ["raft.journal", "raft.meta"])
@pytest.mark.usefixtures("restore_logging")
def test_serve_refuses_damaged_data_with_exit_65(
    tmp_path: Path, damaged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = generate_local_config(1)
    config = tmp_path / "cluster.toml"
    config.write_text(cluster.toml, encoding="utf-8")
    data_dir = tmp_path / "n1"
    data_dir.mkdir()
    identity = {"format": IDENTITY_FORMAT, "node_id": "n1", "cluster_name": cluster.name}
    (data_dir / IDENTITY_FILE).write_text(json.dumps(identity), encoding="utf-8")
    write_log(data_dir, 60, commit=40)
    path = data_dir / damaged
    at = record_offsets(path.read_bytes())[30] + REC + BODY if damaged == "raft.journal" else 20
    flip(path, at)
    before = path.read_bytes()
    args = ["serve", "--config", str(config), "--id", "n1", "--data-dir", str(data_dir)]
    assert cli_main(args) == EXIT_CORRUPT_DATA == 65
    err = capsys.readouterr().err
    assert "node n1 refuses to start, its Raft data is damaged" in err
    assert str(path) in err and "keep the data dir" in err.lower()
    if damaged == "raft.journal":
        assert f"byte offset {at - REC - BODY} " in err
        assert "Last good index 30, first index after the damage 32" in err
        assert "persisted commit index 40" in err
    else:
        assert "fails its checksum" in err or "does not decode" in err
    assert path.read_bytes() == before


def test_a_crash_copy_of_the_page_cache_is_never_corrupt() -> None:
    """kill -9 keeps every completed write: whatever the process wrote reads back clean,
    unsynced records included (the open syncs them)."""
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    j.setCurrentTerm(1, None)
    for i in range(1, 30):
        j.add(b"x" * i, i, 1)
        if i % 7 == 0:
            j.flush()
            j.setRaftCommitIndex(i)
            j.onOneSecondTimer()
    page_cache = bytearray(disk.journal.content)
    copy = LossyDisk(LossyAppendFile(page_cache, bytearray(page_cache)), disk.meta)
    assert [e[1] for e in DurableJournal(copy.journal, copy.meta)] == list(range(1, 30))


# -- a journal shorter than the commit index raft.meta records lost committed records ---


@pytest.mark.parametrize("how", ["zero bytes", "header only", "cut at a record boundary"])
def test_journal_shorter_than_the_saved_commit_index_is_refused(tmp_path: Path, how: str) -> None:
    write_log(tmp_path, 40, commit=30)
    path = tmp_path / "raft.journal"
    data = path.read_bytes()
    offsets = record_offsets(data)
    if how == "zero bytes":
        path.write_bytes(b"")
    elif how == "header only":
        path.write_bytes(data[:HEADER])
    else:
        path.write_bytes(data[: offsets[25]])  # records 1..25 intact, ending cleanly
    error = refused(tmp_path)
    assert "commit index 30" in str(error)
    assert error.commit_index == 30
    if how == "cut at a record boundary":
        assert "26..30 are missing" in str(error)
        assert error.last_good_index == 25


def test_deleted_journal_next_to_raft_meta_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, 40, commit=30)
    (tmp_path / "raft.journal").unlink()
    with pytest.raises(CorruptStorage) as info:
        open_journal(tmp_path)
    assert "no record at all" in str(info.value) and "commit index 30" in str(info.value)


def test_journal_ending_at_the_commit_index_opens(tmp_path: Path) -> None:
    write_log(tmp_path, 40, commit=30)
    path = tmp_path / "raft.journal"
    data = path.read_bytes()
    path.write_bytes(data[: record_offsets(data)[30]])  # records 1..30: all it vouched for
    j = open_journal(tmp_path)
    assert (j.first_index, j.last_index) == (1, 30)
    j._destroy()


def test_unsafe_switch_restores_the_old_cut_everything_rule(tmp_path: Path) -> None:
    """The negative control of the fault suite (RAFTLOG_UNSAFE_TORN_TAIL_ANY): a flipped
    byte mid-journal cuts every record from it on, committed ones included."""
    write_log(tmp_path, 60, commit=60)
    data = (tmp_path / "raft.journal").read_bytes()
    flip(tmp_path / "raft.journal", record_offsets(data)[19] + REC + BODY + 2)
    j = DurableJournal(
        OsAppendFile(tmp_path / "raft.journal", durable=True),
        OsAtomicFile(tmp_path / "raft.meta", durable=True),
        unsafe_cut_at_first_bad_record=True,
    )
    assert j.last_index == 19  # 41 committed records silently gone
    j._destroy()
