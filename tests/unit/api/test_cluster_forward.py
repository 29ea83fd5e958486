"""``GET /v1/cluster`` on a follower: the leader's view, fetched by ``api.forward`` with
``X-Raftlog-No-Forward: 1``; the follower's own view when the leader cannot be asked."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.forward import NO_FORWARD_HEADER, HttpForwarder
from raftlog.service.fake import FakeLogService
from tests.unit.api.support import TEST_LIMITS

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

LEADER_URL = "http://leader:8001"


def _follower() -> FakeLogService:
    return FakeLogService(
        limits=TEST_LIMITS, node_id="n2", leader=False, leader_id="n1", leader_url_value=LEADER_URL
    )


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def _get_cluster(follower: FakeLogService, forwarder: HttpForwarder | None) -> httpx.Response:
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        return await client.get("/v1/cluster")


async def test_a_follower_relays_the_leaders_view() -> None:
    leader = FakeLogService(limits=TEST_LIMITS, node_id="n1")
    follower = _follower()
    seen: list[httpx.Request] = []

    async def to_leader(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await httpx.ASGITransport(app=create_app(leader)).handle_async_request(request)

    forwarder = HttpForwarder(client=httpx.AsyncClient(transport=httpx.MockTransport(to_leader)))
    r = await _get_cluster(follower, forwarder)
    await forwarder.aclose()
    assert r.status_code == 200
    body = r.json()
    assert body["leader"] == "n1" and [n["id"] for n in body["nodes"]] == ["n1"]
    assert body["nodes"][0]["role"] == "leader"
    assert str(seen[0].url) == f"{LEADER_URL}/v1/cluster"
    assert seen[0].headers[NO_FORWARD_HEADER] == "1"  # the leader answers its own view
    assert leader.calls == [("cluster", (True,))]
    assert follower.calls == []  # the follower's own view was not needed
    assert r.headers["X-Raftlog-Node"] == "n2"  # the follower answered


@pytest.mark.parametrize("failure", ["unreachable", "error status"])
async def test_a_follower_answers_its_own_view_when_the_leader_cannot_be_asked(
    failure: str,
) -> None:
    follower = _follower()

    def leader(request: httpx.Request) -> httpx.Response:
        if failure == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(503, json={"error": {"code": "no_leader", "message": "x"}})

    forwarder = HttpForwarder(client=httpx.AsyncClient(transport=httpx.MockTransport(leader)))
    r = await _get_cluster(follower, forwarder)
    await forwarder.aclose()
    assert r.status_code == 200
    assert r.json()["nodes"][0] | {"id": "n2", "role": "follower"} == r.json()["nodes"][0]
    assert follower.calls == [("cluster", (False,))]


async def test_a_follower_without_a_forwarder_answers_its_own_view() -> None:
    follower = _follower()
    r = await _get_cluster(follower, None)
    assert r.status_code == 200 and r.json()["nodes"][0]["id"] == "n2"
    assert follower.calls == [("cluster", (False,))]


async def test_a_follower_that_knows_no_leader_answers_its_own_view() -> None:
    follower = FakeLogService(limits=TEST_LIMITS, node_id="n2", leader=False)

    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no leader is known: nothing to ask")

    forwarder = HttpForwarder(client=httpx.AsyncClient(transport=httpx.MockTransport(never)))
    r = await _get_cluster(follower, forwarder)
    await forwarder.aclose()
    assert r.status_code == 200 and r.json()["leader"] is None
    assert follower.calls == [("cluster", (False,))]
