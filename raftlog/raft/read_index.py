"""ReadIndex (Raft dissertation, section 6.4): quorum reads on the leader without a log entry.

A quorum read used to commit a barrier entry through the log: a journal write and an
fsync on a majority, an LMDB apply, for each group of reads. The leader can instead
prove it still leads with one round of appends (heartbeats when nothing is new): it
takes the read's start time ``s`` on the Raft clock and its commit index ``c``; once a
majority (itself included) has accepted an append this leadership stamped at or after
``s`` (the echoes of ``raftlog.raft.guard``), no other leader had been elected before
``s`` (every majority includes one of those followers, which would have refused our
append after voting for a higher term), so ``c`` covers every write acknowledged before
the read arrived. Applying up to ``c`` and reading locally is then linearizable. A new
leader also waits for the no-op of its term (``c`` is at least that index), as Raft
requires before it knows what its predecessors committed.

``PendingReads`` holds the reads waiting for their confirmation:

- callers (an event loop) :meth:`PendingReads.add` a read and await its future;
- the tick thread calls :meth:`PendingReads.settle` after each tick with the newest stamp
  a majority has confirmed, and :meth:`PendingReads.fail_all` when leadership ends;
  futures are settled through ``loop.call_soon_threadsafe`` only;
- many reads share one round: one round is in flight at a time; :meth:`add` says when a
  read must request one, and :meth:`settle` when the next must go at once (the round
  was confirmed and reads that arrived meanwhile still wait). The regular heartbeats
  confirm reads too, so a round whose answers never come delays nothing beyond them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

__all__ = ["PendingReads"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reject(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class PendingReads:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # One round in flight at a time: reads that arrive meanwhile wait for the next,
        # sent as soon as this one is confirmed (so each round carries many reads).
        self._round_active = False
        self._round_sent_at = float("inf")

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, start: float, future: asyncio.Future[None]) -> bool:
        """Register a read that started at ``start`` (Raft clock). Any thread with a running
        loop. True when the caller must request a round of appends (none is in flight)."""
        loop = future.get_loop()
        with self._lock:
            self._pending.append((start, loop, future))
            request = not self._round_active
            self._round_active = True
        return request

    def discard(self, future: asyncio.Future[None]) -> None:
        """Forget a read that gave up (timeout, cancelled). Any thread."""
        with self._lock:
            self._pending = [p for p in self._pending if p[2] is not future]

    def round_sent(self, now: float) -> None:
        """Tick thread, just before it sends a round: its stamps are ``now`` or later."""
        with self._lock:
            self._round_sent_at = now

    def settle(self, confirmed: float | None) -> bool:
        """Tick thread: confirm every read that started at or before ``confirmed``. True
        when the round in flight is confirmed and reads still wait: send the next now."""
        if confirmed is None:
            return False
        with self._lock:
            ready = [p for p in self._pending if p[0] <= confirmed]
            if ready:
                self._pending = [p for p in self._pending if p[0] > confirmed]
            send_next = False
            if self._round_active and confirmed >= self._round_sent_at:
                self._round_sent_at = float("inf")
                send_next = bool(self._pending)
                self._round_active = send_next
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_resolve, future)
        return send_next

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Any thread: leadership ended or the node stops; every pending read fails."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._round_active = False
            self._round_sent_at = float("inf")
        for _, loop, future in pending:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_reject, future, error())
