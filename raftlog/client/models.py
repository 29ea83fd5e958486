"""Typed results of the raftlog Python client (see ``raftlog.client``).

Every result is a frozen dataclass built from a response body of the v1 contract. Results
that come straight from a response also carry ``meta``: the ``X-Raftlog-*`` headers of the
node that answered (``ResponseMeta``), kept out of equality and ``repr``.

The ``from_body`` constructors raise ``ValueError`` on a body that does not match the
contract; the client turns that into ``UnexpectedResponse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Accepted",
    "Ack",
    "AppendResult",
    "ClusterNodeStatus",
    "ClusterStatus",
    "Consistency",
    "EntriesPage",
    "Entry",
    "LogInfo",
    "LogsPage",
    "ResponseMeta",
]

Ack = Literal["quorum", "all", "leader"]
Consistency = Literal["quorum", "leader", "any"]

# -- field readers (strict: a bool is not an int, a missing field is an error) ------------


def _obj(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def _int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {name!r}: expected an integer, got {value!r}")
    return value


def _opt_int(body: Mapping[str, Any], name: str) -> int | None:
    return None if body.get(name) is None else _int(body, name)


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"field {name!r}: expected a string, got {value!r}")
    return value


def _opt_str(body: Mapping[str, Any], name: str) -> str | None:
    return None if body.get(name) is None else _str(body, name)


def _opt_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"field {name!r}: expected a boolean, got {value!r}")
    return value


def _list(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise ValueError(f"field {name!r}: expected a list, got {value!r}")
    return value


def _header_int(headers: Mapping[str, str], name: str) -> int:
    try:
        return int(headers.get(name, ""))
    except ValueError:
        return -1


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseMeta:
    """The ``X-Raftlog-*`` headers of the node that answered.

    Text headers that are absent or empty read as ``None``; integer headers that are absent
    or malformed read as ``-1`` (the contract sends all of them on every ``/v1`` response).
    With forwarding, they describe the node whose answer was relayed (often the leader).
    """

    node: str | None = None
    cluster_id: str | None = None
    term: int = -1
    applied_index: int = -1
    leader: str | None = None
    last_contact_ms: int = -1

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ResponseMeta:
        """Parse from a case-insensitive mapping (``httpx.Headers``)."""
        return cls(
            node=headers.get("x-raftlog-node") or None,
            cluster_id=headers.get("x-raftlog-cluster") or None,
            term=_header_int(headers, "x-raftlog-term"),
            applied_index=_header_int(headers, "x-raftlog-applied-index"),
            leader=headers.get("x-raftlog-leader") or None,
            last_contact_ms=_header_int(headers, "x-raftlog-last-contact-ms"),
        )


NO_META = ResponseMeta()


@dataclass(frozen=True)
class Entry:
    """One entry of a log. ``meta`` is set on the result of ``get`` only."""

    offset: int
    value: Any
    key: str | None
    timestamp: int
    index: int
    term: int
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> Entry:
        b = _obj(body, "entry")
        if "value" not in b:
            raise ValueError("entry: field 'value' is missing")
        return cls(
            offset=_int(b, "offset"),
            value=b["value"],
            key=_opt_str(b, "key"),
            timestamp=_int(b, "timestamp"),
            index=_int(b, "index"),
            term=_int(b, "term"),
            meta=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """The entry as the API shows it."""
        return {
            "offset": self.offset,
            "value": self.value,
            "key": self.key,
            "timestamp": self.timestamp,
            "index": self.index,
            "term": self.term,
        }


@dataclass(frozen=True)
class AppendResult:
    """201: committed by a majority (and, with ``ack=all``, replicated everywhere).

    ``offset`` is the first offset appended, ``last_offset`` the last; pass ``index`` as
    ``min_index`` to read your writes. ``node`` is the answering node (``X-Raftlog-Node``).
    """

    log: str
    offset: int
    last_offset: int
    count: int
    index: int
    term: int
    node: str | None = None
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> AppendResult:
        b = _obj(body, "append result")
        return cls(
            log=_str(b, "log"),
            offset=_int(b, "offset"),
            last_offset=_int(b, "last_offset"),
            count=_int(b, "count"),
            index=_int(b, "index"),
            term=_int(b, "term"),
            node=meta.node,
            meta=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "offset": self.offset,
            "last_offset": self.last_offset,
            "count": self.count,
            "index": self.index,
            "term": self.term,
        }


@dataclass(frozen=True)
class Accepted:
    """202 (``ack=leader``): accepted by the leader before commit; it can still be lost.

    No offsets: they are assigned at commit.
    """

    log: str
    message: str = ""
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> Accepted:
        b = _obj(body, "accepted")
        if b.get("accepted") is not True:
            raise ValueError("accepted: field 'accepted' is not true")
        return cls(log=_str(b, "log"), message=_opt_str(b, "message") or "", meta=meta)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"log": self.log, "accepted": True}
        if self.message:
            out["message"] = self.message
        return out


@dataclass(frozen=True)
class EntriesPage:
    """A range of entries; ``next_offset`` is the ``start`` of the next page."""

    entries: tuple[Entry, ...]
    next_offset: int
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> EntriesPage:
        b = _obj(body, "entries page")
        entries = tuple(Entry.from_body(e) for e in _list(b, "entries"))
        return cls(entries=entries, next_offset=_int(b, "next_offset"), meta=meta)


@dataclass(frozen=True)
class LogInfo:
    """Metadata of one log."""

    log: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> LogInfo:
        b = _obj(body, "log")
        return cls(
            log=_str(b, "log"),
            first_offset=_int(b, "first_offset"),
            next_offset=_int(b, "next_offset"),
            count=_int(b, "count"),
            bytes=_int(b, "bytes"),
            meta=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "first_offset": self.first_offset,
            "next_offset": self.next_offset,
            "count": self.count,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class LogsPage:
    """One page of logs in name order; pass ``next_after`` as ``after`` (None: last page)."""

    logs: tuple[LogInfo, ...]
    next_after: str | None
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> LogsPage:
        b = _obj(body, "logs page")
        logs = tuple(LogInfo.from_body(item) for item in _list(b, "logs"))
        return cls(logs=logs, next_after=_opt_str(b, "next_after"), meta=meta)


@dataclass(frozen=True)
class ClusterNodeStatus:
    """One member as the leader sees it; figures are ``None`` when unknown."""

    id: str
    raft: str
    http: str
    role: str
    applied_index: int | None
    match_index: int | None
    lag: int | None
    last_contact_ms: int | None
    reachable: bool | None

    @classmethod
    def from_body(cls, body: Any) -> ClusterNodeStatus:
        b = _obj(body, "cluster node")
        return cls(
            id=_str(b, "id"),
            raft=_str(b, "raft"),
            http=_str(b, "http"),
            role=_opt_str(b, "role") or "unknown",
            applied_index=_opt_int(b, "applied_index"),
            match_index=_opt_int(b, "match_index"),
            lag=_opt_int(b, "lag"),
            last_contact_ms=_opt_int(b, "last_contact_ms"),
            reachable=_opt_bool(b, "reachable"),
        )


@dataclass(frozen=True)
class ClusterStatus:
    """``GET /v1/cluster``. ``raw`` is the body as received (for ``--json`` output)."""

    cluster: str
    cluster_id: str | None
    leader: str | None
    term: int
    commit_index: int
    nodes: tuple[ClusterNodeStatus, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    meta: ResponseMeta = field(default=NO_META, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: Any, meta: ResponseMeta = NO_META) -> ClusterStatus:
        b = _obj(body, "cluster")
        return cls(
            cluster=_str(b, "cluster"),
            cluster_id=_opt_str(b, "cluster_id"),
            leader=_opt_str(b, "leader") or None,
            term=_int(b, "term"),
            commit_index=_int(b, "commit_index"),
            nodes=tuple(ClusterNodeStatus.from_body(n) for n in _list(b, "nodes")),
            raw=dict(b),
            meta=meta,
        )

    def node(self, node_id: str) -> ClusterNodeStatus | None:
        """The member with this id, if any."""
        return next((n for n in self.nodes if n.id == node_id), None)
