"""The node port: everything ``LogService`` needs from the node it drives, and no more.

``raftlog.raft.node.RaftNode`` satisfies ``NodePort`` structurally (mypy checks it where
``raftlog.cli.serve`` hands a RaftNode to LogService); ``raftlog.service.memory_node``
is its in-process twin for testing the service's rules without processes. Nothing here
imports ``raftlog.raft``.

Threads: every method is called on the service's event loop thread. Apart from the
coroutines (which wait), none may block: they read the node's current view, which may
lag the cluster by a tick. ``add_apply_listener`` callbacks run on the node's apply
thread (RaftNode: the tick thread) and must hand any asyncio work over with
``loop.call_soon_threadsafe``.

Failures, as the caller (the service) must read them:

- ``raftlog.errors.DefinitelyNotApplied`` subclasses (``NoLeader``, ``NoQuorum``,
  ``Overloaded``, ``NodeStopped``): the command never reached the replicated log.
- ``raftlog.errors.OutcomeUnknown``: it reached Raft and may still commit (or already
  has): only an idempotent retry is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from raftlog.commands import Command
from raftlog.state.types import ApplyResult, ClusterMeta, Entry, LogInfo

__all__ = ["ApplyListener", "NodePort", "NodeStatusView", "PeerStatusView", "StateReader"]

ApplyListener = Callable[[int, ApplyResult], None]
"""``listener(index, result)`` after each apply; on the apply thread; must not block."""


class StateReader(Protocol):
    """Read access to the applied state (``raftlog.state.machine.StateMachine``).

    Reads see applied entries only and never block on Raft; each call is its own
    consistent snapshot. May raise ``raftlog.errors.CorruptStorage`` when a record fails
    its checksum (the service then fail-stops the node and answers NodeStopped).
    """

    def get_entry(self, log: str, offset: int) -> Entry | None: ...

    def read_range(self, log: str, start: int, limit: int) -> list[Entry]: ...

    def log_info(self, log: str) -> LogInfo | None: ...

    def entry_with_info(self, log: str, offset: int) -> tuple[LogInfo | None, Entry | None]:
        """The log's info and the entry at ``offset`` (None outside the log's offsets),
        from one read transaction."""
        ...

    def list_logs(self, after: str | None, limit: int) -> list[LogInfo]: ...

    def cluster_meta(self) -> ClusterMeta: ...


class PeerStatusView(Protocol):
    """One other member as this node sees it (``raftlog.raft.status.PeerStatus``)."""

    @property
    def id(self) -> str: ...

    @property
    def raft(self) -> str: ...

    @property
    def http(self) -> str: ...

    @property
    def match_index(self) -> int | None:
        """The leader's view only; None elsewhere."""
        ...

    @property
    def lag(self) -> int | None:
        """Entries behind the leader's last log index (the leader's view)."""
        ...

    @property
    def last_contact_ms(self) -> int | None: ...

    @property
    def connected(self) -> bool: ...


class NodeStatusView(Protocol):
    """This node's status as ``GET /v1/cluster`` shows it (``raftlog.raft.status.NodeStatus``)."""

    @property
    def role(self) -> str:
        """leader | follower | candidate | unknown"""
        ...

    @property
    def leader_id(self) -> str | None: ...

    @property
    def cluster_id(self) -> str | None: ...

    @property
    def term(self) -> int: ...

    @property
    def commit_index(self) -> int: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def last_log_index(self) -> int: ...

    @property
    def last_leader_contact_ms(self) -> int | None:
        """0 on the leader; None when it never heard from one."""
        ...

    @property
    def peers(self) -> Sequence[PeerStatusView]: ...


class NodePort(Protocol):
    """A cluster member as the service drives it."""

    # -- facts (read on the loop thread; may lag a tick) ----------------------------------

    @property
    def cluster_id(self) -> str | None:
        """The cluster's UUID once applied; None before."""
        ...

    @property
    def applied_index(self) -> int:
        """The last Raft index this node applied (no-ops included)."""
        ...

    @property
    def failed(self) -> str | None:
        """Why the node fail-stopped (``"<type>: <message>"``); None while it runs."""
        ...

    @property
    def state(self) -> StateReader:
        """The applied state, read directly (reads never go through Raft)."""
        ...

    def is_leader(self) -> bool: ...

    def leader_id(self) -> str | None:
        """The leader's node id as this node knows it; None when none is known."""
        ...

    def term(self) -> int: ...

    def leader_contact_ms(self) -> int | None:
        """ms since this node last heard from a leader; 0 on the leader; None if never."""
        ...

    def leader_connected(self) -> bool:
        """A leader is known and this node has a live connection to it (or is it)."""
        ...

    def lease_holds(self, lease_ms: int) -> bool:
        """This node leads and a majority accepted an append it sent less than
        ``lease_ms`` ago, so no other leader can exist yet."""
        ...

    def leader_noop_index(self) -> int | None:
        """Index of this leader's no-op of its current term; None when not leading or not
        yet finished becoming leader. Once applied, every entry committed before the
        term is applied here."""
        ...

    def known_lag(self) -> int | None:
        """Entries this node knows it is behind the leader's commit index; None if unknown."""
        ...

    def is_ready(self) -> tuple[bool, str]:
        """(ready, reason): a leader is known and the commit index learned at start is
        applied."""
        ...

    def match_indexes(self) -> dict[str, int]:
        """Leader only (``{}`` elsewhere): node id -> match index of each peer."""
        ...

    def status(self) -> NodeStatusView:
        """An operator's view (figures may lag a tick). Raises NodeStopped before start."""
        ...

    # -- commands -------------------------------------------------------------------------

    async def propose(self, command: Command, timeout: float = 10.0) -> ApplyResult:
        """Replicate ``command`` and return its result as applied on *this* node.

        Raises a DefinitelyNotApplied subclass when nothing reached Raft (NodeStopped,
        Overloaded, NoLeader, NoQuorum), OutcomeUnknown once it may have (including no
        outcome within ``timeout``)."""
        ...

    def propose_nowait(self, command: Command) -> None:
        """Hand ``command`` to Raft without waiting (``ack=leader``). Raises the same
        definite errors as ``propose`` before anything is queued; never blocks."""
        ...

    async def barrier(self, timeout: float = 10.0) -> int:
        """Commit a no-op through the log and return its index: a linearizable read point.
        Errors as ``propose``."""
        ...

    async def read_index(self, timeout: float = 10.0) -> int:
        """Leader only: a linearizable read point confirmed by one round of appends to
        a majority, writing nothing (ReadIndex). Raises NoLeader when this node does not
        lead, NoQuorum when no majority confirmed it in time or it is still becoming
        leader, NodeStopped when it stops."""
        ...

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until this node applied ``index``; False on timeout. Raises NodeStopped
        if the node fail-stops meanwhile."""
        ...

    def add_apply_listener(self, listener: ApplyListener) -> None:
        """Call ``listener`` after every apply (see ``ApplyListener``)."""
        ...

    def fail_stop(self, exc: BaseException) -> None:
        """Stop for good because of ``exc`` (the caller found damaged data). Idempotent,
        any thread; waiting proposals end OutcomeUnknown, waiters NodeStopped."""
        ...
