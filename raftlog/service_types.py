"""The seam between ``api/`` and the service: request/response types and the protocol.

``api/`` depends only on this module, ``raftlog.errors`` and ``raftlog.state_types``;
``raftlog.service.LogService`` implements it on a RaftNode, and
``raftlog.fake_service.FakeLogService`` implements it in memory for API tests.

Every method may raise the errors of ``raftlog.errors``; each error's ``code`` is the
contract's error code. All methods run on the event loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from raftlog.state_types import Entry, LogInfo

Ack = Literal["leader", "quorum", "all"]
Consistency = Literal["quorum", "leader", "any"]
ACK_LEVELS: tuple[Ack, ...] = ("leader", "quorum", "all")
CONSISTENCY_LEVELS: tuple[Consistency, ...] = ("quorum", "leader", "any")


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits the API enforces before anything reaches the service."""

    max_entry_bytes: int = 1 << 20
    max_batch_entries: int = 10_000
    max_batch_bytes: int = 8 << 20
    max_request_bytes: int = 16 << 20
    max_key_bytes: int = 1024
    max_range_limit: int = 10_000
    max_wait_s: float = 60.0


@dataclass(frozen=True, slots=True)
class NewEntry:
    value_json: bytes  # compact UTF-8 JSON of the value, already validated
    key: str | None = None


@dataclass(frozen=True, slots=True)
class AppendRequest:
    log: str
    entries: tuple[NewEntry, ...]
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
    ) -> EntryRange: ...

    async def list_logs(self, after: str | None, limit: int, options: ReadOptions) -> LogPage: ...

    async def get_log(self, log: str, options: ReadOptions) -> LogInfo: ...

    async def cluster(self, forwarded: bool = False) -> ClusterView:
        """The leader's view; ``forwarded`` (header X-Raftlog-No-Forward): this node's own."""
        ...

    def live(self) -> bool: ...

    def ready(self) -> tuple[bool, str]:
        """(ready, reason): ready once a leader is known and the commit index learned at
        start has been applied."""
        ...
