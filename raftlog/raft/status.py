"""Plain status records of a node (no PySyncObj types leak out of ``raftlog.raft``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from raftlog.raft.roles import ROLE_NAMES

__all__ = ["NodeStatus", "PeerStatus", "role_name"]


def role_name(state: int) -> str:
    return ROLE_NAMES.get(state, "unknown")


@dataclass(frozen=True, slots=True)
class PeerStatus:
    id: str
    raft: str
    http: str
    match_index: int | None  # leader's view only; None elsewhere
    lag: int | None  # entries behind the leader's last log index (leader's view)
    last_contact_ms: int | None  # since the last message from this peer
    connected: bool
    refused_cluster: str | None = None  # set when the peer reported another cluster id


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: str
    cluster_name: str
    cluster_id: str | None
    role: str
    leader_id: str | None
    term: int
    commit_index: int
    applied_index: int
    last_log_index: int
    last_leader_contact_ms: int | None  # 0 on the leader
    peers: tuple[PeerStatus, ...]
    journal_fsyncs: int
    journal_entries_added: int
    snapshots_taken: int
    snapshots_installed: int
    failed: str | None
    # "voter", or why a node that started on an empty data dir does not vote yet.
    voting: str = "voter"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
