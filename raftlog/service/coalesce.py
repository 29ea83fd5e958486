"""Coalescing concurrent appends into one Raft command (``AppendGroup``).

``AppendCoalescer.submit(append, timeout)`` returns what that append got, as if it had
been proposed alone. How requests are packed:

- requests queue; the queue is pumped on the next loop iteration after a request
  arrives (or a proposal ends), so a request alone is proposed at once, alone (one loop
  iteration, no window, no timer: one connection sees no added latency), and the
  requests that arrived in the same iteration, or while ``max_in_flight`` proposals
  were in flight, go together;
- a pump proposes the queue's head as groups of at most ``max_members`` members and
  ``max_bytes`` estimated bytes while fewer than ``max_in_flight`` are in flight (a
  member larger than that goes alone, as a plain ``Append``: a group is never larger
  than the largest single request, so it stays below PySyncObj's
  ``appendEntriesBatchSizeBytes``, which the node sets above ``max_request_bytes`` so
  that its faulty chunked path is never taken);
- a group of one is sent as the plain ``Append`` (fewer bytes, readable by every
  version); a group needs envelope version ``GROUP_VERSION`` enabled in the cluster
  state: until this node's state shows it, members are proposed one by one, and a
  leader proposes ``SetClusterMeta(enable_version=GROUP_VERSION)`` (once at a time).
  A node of an older version stops at that entry (UnsupportedFormat): upgrade every
  member before serving writes with this version.

What each member gets (never a neighbour's error):

- the group's result for its own position: ``Appended`` or its own ``Rejected``
  (``offset_mismatch``); a result for the whole command (a ``Rejected`` such as
  ``replayed``) goes to every member, mapped by the caller as for a lone append;
- an exception of the proposal goes to every member unchanged: a DefinitelyNotApplied
  error (nothing reached Raft) or OutcomeUnknown (any member may have been applied);
- its own timeout: ``OutcomeUnknown`` once its group was proposed, ``Overloaded``
  (definite) while it was still queued, and then it is removed from the queue;
- ``Overloaded`` (definite) at once when ``max_waiting`` requests are queued or in
  flight, the bound ``max_inflight_proposals`` puts on a node's proposals today.

Threads: event loop thread only (every method, every callback); nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from raftlog.bulk import columns_of
from raftlog.commands import GROUP_VERSION, Append, AppendGroup, Command, SetClusterMeta
from raftlog.errors import OutcomeUnknown, Overloaded
from raftlog.service.node_port import NodePort
from raftlog.state.types import ApplyResult, GroupApplied

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_MEMBERS",
    "AppendCoalescer",
    "member_bytes",
]

_log = logging.getLogger(__name__)

DEFAULT_MAX_MEMBERS = 256
DEFAULT_MAX_IN_FLIGHT = 8  # measured against 2, 4 and 64: docs/PERFORMANCE.md
DEFAULT_MAX_BYTES = 1 << 20
# Envelope bytes of one member besides its log name, values and keys (its map and field
# names, the timestamp, the offsets, each entry's pair framing): upper bounds.
_MEMBER_OVERHEAD = 96
_ENTRY_OVERHEAD = 8


def member_bytes(append: Append) -> int:
    """An upper bound on what ``append`` adds to a group's envelope."""
    values, keys = columns_of(append.entries, "value_json", "key")
    size = _MEMBER_OVERHEAD + len(append.log) + _ENTRY_OVERHEAD * len(values)
    size += sum(map(len, values))
    if keys.count(None) != len(keys):
        size += 4 * sum(len(k) for k in keys if k is not None)  # UTF-8: <= 4 bytes a char
    return size


@dataclass(eq=False, slots=True)
class _Member:
    append: Append
    size: int
    deadline: float  # time.monotonic()
    outcome: asyncio.Future[ApplyResult]
    proposed: bool = field(default=False)


