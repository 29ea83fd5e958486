"""The one place where errors become HTTP.

Every error body is ``{"error": {"code": "<snake_case>", "message": "<sentence>", ...details}}``
where the details are the raising error's ``.details`` (``next_offset``, ``first_offset``,
``field``, ``committed`` plus offsets, ...).

Sources of errors and where they are handled:

* ``raftlog.errors.RaftlogError`` raised by validation or the service:
  ``STATUS_BY_CODE`` gives the status; 429/503 add ``Retry-After: 1``.
* ``raftlog.errors.ServedByLeader``: not an error for the client; the request is handed to
  the leader (``api.forward.hand_to_leader``: 307 or forwarded).
* FastAPI's ``RequestValidationError``: 400 ``invalid_request`` naming the field.
* Starlette's ``HTTPException`` (unknown route, wrong method): 404 ``not_found``,
  405 ``method_not_allowed``, keeping the envelope.
* Anything else: 500 ``internal``, logged with its traceback, never sent to the client
  (``internal_error_response``, used by the middleware in ``api.app``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from api.schemas import ErrorEnvelope, json_response
from raftlog.errors import RaftlogError, ServedByLeader

__all__ = [
    "ERROR_DOCS",
    "INTERNAL_MESSAGE",
    "RETRY_AFTER_SECONDS",
    "RETRY_AFTER_STATUSES",
    "STATUS_BY_CODE",
    "error_body",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "internal_error_response",
    "raftlog_error_response",
    "status_for",
    "validation_message",
]

log = logging.getLogger("raftlog.api")

# code -> status. Every code of raftlog.errors is here (a unit test checks it).
STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "log_not_found": 404,
    "offset_not_found": 404,
    "method_not_allowed": 405,
    "offset_mismatch": 409,
    "idempotency_key_reused": 409,
    "membership_change_in_progress": 409,
    "trimmed": 410,
    "entry_too_large": 413,
    "batch_too_large": 413,
    "request_too_large": 413,
    "overloaded": 429,
    "internal": 500,
    "no_leader": 503,
    "no_quorum": 503,
    "too_stale": 503,
    "node_stopped": 503,
    "not_ready": 503,
    "outcome_unknown": 504,
    "timeout": 504,
    "not_fully_replicated": 504,
    "insufficient_storage": 507,
}

# Statuses whose answer means "try again shortly": they carry Retry-After.
RETRY_AFTER_STATUSES = frozenset({429, 503})
RETRY_AFTER_SECONDS = "1"

_CODE_BY_HTTP_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    429: "overloaded",
    503: "node_stopped",
}

INTERNAL_MESSAGE = "internal error; the node's log has the details"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope. Details never override ``code`` or ``message``."""
    inner: dict[str, Any] = {"code": code, "message": message}
    if details:
        for name, value in details.items():
            if name not in inner:
                inner[name] = value
    return {"error": inner}


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = dict(headers or {})
    if status_code in RETRY_AFTER_STATUSES:
        all_headers.setdefault("Retry-After", RETRY_AFTER_SECONDS)
    return json_response(status_code, error_body(code, message, details), all_headers)


def internal_error_response() -> Response:
    return error_response(500, "internal", INTERNAL_MESSAGE)


def status_for(exc: RaftlogError) -> int:
    return STATUS_BY_CODE.get(exc.code, 500)


def raftlog_error_response(exc: RaftlogError) -> Response:
    status_code = STATUS_BY_CODE.get(exc.code)
    if status_code is None or exc.code == "internal":
        log.error("unmapped %s (code %r): %s", type(exc).__name__, exc.code, exc.message)
        return internal_error_response()
    try:
        return error_response(status_code, exc.code, exc.message, exc.details)
    except (TypeError, ValueError):  # details that are not JSON: keep the code and message
        log.exception("details of %s are not JSON-serializable", type(exc).__name__)
        return error_response(status_code, exc.code, exc.message)


# -- handlers --------------------------------------------------------------------------------


async def _on_raftlog_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RaftlogError)
    return raftlog_error_response(exc)


async def _on_served_by_leader(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServedByLeader)
    from api.forward import hand_to_leader  # forward imports nothing from here; no cycle

    body: bytes = getattr(request.state, "raw_body", b"")
    try:
        return await hand_to_leader(request, exc.leader_url, body)
    except RaftlogError as failure:
        return raftlog_error_response(failure)


def _field_path(loc: Sequence[Any]) -> str:
    """("body", "entries", 3, "value") -> "body.entries[3].value"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_message(errors: Sequence[Any]) -> tuple[str, str]:
    """(field, message) for the first of FastAPI's validation errors."""
    if not errors:
        return "request", "the request is invalid"
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    kind = str(first.get("type", ""))
    where = loc[0] if loc else ""
    if where in ("query", "path", "header", "cookie") and len(loc) >= 2:
        field = _field_path(loc[1:])
        label = f"{'query' if where == 'query' else where} parameter {field!r}"
        if where == "header":
            label = f"header {field!r}"
    else:
        field = _field_path(loc) or "body"
        label = field
    if kind == "missing":
        return field, f"{label} is missing"
    if kind == "json_invalid":
        problem = (first.get("ctx") or {}).get("error", "malformed")
        return "body", f"request body is not valid JSON: {problem}"
    msg = str(first.get("msg", "is invalid"))
    shown = first.get("input")
    got = f" (got {shown!r})" if isinstance(shown, str | int | float) else ""
    if kind in ("enum", "literal_error"):
        expected = (first.get("ctx") or {}).get("expected", "")
        return field, f"{label} must be one of {expected}{got}"
    return field, f"{label} is invalid: {msg[:1].lower()}{msg[1:]}{got}"


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    field, message = validation_message(exc.errors())
    return error_response(400, "invalid_request", message, {"field": field})


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status_code = exc.status_code
    path = request.url.path
    if status_code == 404:
        code, message = "not_found", f"no such route: {request.method} {path}"
    elif status_code == 405:
        allowed = _allowed_methods(request)
        code = "method_not_allowed"
        message = f"method {request.method} is not allowed on {path}; allowed: {allowed}"
        return error_response(405, code, message, headers={**(exc.headers or {}), "Allow": allowed})
    else:
        code, message = _CODE_BY_HTTP_STATUS.get(status_code, "error"), str(exc.detail)
    return error_response(status_code, code, message, headers=dict(exc.headers or {}))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette names only the first matching
    route's methods): each method is tried against the routes."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    # ServedByLeader is a RaftlogError: Starlette picks the most specific handler (MRO).
    app.add_exception_handler(ServedByLeader, _on_served_by_leader)
    app.add_exception_handler(RaftlogError, _on_raftlog_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)


