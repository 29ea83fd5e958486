"""The bounded client load functions of ``raftlog.client.load`` (the benchmarks' engine):
they stop at ``max_ops`` or the duration, count successes and errors by code, and time each
success. MockTransport nodes, no sockets."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from raftlog.client.load import (
    LoadFigures,
    run_async_any_reads,
    run_async_appends,
    run_sync_any_reads,
    run_sync_appends,
)

from ._fakes import URLS, appended, body_of, entry, error, ok

pytestmark = pytest.mark.unit


class Node:
    """Answers appends 201, every fifth one 503 ``no_leader`` (retries=0: an error), and
    ``any`` gets with the entry asked for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.appends: list[object] = []
        self.offsets: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.method == "POST":
                self.appends.append(body_of(request)["value"])
                if len(self.appends) % 5 == 0:
                    return error(503, "no_leader", leader=None)
                return ok(appended(len(self.appends)), 201)
            assert request.url.params["consistency"] == "any"
            offset = int(request.url.path.rsplit("/", 1)[1])
            self.offsets.append(offset)
            return ok(entry(offset))

    def options(self) -> dict[str, object]:
        return {"transport": httpx.MockTransport(self), "retries": 0}


def test_sync_appends_stop_at_max_ops_and_count_errors_by_code() -> None:
    node = Node()
    figures = run_sync_appends(
        URLS[:1], 3, 30.0, value_bytes=10, max_ops=50, client_options=node.options()
    )
    assert (figures.client, figures.operation, figures.connections) == ("sync", "append", 3)
    assert figures.ok == 40 and figures.errors == {"no_leader": 10}
    assert len(node.appends) == 50 and node.appends[0] == "x" * 8  # '"xxxxxxxx"': 10 bytes
    assert len(figures.latencies_s) == 40 and figures.ops_per_s > 0


def test_async_appends_and_reads() -> None:
    node = Node()
    appends = asyncio.run(
        run_async_appends(URLS[:1], 8, 30.0, max_ops=20, client_options=node.options())
    )
    assert appends.ok == 16 and appends.error_count == 4 and appends.client == "async"
    reads = asyncio.run(
        run_async_any_reads(URLS[:1], 4, 30.0, offsets=3, max_ops=30, client_options=node.options())
    )
    assert reads.ok == 30 and reads.errors == {}
    assert sorted(node.offsets) == [0] * 10 + [1] * 10 + [2] * 10


def test_sync_reads_stop_at_the_duration() -> None:
    node = Node()
    figures = run_sync_any_reads(URLS[:1], 1, 0.2, client_options=node.options())
    assert 0 < figures.ok < 10_000_000 and figures.elapsed_s < 10


def test_percentiles_are_nearest_rank() -> None:
    figures = LoadFigures("sync", "append", 1, 1.0, 4, latencies_s=(0.4, 0.1, 0.3, 0.2))
    assert figures.percentile(50) == 0.2 and figures.percentile(100) == 0.4
    assert figures.percentile(0) == 0.1 and figures.ops_per_s == 4.0
    assert LoadFigures("sync", "append", 1, 1.0, 0).percentile(50) is None


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        run_sync_appends(URLS[:1], 1, 0.0)
    with pytest.raises(ValueError):
        run_sync_appends(URLS[:1], 0, 1.0, client_options=Node().options())
