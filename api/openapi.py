"""The OpenAPI document (``/openapi.json``), built from the limits the node enforces.

``install_openapi(app, limits)`` makes ``app.openapi()`` build, once and then cache, a
document in which every figure a configuration can change is the one ``limits`` holds:
the ``Limits`` the app was created with (``service.limits``), which are the limits the
request parsers of ``api.validation`` and the service enforce. Two apps with different
limits document different figures; nothing here is shared between their documents.

What follows ``limits``:

* the description's "Limits on this node" list (every field of ``Limits``);
* the range read's ``limit`` (maximum ``max_range_limit``, and ``max_response_bytes`` in
  its description) and ``wait`` (maximum ``max_wait_s``) parameters;
* the append body (``max_entry_bytes``, ``max_key_bytes``, ``max_batch_entries``,
  ``max_batch_bytes``, ``max_request_bytes``: rendered by the route's ``RouteParams.body``);
* the examples of ``entry_too_large``, ``batch_too_large``, ``request_too_large`` and of
  the ``invalid_request`` for an out-of-range ``limit``: the answers this node would give.

The other figures (the ``timeout`` bounds, the log listing's ``limit``, the log name's
length) are constants of ``api.validation`` / ``raftlog.commands``, documented from the
same constants the parsers check.

Each route declares its parameters once (``api.validation.RouteParams``, by keys of
``param_docs``); the strict check and these docs read the same declaration.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.errors import error_body
from api.validation import (
    DEFAULT_LOGS_LIMIT,
    DEFAULT_RANGE_LIMIT,
    DEFAULT_TIMEOUT_S,
    MAX_LOGS_LIMIT,
    MAX_TIMEOUT_S,
    PARAM_WHERE,
    RouteParams,
    route_params,
)
from raftlog.commands import LOG_NAME_RE, MAX_INT
from raftlog.service.types import ACK_LEVELS, CONSISTENCY_LEVELS, Limits

__all__ = [
    "API_DESCRIPTION",
    "TAGS",
    "build_openapi",
    "description",
    "install_openapi",
    "limit_error_examples",
    "param_docs",
    "route_openapi",
]

API_DESCRIPTION = """\
raftlog: named, append-only logs of JSON entries, replicated with Raft.

Every `/v1` response carries `X-Raftlog-Node`, `X-Raftlog-Cluster`, `X-Raftlog-Term`,
`X-Raftlog-Applied-Index`, `X-Raftlog-Leader` and `X-Raftlog-Last-Contact-Ms`, describing the
node that answered. Every error has the body `{"error": {"code", "message", ...details}}`.

The API is strict: an unknown query parameter, a query parameter given more than once, and
a JSON body with an object that repeats a key (at any depth, inside values too) answer 400
`invalid_request` naming them; nothing is written. The limits documented here are this
node's configured ones.
"""

TAGS: list[dict[str, str]] = [
    {"name": "entries", "description": "Append and read entries."},
    {"name": "logs", "description": "The logs and their metadata."},
    {"name": "cluster", "description": "Members, leader, replication."},
    {"name": "health", "description": "Liveness and readiness probes."},
]

_NODE_HEADER_DOCS: dict[str, dict[str, Any]] = {
    "X-Raftlog-Node": {"description": "Id of the node that answered.", "type": "string"},
    "X-Raftlog-Cluster": {
        "description": "The cluster's UUID (empty before it is set).",
        "type": "string",
    },
    "X-Raftlog-Term": {"description": "The node's current Raft term.", "type": "integer"},
    "X-Raftlog-Applied-Index": {
        "description": "The node's applied Raft index when it answered.",
        "type": "integer",
    },
    "X-Raftlog-Leader": {
        "description": "The leader's id as the node knows it; empty when none.",
        "type": "string",
    },
    "X-Raftlog-Last-Contact-Ms": {
        "description": "Milliseconds since the node last heard from a leader; 0 on the leader; "
        "empty when never.",
        "type": "string",
    },
}


def _figure(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def description(limits: Limits) -> str:
    """The API's description, ending with every field of ``limits``."""
    lines = [f"- `{f.name}`: {_figure(getattr(limits, f.name))}" for f in fields(limits)]
    return API_DESCRIPTION + "\nLimits on this node:\n\n" + "\n".join(lines) + "\n"


# -- parameters ------------------------------------------------------------------------------


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, example: Any = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }
    if example is not None:
        out["example"] = example
    return out


def _non_neg() -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": MAX_INT}


