"""DurableJournal: what survives a simulated loss of every unsynced write."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from raftlog.errors import FatalStorageError, UnsupportedFormat
from raftlog.raft.journal import DurableJournal
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.storage import OsAppendFile, OsAtomicFile

pytestmark = pytest.mark.unit


def reopen(disk: LossyDisk) -> DurableJournal:
    return DurableJournal(disk.journal.reopen(), disk.meta)


def test_flushed_entries_survive_power_loss_and_unflushed_do_not() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 6):
        j.add(b"cmd%d" % i, i, 1)
    j.flush()
    j.add(b"cmd6", 6, 1)  # written to the "page cache" only
    assert j.dirty
    disk.power_loss()
    j2 = reopen(disk)
    assert [e[1] for e in j2] == [1, 2, 3, 4, 5]
    assert j2[4] == (b"cmd5", 5, 1)


def test_one_fsync_covers_many_entries() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 101):
        j.add(b"x", i, 1)
    j.flush()
    j.flush()  # nothing new: no second fsync
    assert j.stats.fsyncs == 1
    assert j.stats.entries_added == 100


@pytest.mark.parametrize("seed", range(20))
def test_torn_tail_is_cut_and_durable_prefix_kept(seed: int) -> None:
    rng = random.Random(seed)
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 11):
        j.add(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), i, 2)
    j.flush()
    for i in range(11, 21):
        j.add(b"y" * rng.randrange(1, 300), i, 2)
    disk.power_loss(rng)  # keeps a random, possibly torn, prefix of the unsynced tail
    j2 = reopen(disk)
    indices = [e[1] for e in j2]
    assert indices[:10] == list(range(1, 11))
    assert indices == list(range(1, len(indices) + 1))
    # The journal is usable after the cut: appends land after the last good record.
    j2.add(b"after", len(indices) + 1, 3)
    j2.flush()
    disk.power_loss()
    assert reopen(disk)[-1] == (b"after", len(indices) + 1, 3)


def test_term_and_vote_are_durable_only_after_flush() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    j.setCurrentTerm(7, "127.0.0.1:7001")
    j.flush()  # the transport does this before the vote response leaves
    j.setCurrentTerm(8, None)  # not flushed: no message depended on it
    disk.power_loss()
    j2 = reopen(disk)
    assert (j2.getCurrentTerm(), j2.getVotedForNodeId()) == (7, "127.0.0.1:7001")


def test_truncate_then_append_is_durable() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 6):
        j.add(b"old", i, 1)
    j.flush()
    j.deleteEntriesFrom(2)  # conflict with a new leader: drop indices 3..5
    j.add(b"new", 3, 2)
    j.flush()
    disk.power_loss()
    assert list(reopen(disk)) == [(b"old", 1, 1), (b"old", 2, 1), (b"new", 3, 2)]


def test_compaction_keeps_suffix_durably() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 11):
        j.add(b"e%d" % i, i, 1)
    j.deleteEntriesTo(7)  # a snapshot covers 1..7
    disk.power_loss()
    j2 = reopen(disk)
    assert [e[1] for e in j2] == [8, 9, 10]
    assert j2.term_at(9) == 1 and j2.term_at(7) is None


def test_commit_index_is_saved_lazily() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    j.setRaftCommitIndex(42)
    assert disk.meta.content is None
    j.onOneSecondTimer()
    assert reopen(disk).getRaftCommitIndex() == 42


def test_real_files_roundtrip(tmp_path: Path) -> None:
    j = DurableJournal(
        OsAppendFile(tmp_path / "raft.journal", durable=True),
        OsAtomicFile(tmp_path / "raft.meta", durable=True),
    )
    j.add(b"a", 1, 1)
    j.setCurrentTerm(3, "n2")
    j.flush()
    j._destroy()
    j2 = DurableJournal(
        OsAppendFile(tmp_path / "raft.journal", durable=True),
        OsAtomicFile(tmp_path / "raft.meta", durable=True),
    )
    assert list(j2) == [(b"a", 1, 1)]
    assert j2.getCurrentTerm() == 3


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"RLJRNL02" + b"\0\0\0\2")
    with pytest.raises(UnsupportedFormat, match="understands"):
        DurableJournal(OsAppendFile(path, durable=True), OsAtomicFile(tmp_path / "m", durable=True))
    (tmp_path / "other").write_bytes(b"PYSYNCOBJ\0\0\0")
    with pytest.raises(UnsupportedFormat, match="not a raftlog journal"):
        DurableJournal(
            OsAppendFile(tmp_path / "other", durable=True),
            OsAtomicFile(tmp_path / "m", durable=True),
        )


# -- storage errors: the first one closes the journal to writes (fail-stop) ---------------


def failing_journal(disk: LossyDisk) -> tuple[DurableJournal, list[FatalStorageError]]:
    fatal: list[FatalStorageError] = []
    j = DurableJournal(disk.journal, disk.meta, on_fatal=fatal.append)
    for i in range(1, 4):
        j.add(b"ok%d" % i, i, 1)
    j.flush()
    return j, fatal


def test_enospc_on_append_is_fatal_and_nothing_is_written_after_it() -> None:
    disk = LossyDisk()
    j, fatal = failing_journal(disk)
    disk.journal.faults["append"] = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(FatalStorageError, match=r"memory:raft\.journal.*ENOSPC"):
        j.add(b"torn", 4, 1)
    assert len(fatal) == 1 and fatal[0] is j.failed
    assert [e[1] for e in j] == [1, 2, 3]  # memory never runs ahead of the file
    torn_size = len(disk.journal.content)
    # Even once the disk has room again, the journal writes nothing more: an entry
    # appended now would land after the half record and be cut with it at the next open.
    del disk.journal.faults["append"]
    with pytest.raises(FatalStorageError, match="earlier failure"):
        j.add(b"later", 4, 1)
    with pytest.raises(FatalStorageError):
        j.flush()
    j.setCurrentTerm(2, "n2")  # in memory only; the flush that would persist it refuses
    with pytest.raises(FatalStorageError):
        j.flush()
    assert disk.journal.calls["append"] == 4  # three good ones, the failed one
    assert len(disk.journal.content) == torn_size
    assert len(fatal) == 1  # reported once
    # The operator frees space and restarts: the half record is cut, the rest kept.
    j._destroy()
    assert list(reopen(disk)) == [(b"ok1", 1, 1), (b"ok2", 2, 1), (b"ok3", 3, 1)]


def test_failed_fsync_is_never_retried() -> None:
    disk = LossyDisk()
    j, fatal = failing_journal(disk)
    syncs = disk.journal.calls["sync"]
    j.add(b"unsynced", 4, 1)
    disk.journal.faults["sync"] = OSError(errno.EIO, "Input/output error")
    with pytest.raises(FatalStorageError, match=r"syncing memory:raft\.journal.*EIO"):
        j.flush()
    # A retry could "succeed" on pages the kernel already dropped (fsyncgate): the
    # journal must keep saying "not durable" without asking the disk again.
    del disk.journal.faults["sync"]
    for _ in range(3):
        with pytest.raises(FatalStorageError):
            j.flush()
    j._destroy()  # closing a failed journal does not flush either
    assert disk.journal.calls["sync"] == syncs + 1
    assert j.synced_version != j.version
    assert len(fatal) == 1


def test_failed_meta_write_is_fatal_and_term_stays_unpersisted() -> None:
    disk = LossyDisk()
    j, fatal = failing_journal(disk)
    disk.meta.faults["write"] = OSError(errno.EIO, "Input/output error")
    j.setCurrentTerm(5, "n2")  # granting a vote: the transport flushes before answering
    with pytest.raises(FatalStorageError, match=r"writing memory:raft\.meta.*EIO"):
        j.flush()
    assert disk.meta.durable is None
    with pytest.raises(FatalStorageError):
        j.flush()
    assert disk.meta.calls["write"] == 1
    assert len(fatal) == 1


@pytest.mark.parametrize("operation", ["truncate", "replace"])
def test_failed_truncate_or_rewrite_leaves_memory_as_it_was(operation: str) -> None:
    disk = LossyDisk()
    j, fatal = failing_journal(disk)
    before = list(j)
    disk.journal.faults[operation] = OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(FatalStorageError, match="EROFS"):
        if operation == "truncate":
            j.deleteEntriesFrom(1)
        else:
            j.deleteEntriesTo(2)
    assert list(j) == before
    assert len(fatal) == 1


def test_unreadable_journal_at_open_is_fatal() -> None:
    disk = LossyDisk()
    disk.journal.faults["read_all"] = OSError(errno.EIO, "Input/output error")
    with pytest.raises(FatalStorageError, match=r"reading memory:raft\.journal.*EIO"):
        DurableJournal(disk.journal, disk.meta)


def test_real_enospc_from_the_kernel_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    fatal: list[FatalStorageError] = []
    j = DurableJournal(
        OsAppendFile(path, durable=True),
        OsAtomicFile(tmp_path / "raft.meta", durable=True),
        on_fatal=fatal.append,
    )
    j.add(b"a", 1, 1)
    j.flush()
    # Swap the journal's descriptor for /dev/full: every write now gets ENOSPC from the
    # kernel, through the production OsAppendFile code.
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, j._file._fd)
    finally:
        os.close(full)
    with pytest.raises(FatalStorageError) as info:
        j.add(b"b" * 100, 2, 1)
    assert str(path) in str(info.value) and "ENOSPC" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert fatal == [j.failed]
    j._destroy()
