"""Bounded load from the Python clients, for benchmarks (``raftlog bench``, tests/bench).

Each ``run_*`` function drives one operation against the nodes ``urls`` with one client
(``AsyncClient`` with ``connections`` tasks, or ``Client`` shared by ``connections``
threads) until ``duration_s`` seconds have passed or ``max_ops`` operations have started,
whichever comes first, and returns what happened as ``LoadFigures``: operations that
succeeded, errors by code, and the latency of each success. Nothing is retried beyond what
the client itself does; an error is counted, never raised.

* ``run_async_appends`` / ``run_sync_appends``: single appends (``ack=quorum``) to ``log``,
  each value a JSON string whose encoding is ``value_bytes`` bytes.
* ``run_async_any_reads`` / ``run_sync_any_reads``: ``get`` with ``consistency="any"`` of
  offsets ``0 .. offsets-1`` of ``log`` in turn (append them first); with several ``urls``
  the client spreads them over the nodes.

Blocking: the sync functions block the calling thread for about ``duration_s``; the async
ones must be awaited on an event loop they may occupy for as long. ``client_options`` go to
the client's constructor (timeouts, ``spread_reads``...).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftlog.client.aio import AsyncClient
from raftlog.client.errors import RaftlogClientError
from raftlog.client.sync import Client

__all__ = [
    "MAX_DURATION_S",
    "LoadFigures",
    "run_async_any_reads",
    "run_async_appends",
    "run_sync_any_reads",
    "run_sync_appends",
]

MAX_DURATION_S = 3600.0
DEFAULT_MAX_OPS = 10_000_000


@dataclass(frozen=True)
class LoadFigures:
    """One load run. ``latencies_s``: seconds per successful operation, in completion order;
    ``errors``: error code (or exception class name) -> count."""

    client: str  # "async" or "sync"
    operation: str  # "append" or "any_read"
    connections: int
    elapsed_s: float
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    latencies_s: tuple[float, ...] = ()

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def ops_per_s(self) -> float:
        """Successful operations per second of the run."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100, nearest rank) of the latencies; None without a
        success."""
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        rank = math.ceil(q / 100 * len(ordered))
        return ordered[min(len(ordered) - 1, max(0, rank - 1))]


class _Tally:
    """Counts shared by the workers of one run (thread-safe)."""

    def __init__(self, duration_s: float, max_ops: int) -> None:
        if not 0 < duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S}]")
        if max_ops < 1:
            raise ValueError("max_ops must be >= 1")
        self.deadline = time.monotonic() + duration_s
        self.max_ops = max_ops
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def next_op(self) -> int | None:
        """The number of the next operation to start, None when the run is over."""
        with self._lock:
            seq = next(self._seq)
        if seq >= self.max_ops or time.monotonic() >= self.deadline:
            return None
        return seq

    def record(self, started: float, error: RaftlogClientError | None) -> None:
        with self._lock:
            if error is None:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.errors[error.code or type(error).__name__] += 1

    def figures(self, client: str, operation: str, connections: int, elapsed: float) -> LoadFigures:
        return LoadFigures(
            client,
            operation,
            connections,
            elapsed,
            len(self.latencies),
            dict(self.errors),
            tuple(self.latencies),
        )


def _value(value_bytes: int) -> str:
    """A JSON string value whose encoding is ``value_bytes`` bytes (at least 2: ``""``)."""
    return "x" * max(0, value_bytes - 2)


# -- asyncio ------------------------------------------------------------------------------------


async def _run_async(
    urls: Sequence[str],
    connections: int,
    tally: _Tally,
    operation: str,
    op: Callable[[AsyncClient, int], Awaitable[object]],
    options: dict[str, Any] | None,
) -> LoadFigures:
    if connections < 1:
        raise ValueError("connections must be >= 1")

    async def worker(client: AsyncClient) -> None:
        while (seq := tally.next_op()) is not None:
            started = time.perf_counter()
            try:
                await op(client, seq)
            except RaftlogClientError as exc:
                tally.record(started, exc)
            else:
                tally.record(started, None)

    async with AsyncClient(list(urls), **(options or {})) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return tally.figures("async", operation, connections, elapsed)


async def run_async_appends(
    urls: Sequence[str],
    connections: int,
    duration_s: float,
    value_bytes: int = 100,
    *,
    log: str = "bench",
    max_ops: int = DEFAULT_MAX_OPS,
    client_options: dict[str, Any] | None = None,
) -> LoadFigures:
    """Single appends from ``connections`` tasks on one ``AsyncClient``."""
    value = _value(value_bytes)
    return await _run_async(
        urls,
        connections,
        _Tally(duration_s, max_ops),
        "append",
        lambda client, _seq: client.append(log, value),
        client_options,
    )


async def run_async_any_reads(
    urls: Sequence[str],
    connections: int,
    duration_s: float,
    *,
    log: str = "bench",
    offsets: int = 1,
    max_ops: int = DEFAULT_MAX_OPS,
    client_options: dict[str, Any] | None = None,
) -> LoadFigures:
    """``consistency="any"`` gets of offsets ``0 .. offsets-1`` from ``connections`` tasks."""
    if offsets < 1:
        raise ValueError("offsets must be >= 1")
    return await _run_async(
        urls,
        connections,
        _Tally(duration_s, max_ops),
        "any_read",
        lambda client, seq: client.get(log, seq % offsets, consistency="any"),
        client_options,
    )


# -- threads ----------------------------------------------------------------------------------


def _run_sync(
    urls: Sequence[str],
    connections: int,
    tally: _Tally,
    operation: str,
    op: Callable[[Client, int], object],
    options: dict[str, Any] | None,
) -> LoadFigures:
    if connections < 1:
        raise ValueError("connections must be >= 1")

    def worker(client: Client) -> None:
        while (seq := tally.next_op()) is not None:
            started = time.perf_counter()
            try:
                op(client, seq)
            except RaftlogClientError as exc:
                tally.record(started, exc)
            else:
                tally.record(started, None)

    with Client(list(urls), **(options or {})) as client:
        threads = [
            threading.Thread(target=worker, args=(client,), daemon=True) for _ in range(connections)
        ]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    return tally.figures("sync", operation, connections, elapsed)


def run_sync_appends(
    urls: Sequence[str],
    connections: int,
    duration_s: float,
    value_bytes: int = 100,
    *,
    log: str = "bench",
    max_ops: int = DEFAULT_MAX_OPS,
    client_options: dict[str, Any] | None = None,
) -> LoadFigures:
    """Single appends from ``connections`` threads sharing one ``Client``."""
    value = _value(value_bytes)
    return _run_sync(
        urls,
        connections,
        _Tally(duration_s, max_ops),
        "append",
        lambda client, _seq: client.append(log, value),
        client_options,
    )


def run_sync_any_reads(
    urls: Sequence[str],
    connections: int,
    duration_s: float,
    *,
    log: str = "bench",
    offsets: int = 1,
    max_ops: int = DEFAULT_MAX_OPS,
    client_options: dict[str, Any] | None = None,
) -> LoadFigures:
    """``consistency="any"`` gets of offsets ``0 .. offsets-1`` from ``connections`` threads."""
    if offsets < 1:
        raise ValueError("offsets must be >= 1")
    return _run_sync(
        urls,
        connections,
        _Tally(duration_s, max_ops),
        "any_read",
        lambda client, seq: client.get(log, seq % offsets, consistency="any"),
        client_options,
    )
