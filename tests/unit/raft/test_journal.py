"""DurableJournal: what survives a simulated loss of every unsynced write."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from raftlog.errors import FatalStorageError, UnsupportedFormat
from raftlog.raft.journal import DurableJournal
from raftlog.raft.lossy import LossyAppendFile, LossyAtomicFile, LossyDisk
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


def test_open_syncs_what_a_killed_process_left_in_the_page_cache() -> None:
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 4):
        j.add(b"cmd%d" % i, i, 1)  # never flushed: the process is killed (kill -9)
    j2 = reopen(disk)  # the restarted node reads the page cache back ...
    assert not j2.dirty  # ... and believes it durable, so it must be
    assert disk.journal.durable == disk.journal.content
    disk.power_loss()
    assert [e[1] for e in reopen(disk)] == [1, 2, 3]


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
    for i in range(1, 51):
        j.add(b"e", i, 1)
    j.flush()
    j.setRaftCommitIndex(42)
    assert disk.meta.content is None
    j.onOneSecondTimer()
    assert reopen(disk).getRaftCommitIndex() == 42


def test_saved_commit_index_never_covers_an_unsynced_record() -> None:
    """raft.meta's commit index bounds what a torn tail may cut at the next open, so it
    must only cover synced records (a single node counts its own entries committed
    before it syncs them)."""
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 6):
        j.add(b"e", i, 1)
    j.flush()
    j.add(b"e", 6, 1)  # written, not synced
    j.setRaftCommitIndex(6)
    j.onOneSecondTimer()
    assert reopen(disk).getRaftCommitIndex() == 5
    j.flush()  # now 6 is synced: the next timer raises the saved bound
    j.onOneSecondTimer()
    assert reopen(disk).getRaftCommitIndex() == 6
    j.setRaftCommitIndex(100)  # beyond the log: capped at its synced end
    j.onOneSecondTimer()
    assert reopen(disk).getRaftCommitIndex() == 6


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
    if operation == "truncate":
        j.deleteEntriesFrom(1)  # lazy: the file is truncated by the conflicting add
    before = list(j)
    disk.journal.faults[operation] = OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(FatalStorageError, match="EROFS"):
        if operation == "truncate":
            j.add(b"conflict", 2, 2)
        else:
            j.deleteEntriesTo(2)
    assert list(j) == before
    assert len(fatal) == 1
    with pytest.raises(FatalStorageError, match="earlier failure"):
        j.deleteEntriesFrom(0)  # closed to every mutation, even one that needs no I/O
    with pytest.raises(FatalStorageError, match="earlier failure"):
        j.add(b"ok2", 2, 1)  # even one that would only re-use a record on disk
    assert list(j) == before


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


# -- lazy truncation: entries PySyncObj deletes and adds back are never off the disk -----


def entries(n: int, term: int = 1, tag: bytes = b"e") -> list[tuple[bytes, int, int]]:
    return [(tag + b"%d" % i, i, term) for i in range(1, n + 1)]


def filled(disk: LossyDisk, n: int = 10) -> DurableJournal:
    j = DurableJournal(disk.journal, disk.meta)
    for entry in entries(n):
        j.add(*entry)
    j.flush()
    return j


def crash_and_reload(disk: LossyDisk) -> list[tuple[bytes, int, int]]:
    """Power loss (unsynced writes dropped): a fresh journal on a copy of what is left."""
    platter = disk.journal.durable
    meta = LossyAtomicFile(disk.meta.durable, disk.meta.durable)
    copy = LossyDisk(LossyAppendFile(bytearray(platter), bytearray(platter)), meta)
    return list(DurableJournal(copy.journal, copy.meta))


def kill_and_reload(disk: LossyDisk) -> list[tuple[bytes, int, int]]:
    """kill -9: the page cache (truncations included) survives; a fresh journal on it."""
    page_cache = bytearray(disk.journal.content)
    copy = LossyDisk(LossyAppendFile(bytearray(page_cache), bytearray(page_cache)), disk.meta)
    return list(DurableJournal(copy.journal, copy.meta))


def test_resent_identical_entries_are_reused_and_never_leave_the_disk() -> None:
    disk = LossyDisk()
    j = filled(disk, 10)
    before = bytes(disk.journal.content)
    writes = ("append", "truncate", "sync", "replace")
    calls = {op: disk.journal.calls[op] for op in writes}
    j.deleteEntriesFrom(4)  # PySyncObj: prevLogIdx 4, resending 5..10
    assert len(j) == 4 and j.last_index == 4 and j.shadow_len == 6
    assert not j.dirty
    assert crash_and_reload(disk) == kill_and_reload(disk) == entries(10)
    for k, entry in enumerate(entries(10)[4:], start=5):
        j.add(*entry)
        assert j.last_index == k and len(j) == k
        assert crash_and_reload(disk) == kill_and_reload(disk) == entries(10)
    assert not j.dirty  # every record re-used was already synced: no fsync needed
    j.flush()
    assert bytes(disk.journal.content) == before
    assert {op: disk.journal.calls[op] for op in writes} == calls  # nothing written
    assert j.stats.entries_reused == 6 and j.stats.truncations == 0
    assert list(j) == entries(10) and j.shadow_len == 0
    j.add(b"e11", 11, 1)  # past the old end: an ordinary append
    j.flush()
    assert crash_and_reload(disk) == entries(11)


def test_conflicting_add_truncates_the_file_and_keeps_the_prefix() -> None:
    disk = LossyDisk()
    j = filled(disk, 10)
    j.deleteEntriesFrom(4)
    j.add(*entries(10)[4])  # index 5 matches
    j.add(b"new6", 6, 2)  # index 6 conflicts (new leader, term 2)
    assert j.stats.truncations == 1 and disk.journal.calls["truncate"] == 1
    expected = [*entries(5), (b"new6", 6, 2)]
    assert list(j) == expected and j.shadow_len == 0
    assert j.dirty
    j.flush()
    assert crash_and_reload(disk) == expected
    j.add(b"new7", 7, 2)
    j.flush()
    assert crash_and_reload(disk) == [*expected, (b"new7", 7, 2)]


def test_same_index_and_term_with_other_bytes_is_a_conflict() -> None:
    disk = LossyDisk()
    j = filled(disk, 3)
    j.deleteEntriesFrom(1)
    j.add(b"other", 2, 1)
    j.flush()
    assert crash_and_reload(disk) == [entries(3)[0], (b"other", 2, 1)]


def test_short_batch_keeps_the_shadow_tail_until_a_match_or_conflict() -> None:
    disk = LossyDisk()
    j = filled(disk, 10)
    j.deleteEntriesFrom(2)
    for entry in entries(10)[2:5]:  # a batch of 3..5 only
        j.add(*entry)
    assert j.last_index == 5 and j.shadow_len == 5
    assert j.term_at(5) == 1 and j.term_at(6) is None
    assert crash_and_reload(disk) == kill_and_reload(disk) == entries(10)  # 6..10 kept
    j.add(*entries(10)[5])  # the next batch: 6 matches, nothing written
    assert j.shadow_len == 4 and j.stats.entries_added == 10
    j.add(b"x7", 7, 3)  # 7 conflicts: 7..10 go
    assert j.shadow_len == 0 and j.stats.truncations == 1
    j.flush()
    assert crash_and_reload(disk) == [*entries(6), (b"x7", 7, 3)]


def test_delete_again_within_the_shadow_keeps_everything_on_disk() -> None:
    disk = LossyDisk()
    j = filled(disk, 8)
    j.deleteEntriesFrom(6)
    j.deleteEntriesFrom(3)  # a second, earlier resend before the first finished
    assert len(j) == 3 and j.shadow_len == 5
    for entry in entries(8)[3:]:
        j.add(*entry)
    assert list(j) == entries(8) and disk.journal.calls["append"] == 8


def assert_clean_means_durable(j: DurableJournal, disk: LossyDisk) -> None:
    """``not dirty`` must mean: everything in the view survives a power loss."""
    if not j.dirty:
        assert crash_and_reload(disk)[: len(j)] == list(j)


def test_reused_unsynced_record_is_synced_by_the_next_flush() -> None:
    disk = LossyDisk()
    j = filled(disk, 5)
    j.add(b"e6", 6, 1)
    j.add(b"e7", 7, 1)
    j.flush()  # a message leaves: 6 and 7 are durable now
    j.add(b"e8", 8, 1)  # written, not synced
    j.deleteEntriesFrom(5)  # view 1..5; 6..8 shadow, 8 unsynced
    for entry in entries(8)[5:]:
        assert_clean_means_durable(j, disk)
        j.add(*entry)
    assert j.dirty  # 8 was never synced and the view claims it again
    assert j.stats.entries_reused == 3
    syncs = disk.journal.calls["sync"]
    j.flush()
    assert disk.journal.calls["sync"] == syncs + 1
    assert_clean_means_durable(j, disk)
    disk.power_loss()
    assert list(reopen(disk)) == entries(8)


def test_reuse_of_a_record_written_after_a_truncation_is_synced() -> None:
    disk = LossyDisk()
    j = filled(disk, 4)
    j.deleteEntriesFrom(2)
    j.add(b"y3", 3, 2)  # conflict: truncate to 2, append y3
    j.add(b"y4", 4, 2)
    j.flush()
    j.add(b"y5", 5, 2)  # unsynced
    j.deleteEntriesFrom(2)
    for entry in [(b"y3", 3, 2), (b"y4", 4, 2), (b"y5", 5, 2)]:
        j.add(*entry)
        assert_clean_means_durable(j, disk)
    assert j.dirty and j.stats.entries_reused == 3
    j.flush()
    disk.power_loss()
    assert list(reopen(disk)) == [*entries(2), (b"y3", 3, 2), (b"y4", 4, 2), (b"y5", 5, 2)]


def is_prefix_consistent(log: list[tuple[bytes, int, int]]) -> bool:
    indices = [e[1] for e in log]
    terms = [e[2] for e in log]
    consecutive = indices == list(range(indices[0], indices[0] + len(indices))) if log else True
    return consecutive and terms == sorted(terms)


def test_compaction_keeps_the_shadow_tail_after_the_view() -> None:
    disk = LossyDisk()
    j = filled(disk, 10)
    j.deleteEntriesFrom(6)  # view 1..6, shadow 7..10
    j.deleteEntriesTo(3)  # a snapshot covers 1..3: the file becomes 4..10
    assert [e[1] for e in j] == [4, 5, 6] and j.shadow_len == 4
    assert j.first_index == 4 and j.last_index == 6
    assert not j.dirty
    loaded = crash_and_reload(disk)
    assert loaded == entries(10)[3:] and is_prefix_consistent(loaded)
    j.add(*entries(10)[6])  # 7 still matches after the rewrite
    j.add(b"z8", 8, 2)  # 8 conflicts: the offsets of the rewritten file are right
    j.flush()
    loaded = crash_and_reload(disk)
    assert loaded == [*entries(10)[3:7], (b"z8", 8, 2)] and is_prefix_consistent(loaded)


def test_compaction_past_the_view_keeps_only_the_physical_suffix() -> None:
    disk = LossyDisk()
    j = filled(disk, 10)
    j.deleteEntriesFrom(4)  # view 1..4
    j.deleteEntriesTo(6)  # the snapshot was taken before the view shrank: covers 1..6
    assert len(j) == 0 and j.shadow_len == 4
    assert crash_and_reload(disk) == entries(10)[6:]


def test_clear_drops_the_shadow_tail() -> None:
    disk = LossyDisk()
    j = filled(disk, 10)
    j.deleteEntriesFrom(4)
    j.clear()  # a snapshot from the leader replaces the log
    assert len(j) == 0 and j.shadow_len == 0
    assert crash_and_reload(disk) == []
    j.add(b"snap-prev", 20, 3)
    j.add(b"snap-last", 21, 3)
    j.flush()
    loaded = crash_and_reload(disk)
    assert loaded == [(b"snap-prev", 20, 3), (b"snap-last", 21, 3)]
    assert is_prefix_consistent(loaded)


@pytest.mark.parametrize("seed", range(30))
def test_random_resends_and_conflicts_never_lose_a_flushed_view_entry(seed: int) -> None:
    """Model check: after every step, a power loss leaves a log that holds every entry
    the view held at the last flush (unless a conflict has since replaced it), is
    index-consecutive with non-decreasing terms, and is a log the node once held."""
    rng = random.Random(seed)
    disk = LossyDisk()
    j = DurableJournal(disk.journal, disk.meta)
    term = 1
    j.add(b"noop", 1, term)
    j.flush()
    held: list[list[tuple[bytes, int, int]]] = [list(j)]  # every view the node had
    flushed = list(j)
    leaders_log = list(j)  # the current leader's log (the follower's view may lag it)
    for _ in range(60):
        action = rng.random()
        if action < 0.35:  # the leader ships what the follower lacks, and new entries
            for entry in leaders_log[len(j) :]:
                j.add(*entry)
            for _ in range(rng.randint(1, 4)):
                j.add(b"c%d" % rng.randrange(1000), j.last_index + 1, term)
            leaders_log = list(j)
        elif action < 0.7 and len(j) > 1:  # a resend from an earlier prevLogIdx
            prev = rng.randrange(1, len(j))
            j.deleteEntriesFrom(prev)
            for entry in leaders_log[prev : prev + rng.randint(0, len(leaders_log) - prev)]:
                j.add(*entry)
        elif action < 0.85 and len(j) > 1:  # a new leader overwrites a suffix
            term += 1
            prev = rng.randrange(1, len(j))
            j.deleteEntriesFrom(prev)
            j.add(b"t%d" % term, j.last_index + 1, term)
            flushed = [e for e in flushed if e[1] <= prev]
            leaders_log = list(j)
        else:
            j.flush()
            flushed = list(j)
        held.append(list(j))
        assert_clean_means_durable(j, disk)
        loaded = crash_and_reload(disk)
        assert loaded[: len(flushed)] == flushed
        assert is_prefix_consistent(loaded)
        assert any(loaded == h[: len(loaded)] or h == loaded[: len(h)] for h in held)
        killed = kill_and_reload(disk)  # the page cache keeps what the process wrote
        assert killed[: len(flushed)] == flushed
        assert is_prefix_consistent(killed)
        assert any(killed == h[: len(killed)] or h == killed[: len(h)] for h in held)
