"""api/hot.py: the hot routes answer exactly as FastAPI's router would, without it.

Each request below is sent twice to apps over equal fakes: once served by ``HotRoutes``,
once by FastAPI's router (an app with a dependency override, which the fast path leaves
to FastAPI). Status, headers and body must be the same, and the fake must have seen the
same calls; errors, forwarding and odd paths included.
"""

from __future__ import annotations

from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from api.app import HOT_ENDPOINTS, create_app
from api.hot import hot_routes
from api.routers import entries, get_service
from raftlog.errors import InvalidRequest, NoLeader
from raftlog.service.fake import FakeLogService
from tests.unit.api.support import TEST_LIMITS, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

LEADER_URL = "http://leader:8001"


class _Forwarder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    async def forward(self, request: Request, leader_url: str, body: bytes) -> Response:
        self.calls.append((request.method, str(request.url), body))
        return Response(b'{"forwarded":true}', 201, {"X-Raftlog-Node": "n1"}, "application/json")


_REQUESTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("POST", "/v1/logs/audit/entries", b'{"value":{"a":[1,2.50]},"key":"k"}', {}),
    ("POST", "/v1/logs/audit/entries", b'{"entries":[{"value":1},{"value":null}]}', {}),
    ("POST", "/v1/logs/audit/entries?ack=leader", b'{"value":"x"}', {}),
    ("POST", "/v1/logs/audit/entries?ack=all&expected_offset=9", b'{"value":1}', {}),
    ("POST", "/v1/logs/audit/entries", b'{"value":1,"value":2}', {}),
    ("POST", "/v1/logs/audit/entries", b'{"value":{"a":{"b":1,"b":2}}}', {}),
    ("POST", "/v1/logs/audit/entries", b'{"value":1,"extra":2}', {}),
    ("POST", "/v1/logs/audit/entries", b"{not json", {}),
    ("POST", "/v1/logs/audit/entries", b"", {}),
    ("POST", "/v1/logs/audit/entries", b'{"value":"' + b"x" * 2000 + b'"}', {}),
    ("POST", "/v1/logs/audit/entries", b'{"value":1}', {"Idempotency-Key": "k"}),
    ("POST", "/v1/logs/bad name!/entries", b'{"value":1}', {}),
    ("POST", "/v1/logs//entries", b'{"value":1}', {}),
    ("POST", "/v1/logs/audit/entries?expected_ofset=1", b'{"value":1}', {}),
    ("POST", "/v1/logs/audit/entries/", b'{"value":1}', {}),
    ("GET", "/v1/logs/audit/entries/0", None, {}),
    ("GET", "/v1/logs/audit/entries/1?consistency=any&max_lag=3", None, {}),
    ("GET", "/v1/logs/audit/entries/99", None, {}),
    ("GET", "/v1/logs/audit/entries/-1", None, {}),
    ("GET", "/v1/logs/audit/entries/0?consistency=leader", None, {}),
    ("GET", "/v1/logs/audit/entries/0?limit=1", None, {}),
    ("GET", "/v1/logs/audit/entries?from=0&limit=2", None, {}),
    ("GET", "/v1/logs/audit/entries?from=1&from=2", None, {}),
    ("GET", "/v1/logs/missing/entries", None, {}),
    ("GET", "/v1/logs/audit/entries/0/more", None, {}),
    ("HEAD", "/v1/logs/audit/entries/0", None, {}),
    ("PUT", "/v1/logs/audit/entries", b"{}", {}),
    ("GET", "/v1/logs/audit", None, {}),
]


async def _app(*, via_router: bool, follower: bool = False) -> tuple[FastAPI, FakeLogService]:
    fake = FakeLogService(
        limits=TEST_LIMITS,
        leader=not follower,
        leader_id=None if not follower else "n1",
        leader_url_value=LEADER_URL if follower else None,
    )
    await seed(fake, "audit", b'{"n":1}', b"[2]")
    app = create_app(fake, forwarder=_Forwarder())
    if via_router:
        app.dependency_overrides[get_service] = get_service  # the fast path steps aside
    return app, fake


async def _answers(app: FastAPI, requests: list[Any]) -> list[tuple[int, list[Any], bytes]]:
    out = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for method, path, body, headers in requests:
            r = await c.request(method, path, content=body, headers=headers)
            out.append((r.status_code, sorted(r.headers.multi_items()), r.content))
    return out


@pytest.mark.parametrize("follower", [False, True], ids=["leader", "follower"])
async def test_hot_answers_equal_the_routers(follower: bool) -> None:
    hot_app, hot_fake = await _app(via_router=False, follower=follower)
    slow_app, slow_fake = await _app(via_router=True, follower=follower)
    hot = await _answers(hot_app, _REQUESTS)
    slow = await _answers(slow_app, _REQUESTS)
    for request, a, b in zip(_REQUESTS, hot, slow, strict=True):
        assert a == b, request[:2]
    assert hot_fake.calls == slow_fake.calls
    assert hot_app.state.forwarder.calls == slow_app.state.forwarder.calls
    if follower:
        assert hot_app.state.forwarder.calls  # the ServedByLeader path was exercised


async def test_hot_routes_do_not_enter_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = await _app(via_router=False)

    async def no_router(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("FastAPI's router served a hot route")

    monkeypatch.setattr(fastapi.routing.APIRoute, "handle", no_router)
    hot = [r for r in _REQUESTS if r[1].startswith("/v1/logs/audit/entries") and r[0] != "HEAD"]
    hot = [r for r in hot if not r[1].endswith(("/more", "/entries/")) and r[0] != "PUT"]
    for status, _, body in await _answers(app, hot):
        assert status < 500, body


async def test_unhandled_errors_and_broken_services_are_500_on_the_hot_path() -> None:
    for via_router in (False, True):
        app, fake = await _app(via_router=via_router)
        fake.fail_next = RuntimeError("secret-internal-detail")
        [(status, headers, body)] = await _answers(app, [_REQUESTS[0]])
        assert status == 500 and b"secret" not in body
        assert ("x-raftlog-node", "fake-1") in headers


async def test_service_errors_keep_their_envelope_on_the_hot_path() -> None:
    answers = []
    for via_router in (False, True):
        app, fake = await _app(via_router=via_router)
        fake.fail_next = NoLeader("no leader is known")
        answers.append(await _answers(app, [_REQUESTS[15]]))
        fake.fail_next = InvalidRequest("nope", field="x")
        answers.append(await _answers(app, [_REQUESTS[15]]))
    assert answers[0] == answers[2] and answers[1] == answers[3]
    assert answers[0][0][0] == 503 and answers[1][0][0] == 400


def test_hot_routes_are_checked_when_the_app_is_built() -> None:
    assert [r.endpoint for r in hot_routes(entries.router.routes, HOT_ENDPOINTS)] == list(
        HOT_ENDPOINTS
    )

    async def not_a_route(request: Request, service: Any) -> Response:
        raise NotImplementedError

    with pytest.raises(ValueError, match="not exactly one"):
        hot_routes(entries.router.routes, [not_a_route])
