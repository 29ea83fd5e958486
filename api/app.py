"""The FastAPI application: routers, error handlers, and the node headers on every /v1 answer.

``create_app(service, forwarder=..., lifespan=...)`` is the only entry point. The app
keeps ``service`` on ``app.state.service`` (routers reach it through the ``get_service``
dependency) and the forwarder on ``app.state.forwarder``.

Every response whose path starts with ``/v1`` (errors, 404s and 307s included) carries
``service.headers().as_headers()``, computed when the response starts, i.e. describing the
node when it answered. A header the response already has is kept: a forwarded answer
keeps the leader's ``X-Raftlog-*`` headers, since the leader served it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.docs import install_docs
from api.errors import install_error_handlers, internal_error_response
from api.forward import Forwarder
from api.hot import HotRoutes, hot_routes
from api.openapi import install_openapi
from api.routers import cluster, entries, get_service, health, logs
from api.validation import route_params
from raftlog.service.types import LogServiceProtocol, NodeHeaders

__all__ = ["HOT_ENDPOINTS", "create_app", "get_service"]

log = logging.getLogger("raftlog.api")


class NodeHeadersMiddleware:
    """Pure ASGI: adds the node headers to /v1 responses, and turns an exception that no
    handler took into a 500 ``internal`` envelope (logged, never sent to the client).

    A client that goes away mid-request (Starlette's ``ClientDisconnect``: the body was
    cut off, or the connection closed while streaming) is not a server error: one INFO
    line, no traceback, and no answer (there is nobody to send it to). Our routes receive
    only while reading the request body, before anything is proposed, so such a request
    wrote nothing."""

    def __init__(self, app: ASGIApp, service: LogServiceProtocol) -> None:
        self.app = app
        self.service = service

    def _node_headers(self) -> NodeHeaders | None:
        try:
            return self.service.headers()
        except Exception:  # the answer matters more than its headers
            log.exception("service.headers() failed")
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        with_headers = path == "/v1" or path.startswith("/v1/")
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if with_headers:
                    node = self._node_headers()
                    if node is not None:
                        message = _with_headers(message, node.as_headers())
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            log.info("client disconnected during %s %s; no answer sent", scope.get("method"), path)
        except Exception:
            if started:
                raise
            log.exception("unhandled error serving %s %s", scope.get("method"), path)
            await internal_error_response()(scope, receive, send_wrapper)


_NODE_PREFIX = b"x-raftlog-"
_raw_names: dict[str, bytes] = {}  # "X-Raftlog-Node" -> b"x-raftlog-node", filled once


def _with_headers(message: Message, extra: dict[str, str]) -> Message:
    """``message`` with each of ``extra`` it does not already have (by name, any case).
    Only ``X-Raftlog-*`` names are compared: ``extra`` holds nothing else."""
    headers = list(message.get("headers", []))
    present = {bytes(name).lower() for name, _ in headers if name[:10].lower() == _NODE_PREFIX}
    for name, value in extra.items():
        raw_name = _raw_names.get(name)
        if raw_name is None:
            raw_name = _raw_names.setdefault(name, name.lower().encode("latin-1"))
        if raw_name not in present:
            headers.append((raw_name, value.encode("latin-1", "replace")))
    return {**message, "headers": headers}


_ROUTER_MODULES = (entries, logs, cluster, health)
# Served by api.hot without FastAPI's router: the routes a load is made of.
HOT_ENDPOINTS = (entries.append_entries, entries.get_entry, entries.read_range)


def create_app(
    service: LogServiceProtocol,
    *,
    forwarder: Forwarder | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
) -> FastAPI:
    """The HTTP API over ``service``. Without ``forwarder``, a request that must be served by
    the leader answers 503 ``no_leader`` unless it asked for ``redirect=true`` (307)."""
    app = FastAPI(
        title="raftlog",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # api.docs serves /docs and /redoc without a CDN
        redoc_url=None,
        # FastAPI's native OpenTelemetry: raftlog configures none, and asking whether
        # a provider exists costs every request several lookups (measured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_docs(app)
    app.state.service = service
    app.state.forwarder = forwarder
    for module in _ROUTER_MODULES:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and route_params(route.endpoint) is None:
                # Every route of the contract is strict about its parameters.
                raise RuntimeError(f"route {route.path} declares no RouteParams")
        app.include_router(module.router)
    install_error_handlers(app)
    # Added first, so it runs inside NodeHeadersMiddleware (the last added is outermost).
    hot = hot_routes(entries.router.routes, HOT_ENDPOINTS)
    app.add_middleware(HotRoutes, fastapi_app=app, routes=hot)
    app.add_middleware(NodeHeadersMiddleware, service=service)
    # /openapi.json documents the limits the routes enforce: the service's.
    routes = [route for module in _ROUTER_MODULES for route in module.router.routes]
    install_openapi(app, routes, service.limits)
    return app
