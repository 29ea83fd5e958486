"""``/v1/logs``: list logs by name, read one log's metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api import schemas, validation
from api.errors import error_responses
from api.forward import REDIRECT_RESPONSE_DOC
from api.routers import ServiceDep
from raftlog.service.types import Limits

__all__ = ["GET_LOG", "LIST_LOGS", "router"]

router = APIRouter(prefix="/v1/logs", tags=["logs"])

_READ_ERRORS = ("invalid_request", "no_leader", "no_quorum", "too_stale", "node_stopped", "timeout")

LIST_LOGS = validation.RouteParams(("after", "logs_limit", *validation.READ_PARAMS))
GET_LOG = validation.RouteParams(("log", *validation.READ_PARAMS))


@router.get(
    "",
    summary="List logs in name order",
    response_model=schemas.LogsPage,
    responses={307: REDIRECT_RESPONSE_DOC, **error_responses(*_READ_ERRORS)},
    openapi_extra=LIST_LOGS.openapi_extra(Limits()),
)
@validation.accepts(LIST_LOGS)
async def list_logs(request: Request, service: ServiceDep) -> Response:
    """One page of logs whose name sorts after `after`; `next_after` is null on the last
    page."""
    params = LIST_LOGS.query(request)
    after, limit = validation.logs_page_params(params)
    options = validation.read_options(params)
    page = await service.list_logs(after, limit, options)
    return schemas.json_response(
        200, {"logs": [schemas.log_dict(info) for info in page.logs], "next_after": page.next_after}
    )


@router.get(
    "/{log}",
    summary="One log's metadata",
    response_model=schemas.LogObject,
    responses={307: REDIRECT_RESPONSE_DOC, **error_responses(*_READ_ERRORS, "log_not_found")},
    openapi_extra=GET_LOG.openapi_extra(Limits()),
)
@validation.accepts(GET_LOG)
async def get_log(request: Request, service: ServiceDep) -> Response:
    """404 `log_not_found` until the log's first append."""
    log = validation.log_name(request.path_params["log"])
    options = validation.read_options(GET_LOG.query(request))
    info = await service.get_log(log, options)
    return schemas.json_response(200, schemas.log_dict(info))
