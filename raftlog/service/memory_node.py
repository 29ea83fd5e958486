"""MemoryNode: an in-process twin of RaftNode behind ``NodePort``, for the service's rules.

One process, one thread (the test's event loop), no sockets, no timers. The replicated
log is a list; a proposal that is accepted commits at once (the "cluster" always has a
majority unless told otherwise) and is applied, in index order, to a real
``raftlog.state.machine.StateMachine`` on disk, so the service reads exactly what a
node's state would hold. Applying can be held back (``hold_apply``): commits then
advance while this node's applied index stays behind, the view of a lagging follower,
until ``step()`` applies more. Every call returns without sleeping; the only waits
(``wait_applied``, a proposal waiting for its own apply) end when ``step()`` applies
the index, on fail-stop, or at their timeout.

Injectable failures (plain attributes; set them between calls) and what they mean to
the service, mirroring what RaftNode reports for the same situation:

=====================  ==================================================================
``leader = None``      no leader known: proposals raise NoLeader (definitely not applied)
``leader = "n2"``      a follower that knows the leader: ``is_leader()`` False; proposals
                       still commit (RaftNode forwards them over Raft)
``connected = False``  the known leader is unreachable: ``leader_connected()`` False;
                       proposals (barriers too) raise OutcomeUnknown and never commit
                       (RaftNode: handed to Raft, no outcome within the timeout)
``quorum = False``     the leader has no majority: proposals raise NoQuorum (definite);
                       on a follower, OutcomeUnknown (as after a proposal timeout)
``overloaded = True``  the proposal queue is full: Overloaded (definitely not applied)
``outcome_unknown``    ``"lost"``: the proposal raises OutcomeUnknown and never commits;
                       ``"committed"``: it raises OutcomeUnknown but commits (and
                       applies) all the same: the two fates a client cannot tell apart
``lease = False``      the leader's lease lapsed: ``lease_holds()`` False
``noop_index``         this leader's no-op of its term; None while still becoming leader
``hold_apply = True``  commits advance, this node applies only on ``step()``
``contact_ms``         ms since a follower heard from the leader (None: never)
``lag_known = False``  the follower does not know the leader's commit index
``behind``             peers whose match index stops advancing (``ack=all`` waits)
``proposals``          (read) every command that reached Raft, in order
``read_indexes``       (read) how many quorum read points the leader confirmed
``fail_stop(exc)``     the node stops for good: NodeStopped, waiters fail, proposals
                       waiting for their apply end OutcomeUnknown
=====================  ==================================================================

Not thread-safe: call everything from one thread (the service's loop thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from raftlog.commands import Barrier, Command, decode, encode
from raftlog.config import Config
from raftlog.errors import NodeStopped, NoLeader, NoQuorum, OutcomeUnknown, Overloaded
from raftlog.service.node_port import ApplyListener, NodePort
from raftlog.state.machine import StateMachine
from raftlog.state.types import ApplyResult

__all__ = ["MemoryNode", "MemoryPeerStatus", "MemoryStatus"]


@dataclass(frozen=True, slots=True)
class MemoryPeerStatus:
    id: str
    raft: str
    http: str
    match_index: int | None
    lag: int | None
    last_contact_ms: int | None
    connected: bool


@dataclass(frozen=True, slots=True)
class MemoryStatus:
    role: str
    leader_id: str | None
    cluster_id: str | None
    term: int
    commit_index: int
    applied_index: int
    last_log_index: int
    last_leader_contact_ms: int | None
    peers: tuple[MemoryPeerStatus, ...]


class MemoryNode:
    """Satisfies ``raftlog.service.node_port.NodePort``. ``close()`` (or ``with``) at the end.

    ``config`` gives this node's id and its peers; the state lives in ``state_dir``
    (default ``config.data_dir / "memory-state"``). The node starts as leader of term 1
    with its no-op committed and applied at index 1 (``leader=""``, the default), unless
    ``leader`` names another member (a follower of term 1) or is None (no leader known).
    """

    def __init__(
        self,
        config: Config,
        *,
        leader: str | None = "",
        state_dir: Path | None = None,
        cluster_id: str | None = "00000000-0000-4000-8000-00000000c1d0",
    ) -> None:
        self.node_id = config.node_id
        self._config = config
        self._state = StateMachine(state_dir or config.data_dir / "memory-state", durability="os")
        self._cluster_id = cluster_id
        self._log: list[tuple[int, bytes | None]] = []  # (term, command); None: a no-op
        self._commit = 0
        self._applied = 0
        self._results: dict[int, ApplyResult] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._listeners: list[ApplyListener] = []
        self._term = 0
        self.failed: str | None = None
        # Every command handed to Raft (past the definite refusals), in order: what the
        # coalescing tests count.
        self.proposals: list[Command] = []
        self.read_indexes = 0  # read_index calls: quorum reads served without a barrier
        # -- injectable failures (see the module docstring) ---------------------------------
        self.leader: str | None = None
        self.connected = True
        self.quorum = True
        self.overloaded = False
        self.outcome_unknown: Literal["lost", "committed"] | None = None
        self.lease = True
        self.noop_index: int | None = None
        self.hold_apply = False
        self.contact_ms: int | None = 0
        self.lag_known = True
        self.behind: set[str] = set()
        self._match = {p.id: 0 for p in config.peers}
        self.elect(self.node_id if leader == "" else leader)

    def close(self) -> None:
        self._state.close()

    def __enter__(self) -> MemoryNode:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- driving the twin ---------------------------------------------------------------------

    def elect(self, leader: str | None) -> None:
        """A new term with ``leader`` (None: no leader known). When this node is elected it
        commits its no-op (applied unless ``hold_apply``) and ``noop_index`` names it."""
        self._term += 1
        self.leader = leader
        self.noop_index = None
        self.contact_ms = None if leader is None else 0
        if leader == self.node_id:
            self.noop_index = self._append(None)

    def commit_elsewhere(self, command: Command) -> int:
        """Commit ``command`` as another member's proposal would (this node applies it like
        any committed entry); returns its index."""
        return self._append(encode(command))

    def step(self, count: int | None = None) -> int:
        """Apply up to ``count`` committed entries (all when None), in index order, even
        while ``hold_apply``; returns the applied index."""
        target = self._commit if count is None else min(self._commit, self._applied + count)
        while self._applied < target and self.failed is None:
            index = self._applied + 1
            term, data = self._log[index - 1]
            if data is not None:
                result = self._state.apply(index, term, data)
                self._results[index] = result
            self._applied = index
            self._release()
            if data is not None:
                for listener in self._listeners:
                    listener(index, self._results[index])
        return self._applied

    @property
    def commit_index(self) -> int:
        return self._commit

    def committed_commands(self) -> list[Command]:
        """Every committed command in index order (the leaders' no-ops left out)."""
        return [decode(data)[1] for _, data in self._log[: self._commit] if data is not None]

    def _append(self, data: bytes | None) -> int:
        self._log.append((self._term, data))
        self._commit = len(self._log)
        for peer in self._match:
            if peer not in self.behind:
                self._match[peer] = self._commit
        if not self.hold_apply:
            self.step()
        return self._commit

    def _release(self) -> None:
        ready = [w for w in self._waiters if w[0] <= self._applied]
        self._waiters = [w for w in self._waiters if w[0] > self._applied]
        for _, future in ready:
            if not future.done():
                future.set_result(None)

    def _refuse(self) -> None:
        """The definite refusals, in RaftNode's order (nothing reached the log)."""
        if self.failed is not None:
            raise NodeStopped(f"node {self.node_id} is not running")
        if self.overloaded:
            raise Overloaded(f"the proposal queue of node {self.node_id} is full")
        if self.leader is None:
            raise NoLeader("no leader is known; the command was not proposed")
        if not self.quorum and self.is_leader():
            raise NoQuorum("this leader has not been confirmed by a majority; not proposed")

    def _submit(self, command: Command) -> int:
        """Past the refusals: the command reached Raft. Returns its index once committed;
        raises OutcomeUnknown for the injected unknown outcomes."""
        self.proposals.append(command)
        if not self.connected or not self.quorum:
            # Handed to a leader that cannot be reached or has no majority: it waits
            # there, as if its timeout had passed (without sleeping through it).
            raise OutcomeUnknown("no outcome within the timeout; the command may still commit")
        if self.outcome_unknown == "lost":
            raise OutcomeUnknown("the leader changed while the command was in flight")
        index = self._append(encode(command))
        if self.outcome_unknown == "committed":
            raise OutcomeUnknown("the command's outcome could not be tracked")
        return index

    # -- NodePort: facts ---------------------------------------------------------------------

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def state(self) -> StateMachine:
        return self._state

    def is_leader(self) -> bool:
        return self.failed is None and self.leader == self.node_id

    def leader_id(self) -> str | None:
        return self.leader

    def term(self) -> int:
        return self._term

    def leader_contact_ms(self) -> int | None:
        return 0 if self.is_leader() else self.contact_ms

    def leader_connected(self) -> bool:
        return self.leader is not None and self.connected

    def lease_holds(self, lease_ms: int) -> bool:
        # No clock here: ``lease`` stands for "a majority answered within lease_ms".
        return self.is_leader() and self.lease and self.quorum

    def leader_noop_index(self) -> int | None:
        return self.noop_index if self.is_leader() else None

    def known_lag(self) -> int | None:
        if not self.is_leader() and (not self.lag_known or not self.leader_connected()):
            return None
        return max(0, self._commit - self._applied)

    def is_ready(self) -> tuple[bool, str]:
        if self.failed is not None:
            return False, self.failed
        if self.leader is None:
            return False, "no leader is known"
        if self._applied < self._commit:
            return False, "still applying the log up to the commit index learned at start"
        return True, "ready"

    def match_indexes(self) -> dict[str, int]:
        return dict(self._match) if self.is_leader() else {}

    def status(self) -> MemoryStatus:
        leading = self.is_leader()
        peers: Sequence[MemoryPeerStatus] = [
            MemoryPeerStatus(
                id=p.id,
                raft=p.raft,
                http=p.http,
                match_index=self._match[p.id] if leading else None,
                lag=max(0, self._commit - self._match[p.id]) if leading else None,
                last_contact_ms=0 if p.id not in self.behind else None,
                connected=p.id not in self.behind,
            )
            for p in self._config.peers
        ]
        return MemoryStatus(
            role="leader" if leading else "follower",
            leader_id=self.leader,
            cluster_id=self._cluster_id,
            term=self._term,
            commit_index=self._commit,
            applied_index=self._applied,
            last_log_index=len(self._log),
            last_leader_contact_ms=self.leader_contact_ms(),
            peers=tuple(peers),
        )

    # -- NodePort: commands ------------------------------------------------------------------

    async def propose(self, command: Command, timeout: float = 10.0) -> ApplyResult:
        self._refuse()
        index = self._submit(command)
        try:
            applied = await self.wait_applied(index, timeout)
        except NodeStopped:
            raise OutcomeUnknown("the node fail-stopped while the command was in flight") from None
        if not applied:
            raise OutcomeUnknown(f"no outcome within {timeout:g} s; the command may still commit")
        return self._results[index]

    def propose_nowait(self, command: Command) -> None:
        self._refuse()
        with contextlib.suppress(OutcomeUnknown):  # nobody waits for an ack=leader outcome
            self._submit(command)

    async def barrier(self, timeout: float = 10.0) -> int:
        result = await self.propose(Barrier(nonce=random.getrandbits(63)), timeout)
        return int(result.index)

    async def read_index(self, timeout: float = 10.0) -> int:
        """As RaftNode: the commit index once a majority confirms this leader (at once
        here), NoQuorum when the twin has no majority or no no-op applied yet."""
        self.read_indexes += 1
        if self.failed is not None:
            raise NodeStopped("node stopped")
        if not self.is_leader():
            raise NoLeader("this node is not the leader")
        noop = self.leader_noop_index()
        if noop is None:
            raise NoQuorum("this node is still becoming leader; retry the read")
        if not self.quorum or not self.connected:
            raise NoQuorum("no majority confirmed this leader")
        return max(self._commit, noop)

    async def wait_applied(self, index: int, timeout: float) -> bool:
        if self._applied >= index:
            return True
        if self.failed is not None:
            raise NodeStopped("node stopped")  # RaftNode: never released, times out
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((index, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def add_apply_listener(self, listener: ApplyListener) -> None:
        self._listeners.append(listener)

    def fail_stop(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = f"{type(exc).__name__}: {exc}"
        waiters, self._waiters = self._waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_exception(NodeStopped("node stopped"))


if TYPE_CHECKING:

    def _satisfies_the_port(node: MemoryNode) -> NodePort:  # mypy: the twin fits the port
        return node