# -- OpenAPI ---------------------------------------------------------------------------------

# code -> (what it means for the client, example message, example details)
ERROR_DOCS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "invalid_request": (
        "malformed JSON, bad parameter, bad log name; nothing was written",
        "query parameter 'limit' must be an integer between 1 and 10000, got '0'",
        {"field": "limit"},
    ),
    "log_not_found": ("the log does not exist", "log 'audit' does not exist", {}),
    "offset_not_found": (
        "no entry at that offset (at or past the end)",
        "log 'audit' has no entry at offset 42 (next offset 42)",
        {"next_offset": 42},
    ),
    "offset_mismatch": (
        "expected_offset did not hold; nothing was written",
        "expected_offset did not match: the log's next offset is 43; nothing was written",
        {"next_offset": 43},
    ),
    "idempotency_key_reused": (
        "the key was first used with a different fingerprint; nothing was written",
        "Idempotency-Key 'k1' was first used with a different request; nothing was written",
        {},
    ),
    "trimmed": (
        "the offset was removed by retention",
        "offset 3 of log 'audit' was removed by retention",
        {"first_offset": 100},
    ),
    "entry_too_large": (
        "an entry's value is larger than max_entry_bytes; nothing was written",
        "body.entries[3].value (entry 3) is 1048577 bytes as compact JSON; "
        "max_entry_bytes is 1048576; nothing was written",
        {"field": "body.entries[3].value", "index": 3, "size": 1048577, "limit": 1048576},
    ),
    "batch_too_large": (
        "too many entries or bytes in one batch; nothing was written",
        "body.entries holds 10001 entries; max_batch_entries is 10000; nothing was written",
        {"field": "body.entries", "limit": 10000},
    ),
    "request_too_large": (
        "the request body is larger than max_request_bytes; nothing was written",
        "the request body is larger than max_request_bytes (16777216); nothing was written",
        {"limit": 16777216},
    ),
    "overloaded": (
        "the node's proposal queue is full; nothing was written; retry after Retry-After",
        "the proposal queue is full; nothing was written",
        {},
    ),
    "no_leader": (
        "no leader is known: writes were refused before reaching Raft, reads not served",
        "no leader is known",
        {},
    ),
    "no_quorum": (
        "the node cannot reach a majority; not served, nothing was written",
        "no quorum confirmed the read within 10 s",
        {},
    ),
    "too_stale": (
        "an `any` read refused by max_lag or max_staleness_ms",
        "this node is 12 entries behind the leader's commit index; max_lag is 5",
        {"lag": 12},
    ),
    "node_stopped": (
        "the node is shutting down or has stopped; nothing was written",
        "node n2 is stopping",
        {},
    ),
    "outcome_unknown": (
        "the write reached Raft and its fate is unknown",
        "the proposal timed out after reaching Raft; it may still commit",
        {},
    ),
    "timeout": (
        "a read's wait ran out (min_index, barrier)",
        "this node has applied index 1200, not min_index 1210, after 10 s",
        {},
    ),
    "not_fully_replicated": (
        "ack=all: committed by a majority, not yet on every member",
        "committed by a majority but not yet replicated to every member within 10 s",
        {
            "committed": True,
            "log": "audit",
            "offset": 42,
            "last_offset": 44,
            "count": 3,
            "index": 1210,
            "term": 3,
        },
    ),
    "insufficient_storage": (
        "the leader's disk is nearly full; nothing was written",
        "node n1 has less than 64 MiB of disk free; nothing was written",
        {},
    ),
    "internal": ("an unexpected failure (logged on the node)", INTERNAL_MESSAGE, {}),
    "not_ready": ("the node is not ready to serve", "no leader is known yet", {}),
}

_RETRY_AFTER_DOC = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "example": 1},
    }
}


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the envelope model and one example per
    code. ``internal`` (500) is always included."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, "internal"):
        by_status.setdefault(STATUS_BY_CODE[code], [])
        if code not in by_status[STATUS_BY_CODE[code]]:
            by_status[STATUS_BY_CODE[code]].append(code)
    out: dict[int | str, dict[str, Any]] = {}
    for status_code in sorted(by_status):
        status_codes = by_status[status_code]
        examples = {
            code: {
                "summary": ERROR_DOCS[code][0],
                "value": error_body(code, ERROR_DOCS[code][1], ERROR_DOCS[code][2]),
            }
            for code in status_codes
        }
        entry: dict[str, Any] = {
            "model": ErrorEnvelope,
            "description": "; ".join(f"`{c}`: {ERROR_DOCS[c][0]}" for c in status_codes),
            "content": {"application/json": {"examples": examples}},
        }
        if status_code in RETRY_AFTER_STATUSES:
            entry["headers"] = _RETRY_AFTER_DOC
        out[status_code] = entry
    return out
