"""raftlog.client.AsyncClient: the same behaviour, awaited (MockTransport, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from raftlog.client import (
    Accepted,
    AsyncClient,
    ConnectionFailed,
    NoLeader,
    OutcomeUnknown,
    Overloaded,
)

from ._fakes import URLS, Recorder, Sleeps, appended, cluster_body, connect_error, entry, error, ok

pytestmark = pytest.mark.unit


def run(
    handler: Any,
    body: Callable[[AsyncClient], Awaitable[Any]],
    urls: list[str] | None = None,
    **kwargs: Any,
) -> tuple[Any, Recorder, Sleeps]:
    rec = Recorder(handler)
    sleeps = Sleeps()

    async def main() -> Any:
        async with AsyncClient(urls or URLS[:1], transport=rec.transport(), **kwargs) as client:
            client._sleep = sleeps.async_sleep
            return await body(client)

    return asyncio.run(main()), rec, sleeps


def test_append_and_reads_parse_results() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.method == "POST":
            if r.url.params["ack"] == "leader":
                return ok({"log": "orders", "accepted": True}, 202)
            return ok(appended(4, 2), 201, node="n2")
        if r.url.path.endswith("/entries/4"):
            return ok(entry(4))
        if r.url.path == "/v1/cluster":
            return ok(cluster_body())
        return ok({"entries": [entry(4), entry(5)], "next_offset": 6})

    async def body(c: AsyncClient) -> Any:
        result = await c.append_batch("orders", ["a", ("b", "k")])
        accepted = await c.append("orders", "c", ack="leader")
        one = await c.get("orders", 4, consistency="any")
        page = await c.read("orders", 4, 2)
        status = await c.cluster()
        return result, accepted, one, page, status

    (result, accepted, one, page, status), _, _ = run(handler, body)
    assert (result.offset, result.last_offset, result.node) == (4, 5, "n2")
    assert accepted == Accepted("orders")
    assert one.offset == 4 and one.meta.node == "n1"
    assert [e.offset for e in page.entries] == [4, 5] and page.next_offset == 6
    assert status.leader == "n1" and len(status.nodes) == 3


def test_failover_on_connect_error() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host in ("n1", "n2"):
            return connect_error(r)
        return ok(appended(), 201, node="n3")

    result, rec, sleeps = run(handler, lambda c: c.append("orders", 1), URLS)
    assert result.node == "n3" and rec.hosts() == ["n1", "n2", "n3"] and sleeps.delays == []


def test_all_unreachable_raises_connection_failed() -> None:
    with pytest.raises(ConnectionFailed):
        run(connect_error, lambda c: c.append("orders", 1), URLS, retries=1, backoff=0.001)


def test_503_leader_hint_is_followed() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/v1/cluster":
            return ok(cluster_body(leader="n2"), leader="n2")
        if r.url.host == "n2":
            return ok(appended(1), 201, node="n2")
        return error(503, "no_quorum", leader="n2")

    result, rec, _ = run(handler, lambda c: c.append("orders", 1), URLS)
    assert result.node == "n2"
    assert rec.paths() == ["/v1/logs/orders/entries", "/v1/cluster", "/v1/logs/orders/entries"]


def test_503_and_429_are_retried_with_backoff() -> None:
    answers = iter(
        [
            error(503, "no_leader", leader=None),
            error(429, "overloaded", extra_headers={"Retry-After": "1"}),
            ok(appended(), 201),
        ]
    )
    _, rec, sleeps = run(lambda r: next(answers), lambda c: c.append("o", 1), backoff=0.01)
    assert len(rec.requests) == 3
    assert len(sleeps.delays) == 2 and sleeps.delays[1] >= 1.0

    with pytest.raises(NoLeader):
        run(lambda r: error(503, "no_leader"), lambda c: c.append("o", 1), retries=1, backoff=0)
    with pytest.raises(Overloaded):
        run(lambda r: error(429, "overloaded"), lambda c: c.append("o", 1), retries=0)


def test_outcome_unknown_is_not_retried() -> None:
    with pytest.raises(OutcomeUnknown):
        _, _, _ = run(lambda r: error(504, "outcome_unknown"), lambda c: c.append("o", 1), URLS)

    rec = Recorder(lambda r: error(504, "outcome_unknown"))

    async def once() -> None:
        async with AsyncClient(URLS, transport=rec.transport(), retries=5) as c:
            await c.append("o", 1)

    with pytest.raises(OutcomeUnknown):
        asyncio.run(once())
    assert len(rec.requests) == 1


def test_broken_connection_write_unknown_read_retried() -> None:
    def broken(r: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("server disconnected", request=r)

    with pytest.raises(OutcomeUnknown) as info:
        run(broken, lambda c: c.append("o", 1), URLS)
    assert info.value.code == "connection_lost"

    calls = iter([True, False])

    def flaky(r: httpx.Request) -> httpx.Response:
        if next(calls):
            raise httpx.ReadError("reset", request=r)
        return ok(entry(0))

    result, rec, _ = run(flaky, lambda c: c.get("o", 0), URLS)
    assert result.offset == 0 and len(rec.requests) == 2


def test_async_tail_is_bounded() -> None:
    pages = iter(
        [
            {"entries": [entry(0)], "next_offset": 1},
            {"entries": [], "next_offset": 1},
            {"entries": [entry(1), entry(2)], "next_offset": 3},
        ]
    )

    async def body(c: AsyncClient) -> list[int]:
        return [e.offset async for e in c.tail("orders", poll_wait=1, max_entries=2)]

    got, rec, _ = run(lambda r: ok(next(pages)), body)
    assert got == [0, 1]
    assert [r.url.params["from"] for r in rec.requests] == ["0", "1", "1"]


def test_async_health() -> None:
    async def body(c: AsyncClient) -> tuple[bool, bool]:
        return await c.health(), await c.ready()

    result, _, _ = run(lambda r: ok({"status": "ok"}), body)
    assert result == (True, True)
    result, _, _ = run(connect_error, body)
    assert result == (False, False)
