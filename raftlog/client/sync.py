"""``Client``: the synchronous driver of the client core (``raftlog.client.core``).

It only performs the core's steps: requests on one ``httpx.Client`` pool (thread-safe) and
retry sleeps with ``time.sleep``; every routing and retry decision is the core's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

import httpx

from raftlog.client.core import TRANSPORT_ERRORS, Emit, Plan, Reply, Sleep, Step, _Core
from raftlog.client.http11 import plain_http, proxy_configured
from raftlog.client.models import (
    Accepted,
    Ack,
    AppendResult,
    ClusterStatus,
    Consistency,
    EntriesPage,
    Entry,
    LogInfo,
    LogsPage,
)
from raftlog.client.pool_sync import SyncPool
from raftlog.client.wire import BatchItem

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """Synchronous raftlog client (thread-safe; one connection pool).

    ``urls``: the nodes (see ``resolve_urls``). ``timeout``: seconds, sent as the server's
    ``timeout``; a call's deadline is ``timeout`` (+ a long poll's ``wait``) + ``GRACE``,
    after which no retry starts. ``retries``: rounds over the nodes after the first, with
    ``backoff`` (seconds, doubling, jittered) between rounds. ``token``: bearer token.
    ``connect_timeout`` (0.5 s) and ``read_timeout`` (2 s): each attempt's limits for
    opening a connection and for the node's answer (plus the wait the request asks the
    server for). ``node_backoff`` (1 s, doubling per consecutive failure up to
    ``node_backoff_max``, 30 s): how long a node that did not answer is skipped.
    ``spread_reads`` (True): send each ``consistency="any"`` read to a node drawn at random,
    weighted by its observed latency, skipping for a while nodes that failed or answered 503
    (``too_stale``...); False sends them to the preferred node like every other call.
    ``transport``: an httpx transport (tests; without one, plain ``http://`` requests use
    the client's own connection pool, ``raftlog.client.pool_sync``).

    Every method blocks until the call ends: at most its deadline plus one attempt."""

    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 0.5,
        read_timeout: float = 2.0,
        node_backoff: float = 1.0,
        node_backoff_max: float = 30.0,
        spread_reads: bool = True,
    ) -> None:
        self._core = _Core(
            urls,
            timeout,
            retries,
            backoff,
            token,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            node_backoff=node_backoff,
            node_backoff_max=node_backoff_max,
            spread_reads=spread_reads,
        )
        self._http = httpx.Client(
            headers=self._core.headers, transport=transport, follow_redirects=False
        )
        # Plain http:// requests go to the client's own pool (raftlog.client.pool_sync) unless
        # a transport is given or the environment names a proxy; the rest go to httpx.
        self._pool: SyncPool | None = None
        if transport is None and not proxy_configured():
            self._pool = SyncPool(self._core.headers)
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def urls(self) -> list[str]:
        """The node URLs this client knows (given ones, then leaders it learned)."""
        return self._core.nodes.urls

    @property
    def timeout(self) -> float:
        return self._core.timeout

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the driver: performs the core's steps ---------------------------------------------

    def _step(self, step: Step) -> Reply:
        """Perform one step of a plan; blocks for the request (its own timeouts) or the
        sleep. A transport exception is the reply (the core classifies it), not raised."""
        if isinstance(step, Sleep):
            self._sleep(step.seconds)
            return None
        if isinstance(step, Emit):
            raise RuntimeError("Emit outside tail")
        try:
            if self._pool is not None and plain_http(step.url):
                return self._pool.request(
                    step.method, str(step.url), step.params, step.body, step.headers, step.timeout
                )
            return self._http.request(**step.kwargs())
        except TRANSPORT_ERRORS as exc:
            return exc

    def _run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end: its result, or the error it raises."""
        reply: Reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return cast(T, done.value)
            reply = self._step(step)

    # -- the API ------------------------------------------------------------------------------

    @overload
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Literal["quorum", "all"] = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult: ...
    @overload
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Literal["leader"],
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> Accepted: ...
    @overload
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = None,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        """Append one entry. ``ack="leader"`` returns ``Accepted`` (no offsets)."""
        return self._run(
            self._core.append_one(
                log,
                value,
                key,
                ack=ack,
                expected_offset=expected_offset,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        )

    @overload
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Literal["quorum", "all"] = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult: ...
    @overload
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Literal["leader"],
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> Accepted: ...
    @overload
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        """Append an atomic batch: each item is a value or a ``(value, key)`` tuple."""
        return self._run(
            self._core.append_many(
                log,
                entries,
                ack=ack,
                expected_offset=expected_offset,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        )

    def get(
        self,
        log: str,
        offset: int,
        *,
        consistency: Consistency = "quorum",
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None = None,
    ) -> Entry:
        """One entry; ``OffsetNotFound`` at or past the end, ``Trimmed`` below the start,
        ``LogNotFound`` when the log does not exist (checked with one more request)."""
        return self._run(
            self._core.get(
                log,
                offset,
                consistency=consistency,
                min_index=min_index,
                max_lag=max_lag,
                max_staleness_ms=max_staleness_ms,
                timeout=timeout,
            )
        )

    def read(
        self,
        log: str,
        start: int = 0,
        limit: int = 100,
        *,
        wait: float | None = None,
        consistency: Consistency = "quorum",
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None = None,
    ) -> EntriesPage:
        """Up to ``limit`` entries from ``start``; ``wait`` long-polls for the first one."""
        return self._run(
            self._core.read(
                log,
                start,
                limit,
                wait=wait,
                consistency=consistency,
                min_index=min_index,
                max_lag=max_lag,
                max_staleness_ms=max_staleness_ms,
                timeout=timeout,
            )
        )

    def tail(
        self,
        log: str,
        start: int = 0,
        *,
        consistency: Consistency = "any",
        poll_wait: float = 30,
        stop: Callable[[], bool] | None = None,
        max_entries: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Entry]:
        """Entries from ``start`` as they are committed, by long-polling range reads.

        Ends after ``max_entries`` entries, or when ``stop()`` returns True (checked before
        each poll and after each entry); otherwise runs until the caller stops iterating.
        Never skips: a trimmed ``start`` raises ``Trimmed``."""
        plan = self._core.tail(
            log,
            start,
            consistency=consistency,
            poll_wait=poll_wait,
            stop=stop,
            max_entries=max_entries,
            timeout=timeout,
        )
        reply: Reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield step.entry  # the caller may stop here: the plan is then dropped
                reply = None
            else:
                reply = self._step(step)

    def logs(
        self, after: str | None = None, limit: int = 100, *, consistency: Consistency | None = None
    ) -> LogsPage:
        """One page of logs in name order; pass ``next_after`` as ``after`` for the next."""
        return self._run(self._core.logs(after, limit, consistency))

    def log_info(self, log: str, *, consistency: Consistency | None = None) -> LogInfo:
        """One log's metadata; ``LogNotFound`` before its first append."""
        return self._run(self._core.log_info(log, consistency))

    def cluster(self) -> ClusterStatus:
        """The cluster as the leader sees it (also teaches the client node URLs)."""
        return self._run(self._core.cluster())

    def health(self) -> bool:
        """``/healthz`` of the current node (the one that last worked); no failover."""
        return self._run(self._core.probe("/healthz"))

    def ready(self) -> bool:
        """``/readyz`` of the current node (the one that last worked); no failover."""
        return self._run(self._core.probe("/readyz"))