def param_docs(limits: Limits) -> dict[str, dict[str, Any]]:
    """OpenAPI's parameter objects, by declaration key (``logs_limit`` is the ``limit`` of
    the log listing), documenting the limits this node enforces. A new dict on every call:
    a document may be changed without touching another's."""
    return {
        "log": _param(
            "log",
            "path",
            {"type": "string", "pattern": LOG_NAME_RE.pattern, "maxLength": 128},
            "The log's name: 1 to 128 characters of A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit.",
            "audit",
        ),
        "offset": _param("offset", "path", _non_neg(), "The entry's offset in the log.", 41),
        "ack": _param(
            "ack",
            "query",
            {"type": "string", "enum": list(ACK_LEVELS), "default": "quorum"},
            "When to answer: `quorum` (default) once committed by a majority and applied here "
            "(201); `all` once every member has it too (201, or 504 `not_fully_replicated`); "
            "`leader` once the leader accepted it, before commit (202, may be lost).",
            "quorum",
        ),
        "expected_offset": _param(
            "expected_offset",
            "query",
            _non_neg(),
            "Append only if the log's next offset is exactly this when the batch is applied; "
            "otherwise 409 `offset_mismatch` with `next_offset`. Not with `ack=leader`.",
            42,
        ),
        "timeout": _param(
            "timeout",
            "query",
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_TIMEOUT_S,
                "default": DEFAULT_TIMEOUT_S,
            },
            f"Seconds to wait for the outcome (> 0, at most {MAX_TIMEOUT_S:g}, "
            f"default {DEFAULT_TIMEOUT_S:g}).",
            10,
        ),
        "redirect": _param(
            "redirect",
            "query",
            {"type": "boolean", "default": False},
            "`true`: a follower answers 307 with `Location` on the leader instead of "
            "forwarding the request itself.",
            False,
        ),
        "consistency": _param(
            "consistency",
            "query",
            {"type": "string", "enum": list(CONSISTENCY_LEVELS), "default": "quorum"},
            "`quorum` (default): linearizable, through a Raft round; `leader`: served by the "
            "leader under its lease, no Raft round (linearizable while no node's clock runs "
            "more than election_timeout_min / leader_lease_ms times faster than another's); "
            "`any`: this node's local state, possibly stale.",
            "quorum",
        ),
        "min_index": _param(
            "min_index",
            "query",
            _non_neg(),
            "Wait until the answering node has applied this Raft index (pass the `index` a "
            "write returned), up to `timeout`; else 504 `timeout`.",
            1210,
        ),
        "max_lag": _param(
            "max_lag",
            "query",
            _non_neg(),
            "With `consistency=any`: 503 `too_stale` if this node knows it is more than this "
            "many Raft entries behind the leader's commit index.",
            100,
        ),
        "max_staleness_ms": _param(
            "max_staleness_ms",
            "query",
            _non_neg(),
            "With `consistency=any`: 503 `too_stale` if this node has not heard from a leader "
            "for more than this many milliseconds.",
            1000,
        ),
        "from": _param(
            "from", "query", {**_non_neg(), "default": 0}, "First offset to return (default 0).", 0
        ),
        "limit": _param(
            "limit",
            "query",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": limits.max_range_limit,
                "default": DEFAULT_RANGE_LIMIT,
            },
            f"Most entries to return (1 to {limits.max_range_limit}, default "
            f"{DEFAULT_RANGE_LIMIT}). The page also stops before the response would exceed "
            f"max_response_bytes ({limits.max_response_bytes} bytes on this node), always "
            "with at least one entry: continue from `next_offset`.",
            100,
        ),
        "wait": _param(
            "wait",
            "query",
            {"type": "number", "minimum": 0, "maximum": limits.max_wait_s, "default": 0},
            f"Long-poll: if no entry at `from` exists yet, wait up to this many seconds "
            f"(0 to {limits.max_wait_s:g}) for one, then answer (possibly empty).",
            30,
        ),
        "after": _param(
            "after",
            "query",
            {"type": "string", "pattern": LOG_NAME_RE.pattern},
            "List logs whose name sorts after this one (the previous page's `next_after`).",
            "audit",
        ),
        "logs_limit": _param(
            "limit",
            "query",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LOGS_LIMIT,
                "default": DEFAULT_LOGS_LIMIT,
            },
            f"Most logs to return (1 to {MAX_LOGS_LIMIT}, default {DEFAULT_LOGS_LIMIT}).",
            100,
        ),
    }


# The docs and the strict check name the same parameters, at the same place.
_DOCUMENTED = {key: (doc["name"], doc["in"]) for key, doc in param_docs(Limits()).items()}
if _DOCUMENTED != PARAM_WHERE:  # a real check: fails at import, whatever the flags
    raise RuntimeError(
        f"api.openapi documents {_DOCUMENTED}, api.validation declares {PARAM_WHERE}"
    )


def route_openapi(params: RouteParams, limits: Limits) -> dict[str, Any]:
    """A route's ``openapi_extra``: its declared parameters (and body) with ``limits``."""
    docs = param_docs(limits)
    extra: dict[str, Any] = {"parameters": [docs[name] for name in params.names]}
    if params.body is not None:
        extra.update(params.body(limits))
    return extra


