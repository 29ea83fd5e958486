"""Node-local storage failures, map growth and the reader/exclusive gate."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import lmdb
import pytest

from raftlog.commands import Append, AppendEntry, encode
from raftlog.errors import FatalStorageError, NodeStopped
from raftlog.state.machine import Appended, StateMachine
from raftlog.state.store import Gate

pytestmark = pytest.mark.unit

SMALL = 64 << 10


def append(log: str, n: int, size: int = 200, ts: int = 0) -> bytes:
    value = b'"' + b"x" * size + b'"'
    return encode(Append(log, tuple(AppendEntry(value, f"k{i}") for i in range(n)), ts))


def fill(sm: StateMachine, count: int, n: int = 4) -> None:
    start = sm.last_applied()[0]
    for i in range(start + 1, start + count + 1):
        sm.apply(i, 1, append("a", n))


def test_full_map_grows_and_apply_succeeds(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "s", durability="os", map_size=SMALL) as sm:
        fill(sm, 300)  # ~250 KB of values
        assert sm.map_size >= 4 * SMALL
        assert sm.last_applied() == (300, 1)
        info = sm.log_info("a")
        assert info is not None and info.count == 1200 and info.next_offset == 1200
        # one huge batch needs several doublings in a row
        r = sm.apply(301, 1, append("a", 50, size=20_000))
        assert isinstance(r, Appended) and r.count == 50
    with StateMachine(tmp_path / "s", durability="os", map_size=SMALL) as sm:
        assert sm.last_applied() == (301, 1)  # reopened with the grown file


def test_map_that_cannot_grow_is_fatal(tmp_path: Path) -> None:
    sm = StateMachine(tmp_path / "s", durability="os", map_size=SMALL, max_map_size=SMALL)
    index = 0
    with pytest.raises(FatalStorageError) as info:
        for index in range(1, 1000):  # index is read after the loop
            sm.apply(index, 1, append("a", 4))
    assert "cannot grow" in str(info.value) or "allows no growth" in str(info.value)
    assert sm.last_applied() == (index - 1, 1)
    before = sm.digest()
    assert before[0] == index - 1
    assert sm.result_for(index) is None
    # fail-stop: every later apply is refused, reads still work
    with pytest.raises(FatalStorageError, match="fail-stopped"):
        sm.apply(index, 1, append("b", 1, size=1))
    assert sm.digest() == before
    sm.close()


@pytest.mark.parametrize(
    "fault",
    [
        OSError(errno.EIO, "Input/output error"),
        OSError(errno.ENOSPC, "No space"),
        lmdb.DiskError("mdb_txn_commit", 5),
    ],
    ids=["EIO", "ENOSPC", "lmdb.DiskError"],
)
def test_commit_fault_is_fatal_and_writes_nothing(tmp_path: Path, fault: Exception) -> None:
    armed = threading.Event()

    def injector(stage: str) -> None:
        assert stage == "commit"
        if armed.is_set():
            raise fault

    sm = StateMachine(tmp_path / "s", durability="os", _fault_injector=injector)
    fill(sm, 3)
    before, before_entries = sm.digest(), sm.read_range("a", 0, 100)
    armed.set()
    with pytest.raises(FatalStorageError) as info:
        sm.apply(4, 1, append("a", 2))
    assert info.value.__cause__ is fault
    assert "index 4" in str(info.value)
    assert sm.last_applied() == (3, 1)
    assert sm.digest() == before
    assert sm.read_range("a", 0, 100) == before_entries
    assert sm.result_for(4) is None
    armed.clear()
    with pytest.raises(FatalStorageError):  # the node must stop; no further applies
        sm.apply(4, 1, append("a", 2))
    sm.close()
    with StateMachine(tmp_path / "s", durability="os") as again:  # after a restart
        assert again.digest() == before
        assert isinstance(again.apply(4, 1, append("a", 2)), Appended)


def test_map_full_at_commit_is_retried_after_growth(tmp_path: Path) -> None:
    calls: list[str] = []

    def injector(stage: str) -> None:
        calls.append(stage)
        if len(calls) == 1:
            raise lmdb.MapFullError("mdb_txn_commit", -30792)

    with StateMachine(
        tmp_path / "s", durability="os", map_size=SMALL, _fault_injector=injector
    ) as sm:
        assert sm.apply(1, 1, append("a", 1)) == Appended("a", 0, 0, 1, 1, 1, 0)
        assert calls == ["commit", "commit"]
        assert sm.map_size == 2 * SMALL
        assert sm.log_info("a") is not None


def test_reads_while_another_thread_applies(tmp_path: Path) -> None:
    """Readers see consistent snapshots while the apply thread writes and grows the map."""
    sm = StateMachine(tmp_path / "s", durability="os", map_size=SMALL)
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                info = sm.log_info("a")
                entries = sm.read_range("a", 0, 10_000)
                if info is not None:
                    assert info.count == info.next_offset - info.first_offset
                    offsets = [e.offset for e in entries]
                    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
                    assert len(entries) >= info.count  # appends only: never fewer
                sm.digest()
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        fill(sm, 150)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    assert reads[0] > 0
    assert sm.map_size > SMALL
    info = sm.log_info("a")
    assert info is not None and info.count == 600
    sm.close()


class _ObservedCondition(threading.Condition):
    """The gate's condition variable, telling the test which threads are blocked in
    ``wait()``: a thread in ``waiting`` has found the gate closed to it and sleeps until a
    release notifies it. Tests wait for that (``blocked``) instead of sleeping and hoping
    the thread got there."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: set[int] = set()
        self._changed = threading.Condition()

    def wait(self, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        with self._changed:
            self.waiting.add(me)
            self._changed.notify_all()
        try:
            return super().wait(timeout)
        finally:
            with self._changed:
                self.waiting.discard(me)
                self._changed.notify_all()

    def blocked(self, *threads: threading.Thread, timeout: float = 5.0) -> None:
        """Return once every one of ``threads`` is blocked in ``wait()``; fail after
        ``timeout`` seconds."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: all(t.ident in self.waiting for t in threads), timeout
            )
        assert ok, f"{[t.name for t in threads]} did not block on the gate within {timeout} s"


def _observed(gate: Gate) -> _ObservedCondition:
    cond = _ObservedCondition()
    gate._cond = cond  # before any thread uses the gate
    return cond


def test_gate_exclusive_waits_for_readers_and_blocks_new_ones() -> None:
    gate = Gate()
    cond = _observed(gate)
    events: list[str] = []
    gate.acquire_shared()

    def exclusive() -> None:
        with gate.exclusive():
            events.append("exclusive")

    def late_reader() -> None:
        with gate.shared():
            events.append("late reader")

    ex = threading.Thread(target=exclusive, name="exclusive")
    ex.start()
    cond.blocked(ex)  # waiting for our shared slot, its request pending
    assert gate._pending_exclusive == 1
    late = threading.Thread(target=late_reader, name="late reader")
    late.start()
    cond.blocked(ex, late)
    assert events == []  # exclusive waits for the reader; the late reader waits behind it
    gate.release_shared()
    ex.join(5)
    late.join(5)
    assert events == ["exclusive", "late reader"]


def test_close_waits_for_an_open_snapshot_source(tmp_path: Path) -> None:
    sm = StateMachine(tmp_path / "s", durability="os")
    cond = _observed(sm._gate)
    fill(sm, 2)
    source = sm.begin_snapshot()
    closer = threading.Thread(target=sm.close, name="closer")
    closer.start()
    cond.blocked(closer)  # close waits for the snapshot's shared slot
    assert closer.is_alive()
    source.close()
    closer.join(5)
    assert not closer.is_alive()
    with pytest.raises(NodeStopped):
        sm.begin_snapshot()


def test_gate_upgrade_waits_for_other_readers_only() -> None:
    gate = Gate()
    cond = _observed(gate)
    gate.acquire_shared()  # another reader
    events: list[str] = []

    def apply_thread() -> None:
        gate.acquire_shared()
        gate.upgrade()  # e.g. to abort a write txn and grow the map
        events.append("upgraded")
        gate.release_exclusive()

    t = threading.Thread(target=apply_thread, name="apply")
    t.start()
    cond.blocked(t)  # holds its shared slot, waiting in upgrade for the other reader
    assert gate._pending_exclusive == 1

    def late_reader() -> None:
        gate.acquire_shared()
        events.append("late")

    late = threading.Thread(target=late_reader, name="late reader")
    late.start()
    cond.blocked(t, late)
    assert events == []
    gate.release_shared()
    t.join(5)
    late.join(5)
    assert events == ["upgraded", "late"]
    gate.release_shared()  # the late reader's slot
    with gate.exclusive():  # nothing left behind
        pass


def test_a_state_that_cannot_be_opened_is_a_fatal_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"x")  # the state's parent is a file: ENOTDIR
    with pytest.raises(FatalStorageError, match="opening failed"):
        StateMachine(blocker / "s")
