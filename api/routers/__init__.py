"""Routers, one per resource. Each is thin: parse and validate, call the service, shape
the response. Errors are raised, never turned into responses here (see ``api.errors``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from raftlog.service.types import LogServiceProtocol

__all__ = ["ServiceDep", "get_service"]


async def get_service(request: Request) -> LogServiceProtocol:
    """The service the app was created with (``app.state.service``). Tests may override
    this dependency with ``app.dependency_overrides[get_service]``.

    A coroutine function on purpose: FastAPI runs a plain ``def`` dependency in its
    thread pool, a hop (and a thread wake-up) on every request. Nothing on the request
    path may run there (``tests/unit/api/test_no_threadpool.py``)."""
    service: LogServiceProtocol = request.app.state.service
    return service


ServiceDep = Annotated[LogServiceProtocol, Depends(get_service)]
