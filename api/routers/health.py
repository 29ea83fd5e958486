"""``/healthz`` (the process is alive) and ``/readyz`` (the node can serve)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from api import schemas, validation
from api.errors import RETRY_AFTER_SECONDS, error_body, error_responses
from api.routers import ServiceDep

__all__ = ["HEALTHZ", "READYZ", "router"]

router = APIRouter(tags=["health"])
HEALTHZ = validation.RouteParams()  # no query parameters
READYZ = validation.RouteParams()
log = logging.getLogger("raftlog.api")

_NOT_READY_EXAMPLE = {
    "ready": False,
    "reason": "no leader is known yet",
    **error_body("not_ready", "no leader is known yet"),
}


@router.get(
    "/healthz",
    summary="Liveness: the process is alive",
    response_model=schemas.Health,
    responses={
        400: error_responses("invalid_request")[400],
        503: {
            "description": "The node has fail-stopped (it is about to exit).",
            "content": {
                "application/json": {
                    "example": {
                        "status": "failed",
                        **error_body("node_stopped", "the node has stopped"),
                    }
                }
            },
        },
    },
)
@validation.accepts(HEALTHZ)
async def healthz(request: Request, service: ServiceDep) -> Response:
    HEALTHZ.query(request)
    try:
        alive = service.live()
    except Exception:
        log.exception("live() failed")
        alive = False
    if alive:
        return schemas.json_response(200, {"status": "ok"})
    return schemas.json_response(
        503,
        {"status": "failed", **error_body("node_stopped", "the node has stopped")},
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


@router.get(
    "/readyz",
    summary="Readiness: a leader is known and the commit index learned at start is applied",
    response_model=schemas.Ready,
    responses={
        400: error_responses("invalid_request")[400],
        503: {
            "description": "Not ready; `reason` (and `error.message`) says why.",
            "content": {"application/json": {"example": _NOT_READY_EXAMPLE}},
        },
    },
)
@validation.accepts(READYZ)
async def readyz(request: Request, service: ServiceDep) -> Response:
    READYZ.query(request)
    try:
        ready, reason = service.ready()
    except Exception:
        log.exception("ready() failed")
        ready, reason = False, "the node could not report its readiness"
    if ready:
        return schemas.json_response(200, {"ready": True})
    return schemas.json_response(
        503,
        {"ready": False, "reason": reason, **error_body("not_ready", reason)},
        {"Retry-After": RETRY_AFTER_SECONDS},
    )
