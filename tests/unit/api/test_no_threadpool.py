"""Nothing on the request path runs in a worker thread.

FastAPI and Starlette run a plain ``def`` endpoint, dependency or exception handler in
the thread pool (``anyio.to_thread.run_sync``): a hop and a thread wake-up per request.
Two checks: statically, every route's endpoint and every dependency below it (and every
exception handler) is a coroutine function; dynamically, a request of every kind (each
route, its errors, 404, 405, forwarding) is served while the thread-pool entry points
raise.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from api.app import create_app
from raftlog.service.fake import FakeLogService
from tests.unit.api.support import TEST_LIMITS, seed

pytestmark = pytest.mark.unit


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, inside included routers too (an app may keep an included router as
    one opaque route that holds the router it includes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            for dependency in included.dependencies:  # router-level Depends(...)
                assert inspect.iscoroutinefunction(dependency.dependency), dependency
            yield from _routes(included.routes)
        else:
            yield route


def _name(call: Callable[..., Any]) -> str:
    return f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', call)!r}"


def test_every_endpoint_and_dependency_is_a_coroutine_function() -> None:
    app = create_app(FakeLogService(limits=TEST_LIMITS))
    checked = 0
    for route in _routes(app.routes):
        if isinstance(route, APIRoute):
            for call in _calls(route.dependant):
                assert inspect.iscoroutinefunction(call), (
                    f"{route.path}: {_name(call)} would run in the thread pool"
                )
                checked += 1
        elif isinstance(route, Route):  # /openapi.json: Starlette wraps plain functions too
            assert inspect.iscoroutinefunction(route.endpoint), route.path
    assert checked >= 2 * 8  # 8 /v1 and health routes, each with endpoint + get_service


def test_every_exception_handler_is_a_coroutine_function() -> None:
    app = create_app(FakeLogService(limits=TEST_LIMITS))
    assert app.exception_handlers
    for kind, handler in app.exception_handlers.items():
        assert inspect.iscoroutinefunction(handler), f"handler of {kind} is not async"


class _AsyncForwarder:
    async def forward(self, request: Request, leader_url: str, body: bytes) -> Response:
        return Response(b"{}", 201, media_type="application/json")


# (method, path, body or None, expected status): at least one request per route, and
# the error paths (a service error, a validation error, 404, 405, a forwarded write).
_REQUESTS: list[tuple[str, str, bytes | None, int]] = [
    ("POST", "/v1/logs/audit/entries", b'{"value":{"a":[1,2]}}', 201),
    ("POST", "/v1/logs/audit/entries", b'{"entries":[{"value":1},{"value":2,"key":"k"}]}', 201),
    ("POST", "/v1/logs/audit/entries", b'{"value":1,"value":2}', 400),
    ("POST", "/v1/logs/audit/entries?nope=1", b'{"value":1}', 400),
    ("GET", "/v1/logs/audit/entries/0", None, 200),
    ("GET", "/v1/logs/audit/entries/99", None, 404),
    ("GET", "/v1/logs/audit/entries?from=0&limit=2", None, 200),
    ("GET", "/v1/logs", None, 200),
    ("GET", "/v1/logs/audit", None, 200),
    ("GET", "/v1/logs/missing", None, 404),
    ("GET", "/v1/cluster", None, 200),
    ("GET", "/healthz", None, 200),
    ("GET", "/readyz", None, 200),
    ("GET", "/v1/nowhere", None, 404),
    ("DELETE", "/v1/logs/audit/entries", None, 405),
    ("GET", "/openapi.json", None, 200),
]


def _matches(route: APIRoute, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path.split("?")[0], "root_path": ""}
    return route.matches(scope)[0] == Match.FULL


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way into a worker thread raises (and is recorded)."""
    used: list[str] = []

    async def to_thread(*args: Any, **kwargs: Any) -> Any:
        used.append("anyio.to_thread.run_sync")
        raise AssertionError("the request path ran a function in the thread pool")

    def run_in_executor(self: Any, *args: Any) -> Any:
        used.append("loop.run_in_executor")
        raise AssertionError("the request path ran a function in an executor")

    monkeypatch.setattr(anyio.to_thread, "run_sync", to_thread)
    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", run_in_executor)
    return used


@pytest.mark.anyio
async def test_no_request_runs_in_the_thread_pool(no_threads: list[str]) -> None:
    fake = FakeLogService(limits=TEST_LIMITS)
    await seed(fake, "audit", b"1")
    app = create_app(fake)
    routes = [r for r in _routes(app.routes) if isinstance(r, APIRoute)]
    for route in routes:  # a new route needs a request here
        if route.path.startswith(("/v1", "/healthz", "/readyz")):
            assert any(_matches(route, method, path) for method, path, _, _ in _REQUESTS), (
                f"no request covers {route.methods} {route.path}"
            )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        for method, path, body, status in _REQUESTS:
            r = await client.request(method, path, content=body)
            assert r.status_code == status, (method, path, r.text)
    assert no_threads == []


@pytest.mark.anyio
async def test_a_forwarded_write_does_not_run_in_the_thread_pool(no_threads: list[str]) -> None:
    follower = FakeLogService(
        limits=TEST_LIMITS, leader=False, leader_id="n1", leader_url_value="http://leader:1"
    )
    app = create_app(follower, forwarder=_AsyncForwarder())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        r = await client.post("/v1/logs/audit/entries?ack=all", content=b'{"value":1}')
    assert r.status_code == 201, r.text
    assert no_threads == []
