"""FakeLogService: the service seam in memory, for API, client and CLI tests.

Deterministic and socket-free. It follows the contract's semantics:

* logs spring into existence on their first append; offsets are dense from 0 and never
  reused (``trim`` keeps ``next_offset``);
* every append is one fake Raft entry: ``index`` goes up by one, ``term`` is ``term``;
  timestamps come from ``clock`` (by default a counter from 1_700_000_000_000 ms, one ms
  per append) and never decrease within a log;
* ``get_entry``: ``OffsetNotFound`` (``next_offset``) at or past the end, ``Trimmed``
  (``first_offset``) below the first retained offset;
* ``read_range``: past the end, an empty page with ``next_offset = start``; below the first
  offset, ``Trimmed``; ``wait_s`` long-polls for an append to that log; a page stops
  before its served size would exceed ``limits.max_response_bytes`` (always at least
  one entry), measured like the real service (``raftlog.service.types.PageBudget``);
* ``min_index`` beyond the fake index waits up to ``timeout`` for appends, then
  ``ReadTimeout``; ``max_lag``/``max_staleness_ms`` (``consistency=any``) compare with
  the ``lag``/``last_contact_ms`` knobs (``TooStale``);
* ``expected_offset`` mismatch: ``OffsetMismatch`` (``next_offset``); ``ack=leader``
  appends and answers ``Accepted``; ``ack=all`` answers ``NotFullyReplicated`` (with
  ``committed`` and the offsets) when ``fully_replicated`` is False.

Knobs: ``fail_next`` (raised by the next operation: append, get_entry, read_range,
list_logs, get_log or cluster; never by headers/is_leader/leader_url/live/ready), ``leader``
and ``leader_url_value`` (a follower raises ``ServedByLeader`` for ``ack=leader|all`` and
``consistency=leader``, like the real service, or ``NoLeader`` without a leader URL),
``has_quorum`` (False: quorum reads raise ``NoQuorum``), ``readiness``, ``alive``.
``calls`` records every operation as ``(method name, arguments)``.

Runs on one event loop; not thread-safe (like the real service's contract).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from raftlog.errors import (
    LogNotFound,
    NoLeader,
    NoQuorum,
    NotFullyReplicated,
    OffsetMismatch,
    OffsetNotFound,
    ReadTimeout,
    ServedByLeader,
    TooStale,
    Trimmed,
)
from raftlog.service.types import (
    Accepted,
    AppendRequest,
    AppendResult,
    ClusterNode,
    ClusterView,
    EntryRange,
    Limits,
    LogPage,
    NodeHeaders,
    PageBudget,
    ReadOptions,
)
from raftlog.state.types import Entry, LogInfo

__all__ = ["FAKE_EPOCH_MS", "FakeLogService"]

FAKE_EPOCH_MS = 1_700_000_000_000


def _counter_clock() -> Callable[[], int]:
    ticks = itertools.count(FAKE_EPOCH_MS)
    return lambda: next(ticks)


class FakeLogService:
    """An in-memory ``LogServiceProtocol``."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        node_id: str = "fake-1",
        cluster_id: str | None = "00000000-0000-4000-8000-000000000001",
        cluster_name: str = "fake",
        term: int = 1,
        leader: bool = True,
        leader_id: str | None = None,
        leader_url_value: str | None = None,
        readiness: tuple[bool, str] = (True, "ready"),
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.cluster_name = cluster_name
        self.term = term
        self.index = 0
        self.leader = leader
        self.leader_id = leader_id
        self.leader_url_value = leader_url_value
        self.readiness = readiness
        self.alive = True
        self.has_quorum = True
        self.fully_replicated = True
        self.lag: int | None = 0
        self.last_contact_ms: int | None = 0
        self.fail_next: Exception | None = None
        self.clock = clock or _counter_clock()
        self.logs: dict[str, list[Entry]] = {}
        self.first_offsets: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []
        self._waiters: list[asyncio.Event] = []

    # -- knobs and helpers for tests ---------------------------------------------------------

    def next_offset(self, log: str) -> int:
        return self.first_offsets.get(log, 0) + len(self.logs.get(log, []))

    def snapshot(self) -> tuple[int, dict[str, list[Entry]], dict[str, int]]:
        """A copy of the whole state, to assert that a request changed nothing."""
        return self.index, {k: list(v) for k, v in self.logs.items()}, dict(self.first_offsets)

    def trim(self, log: str, before: int) -> None:
        """Drop the entries of ``log`` below ``before`` (offsets are not reused)."""
        first = self.first_offsets.get(log, 0)
        drop = max(0, min(before, self.next_offset(log)) - first)
        if log in self.logs and drop:
            self.logs[log] = self.logs[log][drop:]
            self.first_offsets[log] = first + drop

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure

    def _notify(self) -> None:
        for event in self._waiters:
            event.set()

    async def _wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` holds (re-checked after every append), up to ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        event = asyncio.Event()
        self._waiters.append(event)
        try:
            while not ready():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    return ready()
            return True
        finally:
            self._waiters.remove(event)

    def _to_leader(self) -> ServedByLeader:
        if self.leader_url_value is None:
            raise NoLeader("no leader is known")
        return ServedByLeader(self.leader_url_value)

    # -- LogServiceProtocol ---------------------------------------------------------------------

    def headers(self) -> NodeHeaders:
        return NodeHeaders(
            node_id=self.node_id,
            cluster_id=self.cluster_id,
            term=self.term,
            applied_index=self.index,
            leader_id=self.node_id if self.leader else self.leader_id,
            last_contact_ms=0 if self.leader else self.last_contact_ms,
        )

    def is_leader(self) -> bool:
        return self.leader

    def leader_url(self) -> str | None:
        return self.leader_url_value

    def live(self) -> bool:
        return self.alive

    def ready(self) -> tuple[bool, str]:
        return self.readiness

    async def append(self, request: AppendRequest) -> AppendResult | Accepted:
        self._call("append", request)
        if request.ack in ("leader", "all") and not self.leader:
            raise self._to_leader()
        log = request.log
        next_offset = self.next_offset(log)
        if request.expected_offset is not None and request.expected_offset != next_offset:
            raise OffsetMismatch(
                f"expected_offset did not match: the log's next offset is {next_offset}; "
                "nothing was written",
                next_offset=next_offset,
            )
        self.index += 1
        entries = self.logs.setdefault(log, [])
        self.first_offsets.setdefault(log, 0)
        stamp = self.clock()
        if entries:
            stamp = max(stamp, entries[-1].timestamp_ms)
        for i, new in enumerate(request.entries):
            entries.append(
                Entry(next_offset + i, new.value_json, new.key, stamp, self.index, self.term)
            )
        self._notify()
        if request.ack == "leader":
            return Accepted(log)
        result = AppendResult(
            log,
            next_offset,
            next_offset + len(request.entries) - 1,
            len(request.entries),
            self.index,
            self.term,
        )
        if request.ack == "all" and not self.fully_replicated:
            raise NotFullyReplicated(
                "committed by a majority but not yet replicated to every member within "
                f"{request.timeout:g} s",
                committed=True,
                **result.to_dict(),
            )
        return result

    async def _read_point(self, options: ReadOptions) -> None:
        if options.consistency == "quorum" and not self.has_quorum:
            raise NoQuorum(f"no quorum confirmed the read within {options.timeout:g} s")
        if options.consistency == "leader" and not self.leader:
            raise self._to_leader()
        if options.consistency == "any":
            contact = self.last_contact_ms
            if options.max_staleness_ms is not None and (
                contact is None or contact > options.max_staleness_ms
            ):
                raise TooStale(
                    f"this node last heard from a leader "
                    f"{'never' if contact is None else f'{contact} ms ago'}; "
                    f"max_staleness_ms is {options.max_staleness_ms}",
                    last_contact_ms=contact,
                )
            if options.max_lag is not None and self.lag is not None and self.lag > options.max_lag:
                raise TooStale(
                    f"this node is {self.lag} entries behind the leader's commit index; "
                    f"max_lag is {options.max_lag}",
                    lag=self.lag,
                )
        min_index = options.min_index
        if (
            min_index is not None
            and self.index < min_index
            and not await self._wait_until(lambda: self.index >= min_index, options.timeout)
        ):
            raise ReadTimeout(
                f"this node has applied index {self.index}, not min_index {min_index}, "
                f"after {options.timeout:g} s"
            )

    async def get_entry(self, log: str, offset: int, options: ReadOptions) -> Entry:
        self._call("get_entry", log, offset, options)
        await self._read_point(options)
        self._check_trimmed(log, offset)
        first = self.first_offsets.get(log, 0)
        next_offset = self.next_offset(log)
        if offset >= next_offset:
            raise OffsetNotFound(
                f"log {log!r} has no entry at offset {offset} (next offset {next_offset})",
                next_offset=next_offset,
            )
        return self.logs[log][offset - first]

    async def read_range(
        self, log: str, start: int, limit: int, options: ReadOptions, wait_s: float = 0.0
    ) -> EntryRange:
        self._call("read_range", log, start, limit, options, wait_s)
        await self._read_point(options)
        self._check_trimmed(log, start)
        if wait_s > 0 and self.next_offset(log) <= start:
            await self._wait_until(lambda: self.next_offset(log) > start, wait_s)
            self._check_trimmed(log, start)
        first = self.first_offsets.get(log, 0)
        budget = PageBudget(self.limits.max_response_bytes)
        entries: list[Entry] = []
        for entry in self.logs.get(log, [])[max(0, start - first) : max(0, start - first) + limit]:
            if not budget.admit(entry):
                break
            entries.append(entry)
        return EntryRange(entries, entries[-1].offset + 1 if entries else start)

    def _check_trimmed(self, log: str, offset: int) -> None:
        first = self.first_offsets.get(log, 0)
        if log in self.logs and offset < first:
            raise Trimmed(
                f"offset {offset} of log {log!r} was removed by retention", first_offset=first
            )

    def _info(self, log: str) -> LogInfo:
        entries = self.logs[log]
        return LogInfo(
            log=log,
            first_offset=self.first_offsets.get(log, 0),
            next_offset=self.next_offset(log),
            count=len(entries),
            bytes=sum(len(e.value_json) for e in entries),
            last_timestamp_ms=entries[-1].timestamp_ms if entries else 0,
        )

    async def list_logs(self, after: str | None, limit: int, options: ReadOptions) -> LogPage:
        self._call("list_logs", after, limit, options)
        await self._read_point(options)
        names = sorted(n for n in self.logs if after is None or n > after)
        page = names[:limit]
        return LogPage([self._info(n) for n in page], page[-1] if len(names) > limit else None)

    async def get_log(self, log: str, options: ReadOptions) -> LogInfo:
        self._call("get_log", log, options)
        await self._read_point(options)
        if log not in self.logs:
            raise LogNotFound(f"log {log!r} does not exist")
        return self._info(log)

    async def cluster(self, forwarded: bool = False) -> ClusterView:
        """One member (this node). ``forwarded`` (this node's own view) changes nothing."""
        self._call("cluster", forwarded)
        me = ClusterNode(
            id=self.node_id,
            raft="127.0.0.1:7001",
            http="127.0.0.1:8001",
            role="leader" if self.leader else "follower",
            applied_index=self.index,
            match_index=self.index if self.leader else None,
            lag=0 if self.leader else self.lag,
            last_contact_ms=0 if self.leader else self.last_contact_ms,
            reachable=True,
        )
        return ClusterView(
            cluster=self.cluster_name,
            cluster_id=self.cluster_id,
            leader=self.node_id if self.leader else self.leader_id,
            term=self.term,
            commit_index=self.index,
            nodes=[me],
        )
