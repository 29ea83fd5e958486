"""The seam between ``api/`` and the service: request/response types and the protocol.

``api/`` depends only on this module, ``raftlog.errors`` and ``raftlog.state.types``;
``raftlog.service.log_service.LogService`` implements it on a node
(``raftlog.service.node_port.NodePort``), and
``raftlog.service.fake.FakeLogService`` implements it in memory for API tests.

Every method may raise the errors of ``raftlog.errors``; each error's ``code`` is the
contract's error code. All methods run on the event loop thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from raftlog.bulk import Columns
from raftlog.commands import MAX_KEY_BYTES, ONE_ENTRY_PAGE_OVERHEAD_BYTES
from raftlog.state.types import Entry, LogInfo

__all__ = [
    "ACK_LEVELS",
    "CONSISTENCY_LEVELS",
    "MAX_KEY_BYTES",
    "ONE_ENTRY_PAGE_OVERHEAD_BYTES",
    "Accepted",
    "Ack",
    "AppendRequest",
    "AppendResult",
    "ClusterNode",
    "ClusterView",
    "Consistency",
    "EntryRange",
    "Limits",
    "LogPage",
    "LogServiceProtocol",
    "NewEntry",
    "NodeHeaders",
    "PageBudget",
    "ReadOptions",
    "entry_wire_size",
    "key_json",
    "page_wire_size",
]

Ack = Literal["leader", "quorum", "all"]
Consistency = Literal["quorum", "leader", "any"]
ACK_LEVELS: tuple[Ack, ...] = ("leader", "quorum", "all")
CONSISTENCY_LEVELS: tuple[Consistency, ...] = ("quorum", "leader", "any")


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits the API enforces before anything reaches the service, and the
    response cap (``max_response_bytes``) the service applies to every range read."""

    max_entry_bytes: int = 1 << 20
    max_batch_entries: int = 10_000
    max_batch_bytes: int = 8 << 20
    max_request_bytes: int = 16 << 20
    max_response_bytes: int = 4 << 20
    max_key_bytes: int = MAX_KEY_BYTES
    max_range_limit: int = 10_000
    max_wait_s: float = 60.0


# -- the served encoding of entries and pages ----------------------------------------------
#
# An entry is served as exactly
#     {"offset":O,"value":V,"key":K,"timestamp":T,"index":I,"term":R}
# with V the stored ``value_json`` verbatim, K ``key_json(key)`` and the integers in
# decimal; a range page as exactly
#     {"entries":[E1,E2,...],"next_offset":N}
# ``api.schemas`` builds these bytes; the functions below count them without building
# them, so the service can cap a page by what it will weigh on the wire (a unit test
# checks that the two agree byte for byte).

_ENTRY_FIXED_BYTES = len(b'{"offset":,"value":,"key":,"timestamp":,"index":,"term":}')
_PAGE_FIXED_BYTES = len(b'{"entries":[],"next_offset":}')


def key_json(key: str | None) -> bytes:
    """A key as served: ``null``, or a JSON string with ASCII escapes (never fails)."""
    return b"null" if key is None else json.dumps(key).encode("ascii")


def _digits(n: int) -> int:
    return len(str(n))


def entry_wire_size(entry: Entry) -> int:
    """Bytes of ``entry`` as served (``api.schemas.entry_bytes(entry)``)."""
    return (
        _ENTRY_FIXED_BYTES
        + _digits(entry.offset)
        + len(entry.value_json)
        + len(key_json(entry.key))
        + _digits(entry.timestamp_ms)
        + _digits(entry.index)
        + _digits(entry.term)
    )


def page_wire_size(entries: list[Entry], next_offset: int) -> int:
    """Bytes of the page ``{"entries": entries, "next_offset": next_offset}`` as served."""
    separators = max(0, len(entries) - 1)
    return (
        _PAGE_FIXED_BYTES
        + sum(entry_wire_size(e) for e in entries)
        + separators
        + _digits(next_offset)
    )


# ONE_ENTRY_PAGE_OVERHEAD_BYTES (raftlog.commands) bounds what a page of one entry adds.