class AppendCoalescer:
    """Packs this node's concurrent appends into shared proposals. Loop thread only."""

    def __init__(
        self,
        node: NodePort,
        *,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_waiting: int = 10_000,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_members < 1 or max_bytes < 1 or max_waiting < 1 or max_in_flight < 1:
            raise ValueError("coalescer bounds must be at least 1")
        self._node = node
        self.max_members = max_members
        self.max_bytes = max_bytes
        self.max_waiting = max_waiting
        self.max_in_flight = max_in_flight
        self._queue: deque[_Member] = deque()
        self._waiting = 0  # members queued or in a proposal in flight
        self._in_flight = 0  # proposals in flight
        self._pump_scheduled = False
        self._groups_enabled = False  # cached once the state shows it (never undone)
        self._enabling: asyncio.Task[ApplyResult] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Requests queued or in flight."""
        return self._waiting

    async def submit(self, append: Append, timeout: float) -> ApplyResult:
        """Propose ``append`` (possibly with others); its own result (see the module)."""
        if self._waiting >= self.max_waiting:
            raise Overloaded(
                f"{self._waiting} appends are waiting on this node; nothing was proposed"
            )
        loop = asyncio.get_running_loop()
        member = _Member(
            append, member_bytes(append), time.monotonic() + timeout, loop.create_future()
        )
        # A member that gave up leaves its outcome unread: mark it retrieved either way.
        member.outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting += 1
        try:
            self._queue.append(member)
            self._schedule()
            try:
                return await asyncio.wait_for(asyncio.shield(member.outcome), timeout)
            except TimeoutError:
                if member.proposed:
                    raise OutcomeUnknown(
                        f"no outcome within {timeout:g} s; the append may still commit"
                    ) from None
                raise Overloaded(
                    f"the append waited {timeout:g} s for its turn and was not proposed"
                ) from None
        finally:
            self._waiting -= 1
            if not member.proposed:
                with contextlib.suppress(ValueError):
                    self._queue.remove(member)  # timed out or cancelled while queued

    # -- packing ---------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Pump on the next loop iteration (once): what arrives in this one joins."""
        if not self._pump_scheduled and self._queue and self._in_flight < self.max_in_flight:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Propose from the queue's head while fewer than max_in_flight are in flight."""
        self._pump_scheduled = False
        while self._queue and self._in_flight < self.max_in_flight:
            group = self._take()
            self._in_flight += 1
            task = asyncio.ensure_future(self._run(group))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _take(self) -> list[_Member]:
        group = [self._queue.popleft()]
        size = group[0].size
        while self._queue and len(group) < self.max_members:
            nxt = self._queue[0]
            if size + nxt.size > self.max_bytes:
                break
            group.append(self._queue.popleft())
            size += nxt.size
        for m in group:
            m.proposed = True
        return group

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        if not task.cancelled() and task.exception() is not None:  # a bug: never silent
            _log.error("append group failed", exc_info=task.exception())
        self._schedule()

    async def _run(self, group: list[_Member]) -> None:
        try:
            if len(group) == 1:
                await self._propose_one(group[0])
            elif self._groups_ready():
                await self._propose_group(group)
            else:
                await asyncio.gather(*(self._propose_one(m) for m in group))
        finally:
            for m in group:  # whatever happened, nobody is left waiting
                if not m.outcome.done():
                    m.outcome.set_exception(OutcomeUnknown("the append's proposal was cut off"))

    async def _propose_one(self, member: _Member) -> None:
        await self._settle([member], member.append)

    async def _propose_group(self, group: list[_Member]) -> None:
        await self._settle(group, AppendGroup(tuple(m.append for m in group)))

    async def _settle(self, group: list[_Member], command: Command) -> None:
        timeout = max(0.0, max(m.deadline for m in group) - time.monotonic())
        try:
            result = await self._node.propose(command, timeout=timeout)
        except asyncio.CancelledError:
            for m in group:
                m.outcome.cancel()
            raise
        except Exception as exc:  # the proposal's error is every member's
            for m in group:
                if not m.outcome.done():
                    m.outcome.set_exception(exc)
            return
        if isinstance(result, GroupApplied) and len(result.results) == len(group):
            for m, own in zip(group, result.results, strict=True):
                if not m.outcome.done():
                    m.outcome.set_result(own)
        else:
            for m in group:
                if not m.outcome.done():
                    m.outcome.set_result(result)

    # -- the group version -------------------------------------------------------------------

    def _groups_ready(self) -> bool:
        """True once this node's state has GROUP_VERSION enabled. Until then a leader
        proposes the enabling SetClusterMeta (one at a time, outcome not awaited)."""
        if self._groups_enabled:
            return True
        try:
            enabled = self._node.state.cluster_meta().enabled_version
        except Exception:  # a storage error is the node's to report: send members alone
            _log.exception("reading the enabled command version")
            return False
        if enabled >= GROUP_VERSION:
            self._groups_enabled = True
            return True
        if self._node.is_leader() and self._enabling is None:
            enable = SetClusterMeta(enable_version=GROUP_VERSION)
            task = asyncio.ensure_future(self._node.propose(enable, timeout=10.0))
            self._enabling = task

            def done(t: asyncio.Task[ApplyResult]) -> None:
                self._enabling = None
                if not t.cancelled() and t.exception() is not None:
                    _log.info("enabling command version %d: %s", GROUP_VERSION, t.exception())

            task.add_done_callback(done)
        return False
