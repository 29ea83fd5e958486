"""``AsyncClient``: the asyncio driver of the client core (``raftlog.client.core``).

It only performs the core's steps: requests on one ``httpx.AsyncClient`` and retry sleeps
with ``asyncio.sleep``; every routing and retry decision is the core's. Use it from one
event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
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
from raftlog.client.pool_async import AsyncPool
from raftlog.client.wire import BatchItem

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """Asynchronous raftlog client: the same methods and parameters as ``Client``,
    awaitable. Use it from one event loop; the retry sleeps are ``asyncio.sleep``."""

    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(
            headers=self._core.headers, transport=transport, follow_redirects=False
        )
        # Plain http:// requests go to the client's own pool (raftlog.client.pool_async) unless
        # a transport is given or the environment names a proxy; the rest go to httpx.
        self._pool: AsyncPool | None = None
        if transport is None and not proxy_configured():
            self._pool = AsyncPool(self._core.headers)
        self._sleep: Callable[[float], Any] = asyncio.sleep

    @property
    def urls(self) -> list[str]:
        return self._core.nodes.urls

    @property
    def timeout(self) -> float:
        return self._core.timeout

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the driver: performs the core's steps ---------------------------------------------

    async def _step(self, step: Step) -> Reply:
        """Perform one step of a plan; awaits the request (its own timeouts) or the sleep.
        A transport exception is the reply (the core classifies it), not raised."""
        if isinstance(step, Sleep):
            await self._sleep(step.seconds)
            return None
        if isinstance(step, Emit):
            raise RuntimeError("Emit outside tail")
        try:
            if self._pool is not None and plain_http(step.url):
                return await self._pool.request(
                    step.method, str(step.url), step.params, step.body, step.headers, step.timeout
                )
            return await self._http.request(**step.kwargs())
        except TRANSPORT_ERRORS as exc:
            return exc

    async def _run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end: its result, or the error it raises."""
        reply: Reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return cast(T, done.value)
            reply = await self._step(step)

    # -- the API ------------------------------------------------------------------------------

    @overload
    async def append(
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
    async def append(
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
    async def append(
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
    async def append(
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
        return await self._run(
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
    async def append_batch(
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
    async def append_batch(
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
    async def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    async def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        return await self._run(
            self._core.append_many(
                log,
                entries,
                ack=ack,
                expected_offset=expected_offset,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        )

    async def get(
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
        return await self._run(
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

    async def read(
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
        return await self._run(
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

    async def tail(
        self,
        log: str,
        start: int = 0,
        *,
        consistency: Consistency = "any",
        poll_wait: float = 30,
        stop: Callable[[], bool] | None = None,
        max_entries: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Entry]:
        """As ``Client.tail``, as an async iterator."""
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
                reply = await self._step(step)

    async def logs(
        self, after: str | None = None, limit: int = 100, *, consistency: Consistency | None = None
    ) -> LogsPage:
        return await self._run(self._core.logs(after, limit, consistency))

    async def log_info(self, log: str, *, consistency: Consistency | None = None) -> LogInfo:
        return await self._run(self._core.log_info(log, consistency))

    async def cluster(self) -> ClusterStatus:
        return await self._run(self._core.cluster())

    async def health(self) -> bool:
        return await self._run(self._core.probe("/healthz"))

    async def ready(self) -> bool:
        return await self._run(self._core.probe("/readyz"))
