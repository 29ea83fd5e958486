"""Value types of the state machine: what reads return and what apply returns.

All are frozen, slotted dataclasses, safe to share between threads. Apply results
round-trip through ``to_dict()`` / ``from_dict()`` (msgpack-friendly dicts carrying a
"type" tag): the state machine stores them by Raft index so a replayed entry returns
exactly the result it first produced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "Appended",
    "ApplyResult",
    "BarrierDone",
    "ClusterMeta",
    "ClusterMetaSet",
    "Entry",
    "GroupApplied",
    "LogDeleted",
    "LogInfo",
    "MemberResult",
    "Rejected",
    "Trimmed",
    "result_from_dict",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry. ``index``/``term`` are the Raft position of the append."""

    offset: int
    value_json: bytes
    key: str | None
    timestamp_ms: int
    index: int
    term: int

    def to_json_dict(self) -> dict[str, Any]:
        """The entry as the API shows it; parses ``value_json`` (raises ValueError if bad)."""
        return {
            "offset": self.offset,
            "value": json.loads(self.value_json),
            "key": self.key,
            "timestamp": self.timestamp_ms,
            "index": self.index,
            "term": self.term,
        }


@dataclass(frozen=True, slots=True)
class LogInfo:
    """Per-log metadata. Entries live at offsets first_offset..next_offset-1."""

    log: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    last_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class ClusterMeta:
    """The replicated cluster identity and the newest command version enabled."""

    cluster_id: str | None
    name: str | None
    enabled_version: int


# --- apply results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Appended:
    """Entries got offsets ``offset``..``last_offset``, all stamped ``timestamp_ms``."""

    log: str
    offset: int
    last_offset: int
    count: int
    index: int
    term: int
    timestamp_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "appended",
            "log": self.log,
            "offset": self.offset,
            "last_offset": self.last_offset,
            "count": self.count,
            "index": self.index,
            "term": self.term,
            "timestamp_ms": self.timestamp_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Appended:
        return cls(
            d["log"],
            d["offset"],
            d["last_offset"],
            d["count"],
            d["index"],
            d["term"],
            d["timestamp_ms"],
        )


@dataclass(frozen=True, slots=True)
class Trimmed:
    """The log's metadata after the trim."""

    log: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "trimmed",
            "log": self.log,
            "first_offset": self.first_offset,
            "next_offset": self.next_offset,
            "count": self.count,
            "bytes": self.bytes,
            "index": self.index,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trimmed:
        return cls(
            d["log"], d["first_offset"], d["next_offset"], d["count"], d["bytes"], d["index"]
        )


@dataclass(frozen=True, slots=True)
class LogDeleted:
    log: str
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": "log_deleted", "log": self.log, "index": self.index}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogDeleted:
        return cls(d["log"], d["index"])


@dataclass(frozen=True, slots=True)
class BarrierDone:
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": "barrier_done", "index": self.index}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BarrierDone:
        return cls(d["index"])


@dataclass(frozen=True, slots=True)
class ClusterMetaSet:
    """The cluster meta after the command."""

    cluster_id: str | None
    name: str | None
    enabled_version: int
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "cluster_meta_set",
            "cluster_id": self.cluster_id,
            "name": self.name,
            "enabled_version": self.enabled_version,
            "index": self.index,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClusterMetaSet:
        return cls(d["cluster_id"], d["name"], d["enabled_version"], d["index"])


@dataclass(frozen=True, slots=True)
class Rejected:
    """A deterministic refusal: every replica records the same one at the same index.

    Codes: invalid_command, offset_mismatch, version_not_enabled, invalid_request,
    cluster_id_already_set, log_not_found; and "replayed" (never stored: returned for a
    replayed index whose result fell out of the results window).
    """

    code: str
    message: str
    details: dict[str, Any]
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "rejected",
            "code": self.code,
            "message": self.message,
            "details": dict(self.details),
            "index": self.index,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rejected:
        return cls(d["code"], d["message"], dict(d["details"]), d["index"])


MemberResult: TypeAlias = Appended | Rejected  # what one member of an AppendGroup gets


@dataclass(frozen=True, slots=True)
class GroupApplied:
    """The result of an AppendGroup at (``index``, ``term``): one result per member, in
    member order (``Appended``, or its own ``Rejected`` such as ``offset_mismatch``)."""

    results: tuple[MemberResult, ...]
    index: int
    term: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "group_applied",
            "results": [r.to_dict() for r in self.results],
            "index": self.index,
            "term": self.term,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupApplied:
        results: list[MemberResult] = []
        for item in d["results"]:
            member = result_from_dict(item)
            if not isinstance(member, Appended | Rejected):
                raise ValueError(f"a group member cannot have a {type(member).__name__} result")
            results.append(member)
        return cls(tuple(results), d["index"], d["term"])


ApplyResult: TypeAlias = (
    Appended | Trimmed | LogDeleted | BarrierDone | ClusterMetaSet | Rejected | GroupApplied
)

_RESULT_TYPES: dict[str, type[ApplyResult]] = {
    "group_applied": GroupApplied,
    "appended": Appended,
    "trimmed": Trimmed,
    "log_deleted": LogDeleted,
    "barrier_done": BarrierDone,
    "cluster_meta_set": ClusterMetaSet,
    "rejected": Rejected,
}


def result_from_dict(d: Mapping[str, Any]) -> ApplyResult:
    """Rebuild a result from ``to_dict()`` output. Raises ValueError/KeyError if malformed."""
    tag = d.get("type")
    cls = _RESULT_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ValueError(f"unknown result type {tag!r}")
    return cls.from_dict(d)
