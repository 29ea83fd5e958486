"""Response models (for OpenAPI) and the wire encoders that build the actual bytes.

The pydantic models document every body in ``/openapi.json``; the hot paths do not run
them. Entry bodies are spliced together from the stored ``value_json`` bytes (already
compact UTF-8 JSON, checked when it was appended), so a range read never parses or
re-encodes a value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from api import codec
from raftlog.service.types import key_json
from raftlog.state.types import Entry as StoredEntry
from raftlog.state.types import LogInfo

__all__ = [
    "JSON_MEDIA_TYPE",
    "Accepted",
    "Appended",
    "Cluster",
    "ClusterNode",
    "EntriesPage",
    "Entry",
    "ErrorBody",
    "ErrorEnvelope",
    "Health",
    "LogObject",
    "LogsPage",
    "Ready",
    "dumps",
    "entries_page_bytes",
    "entry_bytes",
    "json_response",
    "log_dict",
]

JSON_MEDIA_TYPE = "application/json"

# -- models ----------------------------------------------------------------------------------


class Entry(BaseModel):
    """One entry of a log."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "offset": 41,
                    "value": {"user": "u-17", "action": "login"},
                    "key": "u-17",
                    "timestamp": 1732245600123,
                    "index": 1207,
                    "term": 3,
                }
            ]
        }
    )

    offset: int = Field(description="Dense, gap-free position of the entry in its log (from 0).")
    value: Any = Field(description="The stored JSON value (any JSON, null included).")
    key: str | None = Field(description="The client's optional label, or null.")
    timestamp: int = Field(
        description="Milliseconds since the Unix epoch, set by the proposing node; "
        "non-decreasing within a log."
    )
    index: int = Field(description="Raft index of the Raft entry that carried this entry.")
    term: int = Field(description="Raft term of that Raft entry.")


class EntriesPage(BaseModel):
    """A range of entries."""

    entries: list[Entry]
    next_offset: int = Field(
        description="The offset after the last entry returned (`from` when none): "
        "pass it as the next `from`. A page can end before `limit` entries and before the "
        "end of the log, when one more entry would take the response past "
        "max_response_bytes; it always holds at least one entry when one exists at `from`."
    )


class LogObject(BaseModel):
    """Metadata of one log."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"log": "audit", "first_offset": 0, "next_offset": 42, "count": 42, "bytes": 4096}
            ]
        }
    )

    log: str = Field(description="The log's name.")
    first_offset: int = Field(description="The first retained offset.")
    next_offset: int = Field(description="The offset the next append gets.")
    count: int = Field(description="Number of retained entries.")
    bytes: int = Field(description="Bytes of retained values (compact JSON).")


class LogsPage(BaseModel):
    """One page of logs, in name order."""

    logs: list[LogObject]
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )


class Appended(BaseModel):
    """201: the batch was committed by a majority and applied on the answering node."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "log": "audit",
                    "offset": 42,
                    "last_offset": 44,
                    "count": 3,
                    "index": 1210,
                    "term": 3,
                }
            ]
        }
    )

    log: str
    offset: int = Field(description="Offset of the first entry appended.")
    last_offset: int = Field(description="Offset of the last entry appended.")
    count: int = Field(description="Number of entries appended.")
    index: int = Field(
        description="Raft index of the append: pass it as `min_index` to read your writes."
    )
    term: int = Field(description="Raft term of the append.")


class Accepted(BaseModel):
    """202 (`ack=leader`): accepted by the leader for replication, before commit."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "log": "audit",
                    "accepted": True,
                    "message": "accepted by the leader before commit: it can be lost if the "
                    "leader fails before replicating it; offsets are assigned at commit",
                }
            ]
        }
    )

    log: str
    accepted: Literal[True]
    message: str


class ClusterNode(BaseModel):
    id: str
    raft: str = Field(description="The node's advertised Raft address.")
    http: str = Field(description="The node's advertised HTTP address.")
    role: Literal["leader", "follower", "candidate", "unknown"]
    applied_index: int | None
    match_index: int | None = Field(description="From the leader's view; null when unknown.")
    lag: int | None = Field(description="Raft entries behind the leader; null when unknown.")
    last_contact_ms: int | None
    reachable: bool | None


class Cluster(BaseModel):
    """The cluster as the leader sees it (a follower asks the leader)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cluster": "demo",
                    "cluster_id": "6f1c2d8e-3b7a-4c5e-9d10-2a3b4c5d6e7f",
                    "leader": "n1",
                    "term": 3,
                    "commit_index": 1210,
                    "nodes": [
                        {
                            "id": "n1",
                            "raft": "127.0.0.1:7001",
                            "http": "127.0.0.1:8001",
                            "role": "leader",
                            "applied_index": 1210,
                            "match_index": 1210,
                            "lag": 0,
                            "last_contact_ms": 0,
                            "reachable": True,
                        },
                        {
                            "id": "n2",
                            "raft": "127.0.0.1:7002",
                            "http": "127.0.0.1:8002",
                            "role": "follower",
                            "applied_index": None,
                            "match_index": 1209,
                            "lag": 1,
                            "last_contact_ms": 12,
                            "reachable": True,
                        },
                    ],
                }
            ]
        }
    )

    cluster: str = Field(description="The cluster's human name.")
    cluster_id: str | None = Field(description="The cluster's UUID (null before it is set).")
    leader: str | None = Field(description="The leader's id; null when none is known.")
    term: int
    commit_index: int
    nodes: list[ClusterNode]


class ErrorBody(BaseModel):
    """``code`` and ``message``, plus details that depend on the code."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="snake_case error code (see the contract's table).")
    message: str = Field(description="A human sentence naming the field or the cause.")


class ErrorEnvelope(BaseModel):
    """Every error: ``{"error": {"code", "message", ...details}}``."""

    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    reason: str | None = None


# -- wire encoders ---------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (``api.codec.dumps``: orjson where it writes the same bytes)."""
    return codec.dumps(obj)


def json_response(status_code: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code, headers, JSON_MEDIA_TYPE)


# The byte layout below is the one ``raftlog.service.types.entry_wire_size`` and
# ``page_wire_size`` count (the response cap is measured with them): change both together.


def _entry_parts(entry: StoredEntry, out: list[bytes]) -> None:
    out.append(b'{"offset":%d,"value":' % entry.offset)
    out.append(entry.value_json)
    out.append(b',"key":')
    out.append(key_json(entry.key))
    out.append(
        b',"timestamp":%d,"index":%d,"term":%d}' % (entry.timestamp_ms, entry.index, entry.term)
    )


def entry_bytes(entry: StoredEntry) -> bytes:
    """One entry as the API shows it, built without parsing ``value_json``."""
    parts: list[bytes] = []
    _entry_parts(entry, parts)
    return b"".join(parts)


def entries_page_bytes(entries: list[StoredEntry], next_offset: int) -> bytes:
    """``{"entries": [...], "next_offset": K}`` built without parsing any value."""
    parts: list[bytes] = [b'{"entries":[']
    for i, entry in enumerate(entries):
        if i:
            parts.append(b",")
        _entry_parts(entry, parts)
    parts.append(b'],"next_offset":%d}' % next_offset)
    return b"".join(parts)


def log_dict(info: LogInfo) -> dict[str, Any]:
    return {
        "log": info.log,
        "first_offset": info.first_offset,
        "next_offset": info.next_offset,
        "count": info.count,
        "bytes": info.bytes,
    }
