"""The hot routes (append, read one entry, read a range), served without FastAPI's router.

FastAPI's own dispatch costs more than these endpoints do (measured in
docs/PERFORMANCE.md, "The HTTP request path"): every request walks the exception and
exit-stack middlewares, matches the included routers one by one and solves its
dependencies. The endpoints themselves need none of that: they take the Starlette
``Request`` and the service, parse everything by hand (``api.validation``) and return a
``Response``. ``HotRoutes`` is a pure-ASGI middleware placed just inside
``NodeHeadersMiddleware`` (``api.app``): a request that matches a hot route exactly (its
method, and the route's own compiled path pattern) calls the same endpoint function the
router would, and an exception it raises goes to the same handler the app registered
(``app.exception_handlers``, looked up by the exception's MRO as Starlette does).
Anything else (other routes, HEAD, a ``root_path``, dependency overrides) goes down
FastAPI's stack unchanged.

What the fast path keeps, so the answer is byte for byte the router's: the endpoint and
its validation, the error envelopes and forwarding (``ServedByLeader``), the node headers
and the 500 of an unhandled error (both ``NodeHeadersMiddleware``, outside), and the
scope keys an endpoint or handler may read (``app``, ``path_params``, ``route``,
``endpoint``). A unit test checks that each hot route is the first route the router
itself would pick for the same request.

Runs on the serving loop; never blocks and never uses the thread pool (the endpoints and
handlers are coroutine functions: ``tests/unit/api/test_no_threadpool.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from re import Pattern
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.routers import get_service
from raftlog.service.types import LogServiceProtocol

__all__ = ["HotRoute", "HotRoutes", "hot_routes"]

Endpoint = Callable[[Request, LogServiceProtocol], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    """One route served directly: its method, the router's compiled pattern and
    convertors, and the endpoint function (and the APIRoute, for ``scope["route"]``)."""

    method: str
    path_regex: Pattern[str]
    param_convertors: dict[str, Convertor[Any]]
    endpoint: Endpoint
    route: APIRoute

    def match(self, method: str, path: str) -> dict[str, Any] | None:
        """The path parameters when the request is this route's, else None."""
        if method != self.method:
            return None
        found = self.path_regex.match(path)
        if found is None:
            return None
        return {
            name: self.param_convertors[name].convert(value)
            for name, value in found.groupdict().items()
        }


def hot_routes(routes: Sequence[Any], endpoints: Sequence[Callable[..., Any]]) -> list[HotRoute]:
    """The HotRoute of each of ``endpoints``, found among the router's ``routes``. Each
    must be a one-method APIRoute whose endpoint is a coroutine function taking exactly
    ``(request, service)``; anything else is a programming error (ValueError)."""
    out: list[HotRoute] = []
    for endpoint in endpoints:
        found = [r for r in routes if isinstance(r, APIRoute) and r.endpoint is endpoint]
        if len(found) != 1 or len(found[0].methods or ()) != 1:
            raise ValueError(f"{endpoint.__qualname__} is not exactly one one-method route")
        route = found[0]
        if not inspect.iscoroutinefunction(endpoint):
            raise ValueError(f"{endpoint.__qualname__} must be a coroutine function")
        if list(inspect.signature(endpoint).parameters) != ["request", "service"]:
            raise ValueError(f"{endpoint.__qualname__} must take (request, service) only")
        (method,) = tuple(route.methods or ())
        out.append(HotRoute(method, route.path_regex, route.param_convertors, endpoint, route))
    return out


class HotRoutes:
    """Pure ASGI: serves the ``routes`` of ``fastapi_app`` directly (module docstring);
    every other request goes to ``app``, the rest of FastAPI's stack."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, routes: Sequence[HotRoute]) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.routes = tuple(routes)

    def _route(self, scope: Scope) -> tuple[HotRoute, dict[str, Any]] | None:
        if scope["type"] != "http" or scope.get("root_path"):
            return None
        if self.fastapi_app.dependency_overrides:  # tests: let FastAPI resolve them
            return None
        method: str = scope["method"]
        path: str = scope["path"]
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._route(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        route, params = found
        scope["path_params"] = params
        scope["endpoint"] = route.endpoint
        scope["route"] = route.route
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request, await get_service(request))
        except Exception as exc:
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The app's handler's answer for ``exc``; re-raises when it has none (the node
        headers middleware then logs it and answers 500 ``internal``)."""
        handlers = self.fastapi_app.exception_handlers
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None and kind is not Exception:
                answer = handler(request, exc)
                response = await answer if inspect.isawaitable(answer) else answer
                exc.__traceback__ = None  # as Starlette: a reused instance keeps no frames
                if not isinstance(response, Response):
                    raise TypeError(f"the handler of {kind.__name__} returned {response!r}")
                return response
        raise exc