# -- the examples of the limit errors --------------------------------------------------------


def limit_error_examples(limits: Limits) -> dict[str, dict[str, Any]]:
    """code -> the error body this node answers in the documented example case (the same
    text ``api.validation`` raises; a unit test compares them with real answers):

    * ``entry_too_large``: the value of ``body.entries[3]`` is one byte too large;
    * ``batch_too_large``: one entry more than ``max_batch_entries``;
    * ``request_too_large``: a body larger than ``max_request_bytes``, sent without a
      ``Content-Length`` (with one, the message also gives its size);
    * ``invalid_request``: ``limit=0`` on a range read."""
    size = limits.max_entry_bytes + 1
    count = limits.max_batch_entries + 1
    return {
        "entry_too_large": error_body(
            "entry_too_large",
            f"body.entries[3].value (entry 3) is {size} bytes as compact JSON; "
            f"max_entry_bytes is {limits.max_entry_bytes}; nothing was written",
            {
                "field": "body.entries[3].value",
                "index": 3,
                "size": size,
                "limit": limits.max_entry_bytes,
            },
        ),
        "batch_too_large": error_body(
            "batch_too_large",
            f"body.entries holds {count} entries; max_batch_entries is "
            f"{limits.max_batch_entries}; nothing was written",
            {"field": "body.entries", "count": count, "limit": limits.max_batch_entries},
        ),
        "request_too_large": error_body(
            "request_too_large",
            "the request body is larger than max_request_bytes "
            f"({limits.max_request_bytes}); nothing was written",
            {"limit": limits.max_request_bytes},
        ),
        "invalid_request": error_body(
            "invalid_request",
            "query parameter 'limit' must be an integer between 1 and "
            f"{limits.max_range_limit}, got '0'",
            {"field": "limit"},
        ),
    }


def _document_limit_errors(operation: dict[str, Any], limits: Limits) -> None:
    """Replace the operation's examples of the limit errors with this node's answers.
    The responses are copied first: their nested dicts may be shared with the routers."""
    examples_by_code = limit_error_examples(limits)
    responses = copy.deepcopy(operation.get("responses", {}))
    for response in responses.values():
        examples = response.get("content", {}).get("application/json", {}).get("examples", {})
        for code, example in examples.items():
            if code in examples_by_code:
                example["value"] = examples_by_code[code]
    operation["responses"] = responses


# -- the document ----------------------------------------------------------------------------


def _document_node_headers(schema: dict[str, Any]) -> None:
    """Add the X-Raftlog-* headers to every documented response of every /v1 operation."""
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1"):
            continue
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                headers = response.setdefault("headers", {})
                for name, doc in _NODE_HEADER_DOCS.items():
                    headers.setdefault(
                        name, {"description": doc["description"], "schema": {"type": doc["type"]}}
                    )


def _document_limits(schema: dict[str, Any], routes: Sequence[BaseRoute], limits: Limits) -> None:
    """Render each declared route's parameters, body and limit errors with ``limits``; the
    routers' own ``openapi_extra`` shows the defaults. Only whole values of an operation
    are replaced: nested dicts may be shared with the routers."""
    for route in routes:
        declared = route_params(route.endpoint) if isinstance(route, APIRoute) else None
        if not isinstance(route, APIRoute) or declared is None:
            continue
        ops = schema.get("paths", {}).get(route.path_format, {})
        extra = route_openapi(declared, limits)
        ours = {(p["name"], p["in"]) for p in extra["parameters"]}
        for method in route.methods or ():
            operation = ops.get(method.lower())
            if operation is None:
                continue
            kept = [p for p in operation.get("parameters", []) if (p["name"], p["in"]) not in ours]
            operation["parameters"] = kept + extra["parameters"]
            if "requestBody" in extra:
                operation["requestBody"] = extra["requestBody"]
            _document_limit_errors(operation, limits)


def build_openapi(app: FastAPI, routes: Sequence[BaseRoute], limits: Limits) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes, with ``limits`` (not cached). ``routes``:
    the routes of the routers ``app`` includes (as the routers hold them: an app may keep
    an included router as one opaque route), whose declared parameters are documented."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=description(limits),
        routes=app.routes,
        tags=TAGS,
    )
    _document_node_headers(schema)
    _document_limits(schema, routes, limits)
    return schema


def install_openapi(app: FastAPI, routes: Sequence[BaseRoute], limits: Limits) -> None:
    """``app.openapi()`` (served as ``/openapi.json``) builds the document with ``limits``
    on first use and caches it on ``app.openapi_schema`` (``routes``: see build_openapi)."""
    app.description = description(limits)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, routes, limits)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