class PageBudget:
    """Admits the entries of one range page while the served page stays within
    ``max_bytes``; the first entry is always admitted, so the cap never makes a page
    empty. Offer entries in offset order; once ``admit`` says False, stop (the page
    ends before that entry and ``next_offset`` is its offset)."""

    __slots__ = ("_entries_bytes", "count", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.count = 0
        self._entries_bytes = 0  # the admitted entries and the commas between them

    def admit(self, entry: Entry) -> bool:
        size = self._entries_bytes + (1 if self.count else 0) + entry_wire_size(entry)
        page = _PAGE_FIXED_BYTES + size + _digits(entry.offset + 1)
        if self.count and page > self.max_bytes:
            return False
        self._entries_bytes = size
        self.count += 1
        return True


@dataclass(frozen=True, slots=True)
class NewEntry:
    value_json: bytes  # compact UTF-8 JSON of the value, already validated
    key: str | None = None


@dataclass(frozen=True, slots=True)
class AppendRequest:
    log: str
    # A tuple, or the same held as columns (a batch parsed in bulk); they compare equal.
    entries: tuple[NewEntry, ...] | Columns[NewEntry]
    ack: Ack = "quorum"
    expected_offset: int | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class AppendResult:
    """201: committed by a majority and applied on the answering node."""

    log: str
    offset: int
    last_offset: int
    count: int
    index: int
    term: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "offset": self.offset,
            "last_offset": self.last_offset,
            "count": self.count,
            "index": self.index,
            "term": self.term,
        }


@dataclass(frozen=True, slots=True)
class Accepted:
    """202 (``ack=leader``): accepted by the leader for replication, not yet committed."""

    log: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "accepted": True,
            "message": "accepted by the leader before commit: it can be lost if the leader "
            "fails before replicating it; offsets are assigned at commit",
        }


@dataclass(frozen=True, slots=True)
class ReadOptions:
    consistency: Consistency = "quorum"
    min_index: int | None = None
    max_lag: int | None = None
    max_staleness_ms: int | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class EntryRange:
    """A range page: consecutive entries; ``next_offset`` is the offset after the last
    one (the start when none). A page may hold fewer than ``limit`` entries before the
    end of the log: the response cap (``Limits.max_response_bytes``) ended it."""

    entries: list[Entry]
    next_offset: int


@dataclass(frozen=True, slots=True)
class LogPage:
    logs: list[LogInfo]
    next_after: str | None


@dataclass(frozen=True, slots=True)
class NodeHeaders:
    """What every /v1 response says about the node that answered."""

    node_id: str
    cluster_id: str | None
    term: int
    applied_index: int
    leader_id: str | None
    last_contact_ms: int | None

    def as_headers(self) -> dict[str, str]:
        return {
            "X-Raftlog-Node": self.node_id,
            "X-Raftlog-Cluster": self.cluster_id or "",
            "X-Raftlog-Term": str(self.term),
            "X-Raftlog-Applied-Index": str(self.applied_index),
            "X-Raftlog-Leader": self.leader_id or "",
            "X-Raftlog-Last-Contact-Ms": ""
            if self.last_contact_ms is None
            else str(self.last_contact_ms),
        }


@dataclass(frozen=True, slots=True)
class ClusterNode:
    id: str
    raft: str
    http: str
    role: str  # leader | follower | candidate | unknown
    applied_index: int | None
    match_index: int | None
    lag: int | None
    last_contact_ms: int | None
    reachable: bool | None


@dataclass(frozen=True, slots=True)
class ClusterView:
    cluster: str
    cluster_id: str | None
    leader: str | None
    term: int
    commit_index: int
    nodes: list[ClusterNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class LogServiceProtocol(Protocol):
    """What the HTTP layer needs. Errors: raftlog.errors (see the contract's table)."""

    limits: Limits

    def headers(self) -> NodeHeaders: ...

    def is_leader(self) -> bool: ...

    def leader_url(self) -> str | None:
        """HTTP base URL of the leader as this node knows it (for 307 redirects)."""
        ...

    async def append(self, request: AppendRequest) -> AppendResult | Accepted: ...

    async def get_entry(self, log: str, offset: int, options: ReadOptions) -> Entry:
        """404 OffsetNotFound at or past the end; 410 Trimmed below the first offset."""
        ...

    async def read_range(
        self, log: str, start: int, limit: int, options: ReadOptions, wait_s: float = 0.0
    ) -> EntryRange:
        """At most ``limit`` consecutive entries from ``start`` whose served page is at most
        ``limits.max_response_bytes`` (always at least one entry when one exists at
        ``start``). ``wait_s``: if none exists yet, wait up to that long for one. 410
        Trimmed below the first offset."""
        ...

    async def list_logs(self, after: str | None, limit: int, options: ReadOptions) -> LogPage: ...

    async def get_log(self, log: str, options: ReadOptions) -> LogInfo: ...

    async def cluster(self, forwarded: bool = False) -> ClusterView:
        """This node's view (per-follower figures only when it leads). ``forwarded``: the
        request carried X-Raftlog-No-Forward. A follower's API relays the leader's view
        itself (``api.forward``) and asks here only when it must answer its own."""
        ...

    def live(self) -> bool: ...

    def ready(self) -> tuple[bool, str]:
        """(ready, reason): ready once a leader is known and the commit index learned at
        start has been applied."""
        ...
