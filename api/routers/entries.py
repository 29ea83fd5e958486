"""``/v1/logs/{log}/entries``: append, read one entry, read a range (with long-poll)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from api import schemas, validation
from api.errors import error_responses
from api.forward import REDIRECT_RESPONSE_DOC, redirect_to_known_leader
from api.routers import ServiceDep
from raftlog.service.types import Accepted, Limits

__all__ = ["APPEND", "GET_ENTRY", "READ_RANGE", "router"]

router = APIRouter(prefix="/v1/logs", tags=["entries"])


def _append_body(limits: Limits) -> dict[str, Any]:
    """The append body's OpenAPI, with this node's limits."""
    entry_schema: dict[str, Any] = {
        "type": "object",
        "required": ["value"],
        "additionalProperties": False,
        "properties": {
            "value": {
                "description": "Any JSON value, null included; at most max_entry_bytes "
                f"({limits.max_entry_bytes} bytes on this node) as compact UTF-8 JSON."
            },
            "key": {
                "type": ["string", "null"],
                "maxLength": limits.max_key_bytes,
                "description": "Optional opaque label, at most "
                f"{limits.max_key_bytes} UTF-8 bytes.",
            },
        },
    }
    return {
        "requestBody": {
            "required": True,
            "description": "One entry, or a batch of 1 to max_batch_entries "
            f"({limits.max_batch_entries} on this node) entries and at most max_batch_bytes "
            f"({limits.max_batch_bytes} bytes) of values. A batch is atomic: all of it gets "
            "consecutive offsets in one Raft entry, or none of it is written. Unknown "
            "fields and a JSON object with a repeated key (at any depth, inside values "
            "too) are refused; the whole body is at most max_request_bytes "
            f"({limits.max_request_bytes} bytes).",
            "content": {"application/json": _append_content(entry_schema, limits)},
        }
    }


def _append_content(entry_schema: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {
        "schema": {
            "oneOf": [
                {**entry_schema, "title": "One entry"},
                {
                    "title": "A batch",
                    "type": "object",
                    "required": ["entries"],
                    "additionalProperties": False,
                    "properties": {
                        "entries": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": limits.max_batch_entries,
                            "items": entry_schema,
                        },
                    },
                },
            ]
        },
        "examples": {
            "single": {
                "summary": "one entry",
                "value": {"value": {"user": "u-17", "action": "login"}, "key": "u-17"},
            },
            "batch": {
                "summary": "a batch",
                "value": {"entries": [{"value": 1}, {"value": "two", "key": "k"}, {"value": None}]},
            },
        },
    }


APPEND = validation.RouteParams(
    ("log", "ack", "expected_offset", "timeout", "redirect"), writes=True, body=_append_body
)
GET_ENTRY = validation.RouteParams(("log", "offset", *validation.READ_PARAMS))
READ_RANGE = validation.RouteParams(("log", "from", "limit", "wait", *validation.READ_PARAMS))

_READ_ERRORS = (
    "invalid_request",
    "trimmed",
    "no_leader",
    "no_quorum",
    "too_stale",
    "node_stopped",
    "timeout",
)


@router.post(
    "/{log:logname}/entries",
    summary="Append one entry or an atomic batch",
    status_code=201,
    response_model=schemas.Appended,
    responses={
        202: {"model": schemas.Accepted, "description": "`ack=leader`: accepted before commit."},
        307: REDIRECT_RESPONSE_DOC,
        **error_responses(
            "invalid_request",
            "offset_mismatch",
            "idempotency_key_reused",
            "entry_too_large",
            "batch_too_large",
            "request_too_large",
            "overloaded",
            "no_leader",
            "no_quorum",
            "node_stopped",
            "outcome_unknown",
            "not_fully_replicated",
            "insufficient_storage",
        ),
    },
    openapi_extra=APPEND.openapi_extra(Limits()),
)
@validation.accepts(APPEND)
async def append_entries(request: Request, service: ServiceDep) -> Response:
    """Any node accepts writes; a follower forwards them to the leader (or answers 307 with
    `redirect=true`). A write answered 400, 409, 413, 429, 503 or 507 was definitely not
    applied; after a 504 or a broken connection the outcome is unknown. The
    `Idempotency-Key` header is not supported yet (400)."""
    log = validation.log_name(request.path_params["log"])
    params = APPEND.query(request)
    ack, expected_offset, timeout_s, redirect = validation.append_params(params)
    validation.reject_idempotency_key(request)
    if redirect and not service.is_leader():
        return redirect_to_known_leader(request, service.leader_url())
    body = await validation.read_body(request, service.limits.max_request_bytes)
    append = validation.parse_append(
        log, body, service.limits, ack=ack, expected_offset=expected_offset, timeout_s=timeout_s
    )
    request.state.raw_body = body  # for forwarding on ServedByLeader (api.errors)
    result = await service.append(append)
    if isinstance(result, Accepted):
        return schemas.json_response(202, result.to_dict())
    return schemas.json_response(201, result.to_dict())


@router.get(
    "/{log:logname}/entries/{offset}",
    summary="Read one entry",
    response_model=schemas.Entry,
    responses={
        307: REDIRECT_RESPONSE_DOC,
        **error_responses(*_READ_ERRORS, "offset_not_found"),
    },
    openapi_extra=GET_ENTRY.openapi_extra(Limits()),
)
@validation.accepts(GET_ENTRY)
async def get_entry(request: Request, service: ServiceDep) -> Response:
    """404 `offset_not_found` at or past the end (with `next_offset`); 410 `trimmed` below
    the first retained offset (with `first_offset`)."""
    log = validation.log_name(request.path_params["log"])
    offset = validation.offset_path(request.path_params["offset"])
    options = validation.read_options(GET_ENTRY.query(request))
    entry = await service.get_entry(log, offset, options)
    return Response(schemas.entry_bytes(entry), media_type=schemas.JSON_MEDIA_TYPE)


@router.get(
    "/{log:logname}/entries",
    summary="Read a range of entries (optionally long-polling)",
    response_model=schemas.EntriesPage,
    responses={307: REDIRECT_RESPONSE_DOC, **error_responses(*_READ_ERRORS)},
    openapi_extra=READ_RANGE.openapi_extra(Limits()),
)
@validation.accepts(READ_RANGE)
async def read_range(request: Request, service: ServiceDep) -> Response:
    """Entries from `from`, at most `limit`; `next_offset` is the offset after the last one
    returned (`from` when none). The page stops early, with at least one entry, when one
    more would take the response past max_response_bytes: continue from `next_offset`.
    A log that does not exist yet reads as empty. Below the first retained offset: 410
    `trimmed`, never a silent skip."""
    log = validation.log_name(request.path_params["log"])
    params = READ_RANGE.query(request)
    start, limit, wait_s = validation.range_params(params, service.limits)
    options = validation.read_options(params)
    page = await service.read_range(log, start, limit, options, wait_s)
    return Response(
        schemas.entries_page_bytes(page.entries, page.next_offset),
        media_type=schemas.JSON_MEDIA_TYPE,
    )
