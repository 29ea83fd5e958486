"""Spreading ``consistency=any`` reads over the nodes (issue 11): weights from each node's
latency EWMA, read backoff after a 503 (``too_stale``...) or a failure, the ``/readyz``
check on the way back, and everything else still routed to the preferred node.

No sockets: MockTransport nodes, a fake clock (the handlers move it by each node's service
time, so the client measures those latencies), and a seeded random source for the draws.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from raftlog.client import AsyncClient, Client, TooStale
from raftlog.client.nodes import _Nodes

from ._fakes import URLS, FakeClock, Recorder, appended, entry, error, ok

pytestmark = pytest.mark.unit

N1, N2, N3 = URLS


class Cluster:
    """Three fake nodes. ``delay[host]``: seconds the fake clock moves while that node
    answers; ``stale``: hosts answering ``any`` reads 503 ``too_stale``; ``down``: hosts
    refusing connections; ``unready``: hosts whose ``/readyz`` answers 503."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.delay = {"n1": 0.004, "n2": 0.002, "n3": 0.001}
        self.stale: set[str] = set()
        self.down: set[str] = set()
        self.unready: set[str] = set()
        self.rec = Recorder(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.clock.advance(self.delay[host])
        if request.url.path == "/readyz":
            return ok({"status": "ok"}, 503 if host in self.unready else 200, node=host)
        if request.method == "POST":
            return ok(appended(), 201, node=host)
        if request.url.params.get("consistency") == "any" and host in self.stale:
            return error(503, "too_stale", "behind the leader", node=host, leader="n1")
        return ok(entry(4), node=host)

    def client(self, **kw: Any) -> Client:
        client = Client(URLS, transport=self.rec.transport(), **kw)
        self.wire(client)
        return client

    def wire(self, client: Client | AsyncClient) -> None:
        client._core.nodes.clock = self.clock
        client._core.nodes.rand = random.Random(11).random
        client._core.jitter = lambda low, high: high
        client._sleep = self.clock.advance  # type: ignore[assignment]

    def read_hosts(self) -> list[str]:
        return [r.url.host for r in self.rec.requests if r.url.path.startswith("/v1/logs")]

    def clear(self) -> None:
        self.rec.requests.clear()


def test_weights_follow_inverse_latency_and_are_clipped() -> None:
    clock = FakeClock()
    nodes = _Nodes(list(URLS), 1.0, 30.0, clock, random.Random(1).random)
    assert nodes.read_weights() == pytest.approx({N1: 1 / 3, N2: 1 / 3, N3: 1 / 3})
    nodes.served_read(N1, 0.001)
    nodes.served_read(N2, 0.002)
    # n3 is not measured yet: it counts as fast as the fastest, so it is measured soon.
    assert nodes.read_weights() == pytest.approx({N1: 0.4, N2: 0.2, N3: 0.4})
    nodes.served_read(N3, 1.0)  # a thousand times slower: clipped to 1/10 of the fastest
    weights = nodes.read_weights()
    assert weights[N3] == pytest.approx(weights[N1] / 10)
    assert weights[N2] == pytest.approx(weights[N1] / 2)


def test_latency_is_an_ewma_and_waiting_reads_do_not_count() -> None:
    nodes = _Nodes(list(URLS), 1.0, 30.0, FakeClock(), random.Random(1).random)
    nodes.served_read(N1, 0.010)
    nodes.served_read(N1, 0.020)
    assert nodes.latency(N1) == pytest.approx(0.010 + _Nodes.EWMA_ALPHA * 0.010)
    nodes.served_read(N1, None)  # a min_index read or a long poll: no sample
    assert nodes.latency(N1) == pytest.approx(0.013)


def test_draws_follow_the_weights() -> None:
    nodes = _Nodes(list(URLS), 1.0, 30.0, FakeClock(), random.Random(5).random)
    for url, latency in ((N1, 0.004), (N2, 0.002), (N3, 0.001)):
        nodes.served_read(url, latency)
    counts = Counter(nodes.pick_read(set()) for _ in range(7000))
    # weights 1/4 : 1/2 : 1 -> 1/7, 2/7, 4/7 of the draws
    assert counts[N1] == pytest.approx(1000, rel=0.1)
    assert counts[N2] == pytest.approx(2000, rel=0.1)
    assert counts[N3] == pytest.approx(4000, rel=0.1)
    assert nodes.pick_read({N1, N2, N3}) is None


def test_any_reads_spread_by_latency_while_other_calls_stay_on_the_preferred_node() -> None:
    cluster = Cluster()
    with cluster.client() as client:
        for _ in range(300):
            client.get("orders", 4, consistency="any")
        counts = Counter(cluster.read_hosts())
        # n3 answers fastest (1 ms), n1 slowest (4 ms): every node gets reads, n3 the most.
        assert counts["n3"] > counts["n2"] > counts["n1"] > 0
        assert client._core.nodes.latency(N3) == pytest.approx(0.001)
        cluster.clear()
        client.append("orders", 1)
        client.get("orders", 4)  # quorum (the default)
        client.get("orders", 4, consistency="leader")
        assert cluster.read_hosts() == ["n1", "n1", "n1"]


def test_spread_reads_false_sends_any_reads_to_the_preferred_node() -> None:
    cluster = Cluster()
    with cluster.client(spread_reads=False) as client:
        for _ in range(20):
            client.get("orders", 4, consistency="any")
    assert set(cluster.read_hosts()) == {"n1"}


def test_min_index_is_passed_to_whichever_node_serves_the_read() -> None:
    cluster = Cluster()
    with cluster.client() as client:
        for _ in range(30):
            client.get("orders", 4, consistency="any", min_index=1207)
        assert len(set(cluster.read_hosts())) == 3
        for request in cluster.rec.requests:
            assert request.url.params["min_index"] == "1207"
        # Those reads waited on the server: their latency says nothing of the node's speed.
        assert all(client._core.nodes.latency(url) is None for url in URLS)


def test_a_too_stale_node_is_skipped_for_its_backoff_then_checked_with_readyz() -> None:
    cluster = Cluster()
    cluster.stale.add("n3")
    with cluster.client(node_backoff=1.0) as client:
        for _ in range(40):  # each read succeeds: a refusal moves it to another node
            assert client.get("orders", 4, consistency="any").offset == 4
        hosts = cluster.read_hosts()
        assert hosts.count("n3") == 1  # refused once, then left out of the spread
        assert client._core.nodes.read_weights()[N3] == 0.0
        cluster.clear()
        cluster.stale.clear()
        cluster.clock.advance(1.5)  # the read backoff (1 s) is over
        for _ in range(40):
            client.get("orders", 4, consistency="any")
        paths = [(r.url.host, r.url.path) for r in cluster.rec.requests]
        first_n3 = next(i for i, (host, _) in enumerate(paths) if host == "n3")
        assert paths[first_n3] == ("n3", "/readyz")  # checked before it gets reads again
        assert paths[first_n3 + 1] == ("n3", "/v1/logs/orders/entries/4")
        assert [p for p in paths if p[1] == "/readyz"] == [("n3", "/readyz")]


def test_a_node_failing_readyz_stays_out_longer_and_the_read_goes_elsewhere() -> None:
    cluster = Cluster()
    cluster.stale.add("n3")
    with cluster.client(node_backoff=1.0) as client:
        for _ in range(20):
            client.get("orders", 4, consistency="any")
        cluster.unready.add("n3")
        cluster.clock.advance(1.5)
        cluster.clear()
        for _ in range(40):
            client.get("orders", 4, consistency="any")
        probes = [r.url.host for r in cluster.rec.requests if r.url.path == "/readyz"]
        assert probes == ["n3"]  # failed: back in read backoff, now for 2 s
        assert "n3" not in cluster.read_hosts()
        cluster.unready.clear()
        cluster.clock.advance(2.5)
        for _ in range(40):
            client.get("orders", 4, consistency="any")
        assert "n3" in cluster.read_hosts()


def test_a_node_that_refuses_connections_is_left_out_until_its_backoff_ends() -> None:
    cluster = Cluster()
    cluster.down.add("n2")
    with cluster.client(node_backoff=1.0) as client:
        for _ in range(40):
            client.get("orders", 4, consistency="any")
        assert Counter(r.url.host for r in cluster.rec.requests)["n2"] == 1
        cluster.down.clear()
        cluster.clock.advance(1.5)
        cluster.clear()
        for _ in range(60):
            client.get("orders", 4, consistency="any")
        n2 = [r.url.path for r in cluster.rec.requests if r.url.host == "n2"]
        assert n2[0] == "/readyz" and len(n2) > 2


def test_when_every_node_is_stale_the_reader_gets_too_stale() -> None:
    cluster = Cluster()
    cluster.stale.update({"n1", "n2", "n3"})
    with cluster.client(retries=1) as client, pytest.raises(TooStale):
        client.get("orders", 4, consistency="any", max_lag=3)


def test_the_async_client_spreads_the_same_way() -> None:
    cluster = Cluster()

    async def main() -> Counter[str]:
        client = AsyncClient(URLS, transport=cluster.rec.transport())
        cluster.wire(client)

        async def sleep(seconds: float) -> None:
            cluster.clock.advance(seconds)

        client._sleep = sleep
        async with client:
            for _ in range(300):
                await client.get("orders", 4, consistency="any")
        return Counter(cluster.read_hosts())

    counts = asyncio.run(main())
    assert counts["n3"] > counts["n2"] > counts["n1"] > 0
