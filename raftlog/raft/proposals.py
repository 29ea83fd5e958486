"""Proposals in flight and waiters for an applied index: the futures side of RaftNode.

Threads:
- callers (an asyncio loop, usually) run :meth:`Proposals.submit`,
  :meth:`Proposals.submit_nowait` and :meth:`Proposals.wait_applied`; these only await
  their own future (``submit`` up to its timeout), never a lock held by the tick thread
  for longer than a list or dict operation;
- the tick thread (PySyncObj's callbacks, ``apply``, the node's on-tick hook) calls
  :meth:`Proposals.advance` and the proposal callbacks; it never blocks here: every
  future is settled through ``loop.call_soon_threadsafe`` on the loop that owns it;
- any thread may call :meth:`Proposals.fail_all` and :meth:`Proposals.fail_waiters`
  (a fail-stop, a leader stepping down, ``stop()``).

A proposal gets one future of its own; PySyncObj's callback settles it. PySyncObj
calls a SUCCESS callback right after the entry's apply, before the LMDB batch holding
it commits; such an outcome is *held* until :meth:`Proposals.advance` reaches its
index (the node advances only over committed entries), so a client never learns of an
entry that other threads cannot read yet. Outcomes (see DESIGN.md for the reasoning):

=================  ======================================================
FAIL_REASON        raftlog outcome
=================  ======================================================
SUCCESS            the ApplyResult
QUEUE_FULL         Overloaded (definitely not applied; raised in caller)
MISSING_LEADER     NoLeader (with commandsWaitLeader=False the command is
                   dropped before it enters any log: definitely not applied)
NOT_LEADER         NoLeader (the node it was forwarded to had lost
                   leadership before appending it: definitely not applied)
REQUEST_DENIED     NoLeader (refused before appending)
DISCARDED          OutcomeUnknown
LEADER_CHANGED     OutcomeUnknown
UNKNOWN_OUTCOME    OutcomeUnknown
timeout            OutcomeUnknown
=================  ======================================================

Admission (may this node take a proposal now?) is decided by the node before anything
here runs (``RaftNode._admit``): this module only counts what is in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.config import FAIL_REASON

from raftlog.errors import NodeStopped, NoLeader, OutcomeUnknown, Overloaded
from raftlog.raft.core import RaftCore
from raftlog.state.machine import ApplyResult

__all__ = ["Proposals"]

_DEFINITE = {
    FAIL_REASON.MISSING_LEADER: "no leader is known; the command was not proposed",
    FAIL_REASON.NOT_LEADER: "the leader changed before it appended the command",
    FAIL_REASON.REQUEST_DENIED: "the leader refused the command",
}
_UNKNOWN = {
    FAIL_REASON.DISCARDED: "the command's log entry was replaced by a new leader",
    FAIL_REASON.LEADER_CHANGED: "the leader changed while the command was in flight",
    FAIL_REASON.UNKNOWN_OUTCOME: "the command's outcome could not be tracked",
}


@dataclass
class _Waiter:
    index: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]

    def __lt__(self, other: _Waiter) -> bool:
        return self.index < other.index


class Proposals:
    """In-flight proposals (future -> its loop) and the heap of applied-index waiters."""

    def __init__(self, node_id: str, max_inflight: int) -> None:
        self._node_id = node_id
        self._max_inflight = max_inflight
        # Proposals awaited by submit(); read without the lock by check_capacity.
        self.inflight = 0
        # Proposals awaiting their outcome (future -> its loop), failed at a fail-stop.
        self._pending: dict[asyncio.Future[Any], asyncio.AbstractEventLoop] = {}
        self._pending_lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        self._waiters_lock = threading.Lock()
        # Highest index this node has applied (or skipped as a no-op) and committed to
        # LMDB. Written by the tick thread only (advance); read from any thread.
        self.applied_index = 0
        # SUCCESS outcomes whose entry is not committed yet: (index, seq, loop, future,
        # outcome), a heap. Tick thread only.
        self._held: list[tuple[int, int, asyncio.AbstractEventLoop, Any, Any]] = []
        self._held_seq = 0

    # -- callers' side ----------------------------------------------------------------------

    def check_capacity(self) -> None:
        """Overloaded when ``max_inflight_proposals`` are already awaited. Any thread."""
        if self.inflight >= self._max_inflight:
            raise Overloaded(f"{self.inflight} proposals are in flight on node {self._node_id}")

    async def submit(
        self, core: RaftCore, data: bytes, timeout: float, failed: Callable[[], bool]
    ) -> ApplyResult:
        """Hand ``data`` to Raft and await its outcome (table in the module docstring).

        The caller has admitted it. ``failed`` tells whether the node fail-stopped since:
        checked once the future is registered, so a fail-stop either sees the future (and
        answers it OutcomeUnknown) or this raises NodeStopped before anything is queued.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, int]] = loop.create_future()

        def on_done(result: Any, error: int, _future: asyncio.Future[Any] = future) -> None:
            # Tick thread, or the caller's thread for QUEUE_FULL.
            if error == FAIL_REASON.SUCCESS and result is not None:
                index = int(result.index)
                if index > self.applied_index:  # its LMDB batch is not committed yet
                    self._held_seq += 1
                    item = (index, self._held_seq, loop, _future, (result, error))
                    heapq.heappush(self._held, item)
                    return
            loop.call_soon_threadsafe(_settle, _future, (result, error))

        self.inflight += 1
        with self._pending_lock:
            self._pending[future] = loop
        try:
            if failed():  # a fail-stop between the admission and the registration
                future.cancel()  # so the fail-stop's OutcomeUnknown is not left unread
                raise NodeStopped(f"node {self._node_id} is not running")
            core.apply_command(data, callback=on_done)
            core.wake()
            try:
                result, error = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise OutcomeUnknown(
                    f"no outcome within {timeout:g} s; the command may still commit"
                ) from None
        finally:
            self.inflight -= 1
            with self._pending_lock:
                self._pending.pop(future, None)
        if error == FAIL_REASON.SUCCESS:
            if result is None:
                raise OutcomeUnknown("the command committed but its result was lost")
            return result  # type: ignore[no-any-return]
        if error == FAIL_REASON.QUEUE_FULL:
            raise Overloaded("the Raft proposal queue is full")
        if error in _DEFINITE:
            raise NoLeader(_DEFINITE[error])
        raise OutcomeUnknown(_UNKNOWN.get(error, f"PySyncObj failure {error}"))

    @staticmethod
    def submit_nowait(core: RaftCore, data: bytes) -> None:
        """Queue ``data`` without tracking its outcome (``ack=leader``); the caller has
        admitted it. Overloaded when PySyncObj's queue is full (reported synchronously)."""
        refused: list[int] = []
        core.apply_command(data, callback=lambda _r, e: refused.append(e))
        if refused and refused[0] == FAIL_REASON.QUEUE_FULL:
            raise Overloaded("the Raft proposal queue is full")
        core.wake()

    def fail_all(self, why: str) -> None:
        """Answer every proposal in flight with OutcomeUnknown: its entry may already be
        on other nodes and commit there. Any thread; never blocks."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        # Held outcomes belong to pending futures, answered here; never settle them later.
        self._held = []
        for future, loop in pending.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_fail, future, OutcomeUnknown(f"{why}; it may commit"))

    # -- applied-index waiters ----------------------------------------------------------------

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until ``index`` is applied here; False on timeout, NodeStopped when the
        node stops first (fail_waiters)."""
        if self.applied_index >= index:
            return True
        loop = asyncio.get_running_loop()
        waiter = _Waiter(index, loop, loop.create_future())
        with self._waiters_lock:
            heapq.heappush(self._waiters, waiter)
        if self.applied_index >= index:  # advanced between the check and the push
            self.release_waiters(self.applied_index)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            return True
        except TimeoutError:
            return False

    def advance(self, applied: int) -> None:
        """Tick thread: everything through ``applied`` is applied and committed; settle
        the held outcomes and wake the waiters it satisfies."""
        self.applied_index = applied
        held = self._held
        while held and held[0][0] <= applied:
            _index, _seq, loop, future, outcome = heapq.heappop(held)
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, future, outcome)
        self.release_waiters(applied)

    def release_waiters(self, applied: int) -> None:
        """Settle every waiter for an index up to ``applied``. Any thread; never blocks."""
        if not self._waiters:
            return
        ready = []
        with self._waiters_lock:
            while self._waiters and self._waiters[0].index <= applied:
                ready.append(heapq.heappop(self._waiters))
        for w in ready:
            w.loop.call_soon_threadsafe(_settle, w.future, None)

    def fail_waiters(self) -> None:
        """The node stopped: every waiter raises NodeStopped. Any thread; idempotent."""
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.loop.is_closed():
                w.loop.call_soon_threadsafe(_fail, w.future, NodeStopped("node stopped"))


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
