"""RaftNode: one cluster member, bridged from PySyncObj's tick thread to asyncio.

The facade of ``raftlog.raft``: it owns the tick thread and wires the parts together.

Threads:
- the tick thread (owned here, ``autoTick=False``) runs PySyncObj (core.py), the
  journal, the transport and every ``StateMachine.apply``; it blocks only on this
  node's own storage (journal fsyncs, LMDB commits, snapshot files);
- callers (an asyncio loop, usually) call :meth:`RaftNode.propose`,
  :meth:`RaftNode.status`, :meth:`RaftNode.wait_applied` and the state machine's read
  methods; these never wait for the tick thread beyond short locks, except that
  ``propose`` awaits its outcome (up to its timeout).

Where the rest lives: proposals in flight, their outcomes and the applied-index
waiters in proposals.py; quorum reads confirmed without a log entry in read_index.py;
the cluster id and the ``rl_fresh`` announcement in
cluster_id.py; the per-node identity file in identity.py; role numbers in roles.py.
Every proposal, ``propose`` or ``propose_nowait``, passes one admission check
(:meth:`RaftNode._admit`) first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pysyncobj import SyncObjConf

from raftlog.commands import Barrier, Command, encode
from raftlog.config import Config, parse_address
from raftlog.errors import (
    ConfigError,
    CorruptStorage,
    FatalStorageError,
    NodeStopped,
    NoLeader,
    NoQuorum,
    UnsupportedFormat,
)
from raftlog.raft import clock
from raftlog.raft.cluster_id import ClusterIdentity
from raftlog.raft.compat import check_pysyncobj_version
from raftlog.raft.core import RaftCore
from raftlog.raft.guard import ElectionGuard
from raftlog.raft.identity import IDENTITY_FILE, IDENTITY_FORMAT, check_identity, mark_voter
from raftlog.raft.journal import DurableJournal, describe_os_error
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.proposals import Proposals
from raftlog.raft.read_index import PendingReads
from raftlog.raft.roles import LEADER
from raftlog.raft.snapshots import SnapshotWriter
from raftlog.raft.startup import (
    NO_JOURNAL,
    SnapshotEnds,
    check_rebuild_covered,
    check_stores_agree,
    read_snapshot_ends,
    rebuild_state,
)
from raftlog.raft.status import NodeStatus, PeerStatus, role_name
from raftlog.raft.storage import AppendFile, AtomicFile, OsAppendFile, OsAtomicFile
from raftlog.raft.transport import TransportHooks
from raftlog.raft.unsafe import UnsafeSwitches
from raftlog.raft.voting import VotingRights
from raftlog.state.machine import ApplyResult, StateMachine
from raftlog.state.marker import BootId, read_boot_id

__all__ = ["IDENTITY_FILE", "IDENTITY_FORMAT", "MAX_JOURNAL_BYTES", "TICK_WAIT_S", "RaftNode"]

log = logging.getLogger(__name__)
events = logging.getLogger("raftlog.events")

TICK_WAIT_S = 0.05
# Bounds of one LMDB write transaction of applied entries (state/machine.py): the batch
# also commits at the end of every apply run of a tick, so these bound long runs (a
# replay after a restart, a follower catching up) and what an apply run holds back.
APPLY_BATCH_ENTRIES = 1024
APPLY_BATCH_BYTES = 16 << 20
APPLY_BATCH_SECONDS = 0.05
# Force a snapshot once the journal file passes this size, whatever the entry count.
MAX_JOURNAL_BYTES = 512 << 20


class _FailStop(Exception):
    """Unwinds the tick thread out of PySyncObj after a fail-stop."""


class RaftNode:
    """A cluster member. ``start()`` then ``propose()``/``status()``; ``stop()`` at the end."""

    def __init__(
        self,
        config: Config,
        *,
        disk: LossyDisk | None = None,
        on_fatal: Callable[[str], None] | None = None,
        trace_send: Callable[[str, dict[str, Any]], None] | None = None,
        synchronous_snapshots: bool = False,
        unsafe: UnsafeSwitches | None = None,
        boot_id: BootId = read_boot_id,
    ) -> None:
        check_pysyncobj_version()
        # Reads the kernel's boot id: LMDB is trusted only within the boot that wrote
        # it (state/marker.py); tests inject other boots.
        self._boot_id = boot_id
        self._unsafe = unsafe or UnsafeSwitches()
        # A journal that lives in memory (the volatile negative control) is empty at every
        # start: comparing it with the state would refuse every restart.
        self._check_stores = disk is None or not disk.volatile
        self.config = config
        self._disk = disk
        self._on_fatal = on_fatal
        self._trace_send = trace_send
        self._synchronous_snapshots = synchronous_snapshots
        self._addr_to_id = {n.raft: n.id for n in config.nodes}
        self._stop = threading.Event()
        self._crash = False
        self._thread: threading.Thread | None = None
        self._core: RaftCore | None = None
        # Proposals in flight, their outcomes, the applied index and its waiters.
        self._proposals = Proposals(config.node_id, config.node.max_inflight_proposals)
        self._drain_started: float | None = None  # Raft clock; set by start_draining
        # (term, index) of this leadership's no-op, set on the tick thread once PySyncObj
        # appended it; None while not leading. Read from any thread by leader_noop_index.
        self._leader_noop: tuple[int, int] | None = None
        self._shipped_index = 0
        self._shipped_commit = 0
        # Check-quorum, vote refusal, PreVote and the lease (guard.py); Raft clock only.
        self.guard = ElectionGuard(
            election_timeout_min=config.node.election_timeout_min_ms / 1000,
            cluster_size=len(config.nodes),
            started_at=clock.now(),
        )
        self.failed: str | None = None
        self.state: StateMachine
        self.journal: DurableJournal
        self.snapshots: SnapshotWriter
        self._identity = ClusterIdentity(config.cluster_name)
        self._tick_calls: list[Callable[[], None]] = []
        self._tick_calls_lock = threading.Lock()
        self._apply_listeners: list[Callable[[int, ApplyResult], None]] = []
        # Quorum reads on the leader waiting for a round of appends to confirm it leads.
        self._reads = PendingReads()
        # Applied entries whose LMDB batch is not committed yet: (index, result), in
        # index order. Revealed (identity, applied index, waiters, held outcomes,
        # listeners) by _publish once committed. Tick thread only.
        self._unpublished: deque[tuple[int, ApplyResult]] = deque()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        data_dir = cfg.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        voter = check_identity(
            data_dir,
            cfg.node_id,
            cfg.cluster_name,
            new_voter=self._unsafe.vote_with_empty_data,
        )
        durable = cfg.node.durability == "fsync"
        self.state = StateMachine(
            data_dir / "state",
            durability=cfg.node.durability,
            map_size=cfg.node.map_size_bytes,
            max_map_size=cfg.node.max_state_bytes,
            batch_max_entries=APPLY_BATCH_ENTRIES,
            batch_max_bytes=APPLY_BATCH_BYTES,
            batch_max_age_s=APPLY_BATCH_SECONDS,
            boot_id=self._boot_id,
        )
        if self.state.discarded is not None:
            try:
                rebuild_state(self.state, data_dir / "raft.snapshot")
            except CorruptStorage as exc:
                self._fail_stop(exc)
                raise
        self._identity.reload(self.state)
        snapshot_ends = self._check_before_opening_the_journal(data_dir)
        if self._disk is not None:
            journal_file: AppendFile = self._disk.journal
            meta_file: AtomicFile = self._disk.meta
        else:
            path = data_dir / "raft.journal"
            try:
                journal_file = OsAppendFile(path, durable=durable)
            except OSError as exc:
                error = FatalStorageError(
                    f"raft journal: opening {path} failed: {describe_os_error(exc)}"
                )
                self._fail_stop(error)
                raise error from exc
            meta_file = OsAtomicFile(data_dir / "raft.meta", durable=durable)
        # Any storage error of the journal or raft.meta is a fail-stop (journal.py); so is
        # damage found while opening them (CorruptStorage, raised before any I/O error
        # path would call on_fatal): nothing starts, the files are left as found.
        try:
            self.journal = DurableJournal(
                journal_file,
                meta_file,
                on_fatal=self._fail_stop,
                unsafe_cut_at_first_bad_record=self._unsafe.torn_tail_any,
            )
        except CorruptStorage as exc:
            self._fail_stop(exc)
            raise
        # The journal drops a prefix only behind a snapshot, and only once LMDB is synced.
        self.journal.before_compaction = self.state.sync
        if self.state.discarded is not None and self._check_stores:
            try:
                check_rebuild_covered(self.journal, self.state.last_applied()[0], data_dir)
            except CorruptStorage as exc:
                self._fail_stop(exc)
                raise
        self.snapshots = SnapshotWriter(
            self.state,
            data_dir / "raft.snapshot",
            self._fail_stop,
            synchronous=self._synchronous_snapshots,
        )
        self.snapshots.remove_placeholder()
        if self._check_stores:
            try:
                check_stores_agree(
                    self.journal, self.state.last_applied(), snapshot_ends, where=data_dir
                )
            except CorruptStorage as exc:
                self._fail_stop(exc)
                raise
        self._check_bindable(cfg.raft_bind)
        self.voting = VotingRights(
            voter=voter,
            peers=frozenset(p.raft for p in cfg.peers),
            fresh=not voter
            and self._identity.id is None
            and self.state.last_applied()[0] == 0
            and all(entry[2] == 0 for entry in self.journal[:]),
        )
        if not voter:
            events.info(
                "node %s started on an empty data dir: it votes only once %s",
                cfg.node_id,
                "every member has started empty (a new cluster) or it has caught up "
                "with the leader (an existing cluster)",
            )
        self._hooks = TransportHooks(
            journal=self.journal,
            cluster_id=lambda: self._identity.id,
            on_send=self._trace_send,
            fresh=lambda: self._identity.announces_fresh(self.voting, self.journal),
        )
        self._core = RaftCore(
            cfg.self_node.raft,
            [p.raft for p in cfg.peers],
            self._syncobj_conf(),
            self._hooks,
            self._apply,
            self.guard,
            self._fail_stop,
            self.voting,
            self._on_voter,
            self._after_apply_run,
            self._may_compact,
        )
        self._core.addOnTickCallback(self._on_tick)
        self._thread = threading.Thread(target=self._run, name=f"raft-{cfg.node_id}", daemon=True)
        self._thread.start()
        events.info("node %s started (raft %s, data dir %s)", cfg.node_id, cfg.raft_bind, data_dir)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking, close sockets, make the journal durable, close LMDB (its open
        batch committed on the tick thread before it ends, then synced; after
        :meth:`crash`, neither)."""
        self._stop.set()
        if self._core is not None:
            self._core.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._proposals.fail_waiters()
        self._reads.fail_all(lambda: NodeStopped(f"node {self.config.node_id} stopped"))
        if hasattr(self, "state"):
            try:
                self.state.close(clean=not self._crash)
            except FatalStorageError as exc:
                # The final LMDB sync failed: the dirty marker stays (a state another boot
                # finds is rebuilt). A storage error like any other: fail-stop, no raise.
                self._fail_stop(exc)

    def crash(self) -> None:
        """Tests: stop as kill -9 would (no flush). The caller then simulates lost writes."""
        self._crash = True
        self.stop()

    def _run(self) -> None:
        core = self._core
        assert core is not None
        while not self._stop.is_set():
            try:
                core.doTick(TICK_WAIT_S)
            except _FailStop:
                break
            except FatalStorageError as exc:
                # The journal or raft.meta failed (the journal has already called
                # _fail_stop; this covers any other path). Never retried: see journal.py.
                self._fail_stop(exc)
                break
            except Exception:
                if self.failed:
                    break
                log.exception("raft tick failed; retrying")
                time.sleep(TICK_WAIT_S)
        try:
            if self._crash or self.failed:
                self.state.abort_batch()  # kill -9 keeps no uncommitted transaction
            else:
                self.state.commit()  # the batch belongs to this thread: commit it here
        except Exception:
            log.exception("error while committing the last applied entries")
        try:
            if self._crash:
                core.rl_destroy_transport_only()
            else:
                core._doDestroy()  # transport, then journal flush + close
        except Exception:
            log.exception("error while closing the raft node")
        finally:
            core.close_wake_pipe()

    def _syncobj_conf(self) -> SyncObjConf:
        s = self.config.node
        return SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=True,  # we ship new entries at the end of every tick
            appendEntriesPeriod=s.heartbeat_ms / 1000,
            raftMinTimeout=s.election_timeout_min_ms / 1000,
            raftMaxTimeout=s.election_timeout_max_ms / 1000,
            connectionTimeout=s.connection_timeout_ms / 1000,
            connectionRetryTime=s.connection_retry_ms / 1000,
            # Check-quorum (guard.py) steps down after election_timeout_min at the latest.
            leaderFallbackTimeout=min(s.leader_fallback_ms, s.election_timeout_min_ms) / 1000,
            commandsWaitLeader=False,
            commandsQueueSize=s.max_inflight_proposals,
            journalFile=self.journal,
            fullDumpFile=str(self.config.data_dir / "raft.snapshot"),
            serializer=self.snapshots.serialize,
            deserializer=self._deserialize,
            serializeChecker=self.snapshots.check,
            useFork=False,
            logCompactionMinEntries=s.snapshot_min_entries,
            logCompactionMinTime=s.snapshot_min_interval_s,
            logCompactionBatchSize=1 << 20,
            # Larger than any command we accept: PySyncObj's chunked path for big entries
            # mis-computes the last chunk (entries near 64 KiB multiples), so never use it.
            appendEntriesBatchSizeBytes=s.max_request_bytes + (1 << 20),
            bindAddress=self.config.raft_bind,
            password=s.cluster_secret,
            onStateChanged=self._on_state_changed,
            dynamicMembershipChange=False,
            bindRetryTime=0.1,
            maxBindRetries=50,
        )

    def _on_voter(self) -> None:
        """Tick thread: persist the voting right before acting on it (voting.py). A disk
        that refuses is a fail-stop, as for the journal."""
        cfg = self.config
        try:
            mark_voter(cfg.data_dir, cfg.node_id, cfg.cluster_name)
        except OSError as exc:
            error = FatalStorageError(f"{IDENTITY_FILE}: recording the vote right failed: {exc}")
            self._fail_stop(error)
            raise error from exc
        events.info("node %s now votes (%s)", cfg.node_id, self.voting.how)

    def _check_before_opening_the_journal(self, data_dir: Path) -> SnapshotEnds | None:
        """The state against the snapshot while the journal file is missing or empty:
        opening the journal would create it, and a refused start leaves files as found."""
        if not self._check_stores:
            return None
        try:
            ends = read_snapshot_ends(data_dir / "raft.snapshot")
            journal = data_dir / "raft.journal"
            if self._disk is None and (not journal.exists() or journal.stat().st_size == 0):
                check_stores_agree(NO_JOURNAL, self.state.last_applied(), ends, where=data_dir)
        except CorruptStorage as exc:
            self._fail_stop(exc)
            raise
        return ends

    @staticmethod
    def _check_bindable(address: str) -> None:
        host, port = parse_address(address, "raft_bind")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise ConfigError(f"cannot bind raft address {address}: {exc.strerror}") from None

    # -- tick thread ----------------------------------------------------------------------

    def _apply(self, index: int, data: bytes) -> ApplyResult:
        # Nothing is applied (and so acknowledged) before it is durable here: the
        # single-node case sends no message that would have flushed the journal.
        try:
            self.journal.flush()
        except FatalStorageError as exc:
            self._fail_stop(exc)
            raise _FailStop(str(exc)) from exc
        term = self.journal.term_at(index) or 0
        try:
            result = self.state.apply(index, term, data)
        except (FatalStorageError, UnsupportedFormat) as exc:
            self._fail_stop(exc)
            raise _FailStop(str(exc)) from exc
        # Revealed only once its LMDB batch commits: here when a bound made apply
        # commit (or it was a replay of a committed index), else at the run's end.
        self._unpublished.append((index, result))
        if self.state.last_applied()[0] >= index:
            self._publish()
        return result

    def _after_apply_run(self) -> None:
        """Tick thread, at the end of every PySyncObj apply run: commit the LMDB batch
        (unsynced), then reveal its entries."""
        if self.failed:
            return
        try:
            self.state.commit()
        except FatalStorageError as exc:
            self._fail_stop(exc)
            raise _FailStop(str(exc)) from exc
        self._publish()

    def _may_compact(self) -> bool:
        """Tick thread: may PySyncObj look at compaction now? Not while the serializer is
        idle and the state lags PySyncObj's applied index: the entries after the state's
        last are no-ops or membership entries (they never reach ``_apply``), a snapshot
        would have to claim them, and ``SnapshotWriter.serialize`` refuses that. Before
        this check the refusal wedged PySyncObj's serializer for good (no snapshot built
        or shipped again). The next command applied lifts it; nothing grows meanwhile."""
        core = self._core
        if core is None or not self.snapshots.idle():
            return True  # a running build's outcome must still be collected
        return self.state.last_applied()[0] >= int(core.raftLastApplied)

    def _publish(self) -> None:
        """Reveal every applied entry the LMDB state has committed, in index order: the
        cluster identity it may carry, the applied index (waiters and held proposal
        outcomes, proposals.py), then the apply listeners. Tick thread."""
        committed = self.state.last_applied()[0]
        queue = self._unpublished
        while queue and queue[0][0] <= committed:
            index, result = queue.popleft()
            self._identity.learn(result)
            if index > self._proposals.applied_index:
                self._proposals.advance(index)
            for listener in self._apply_listeners:
                listener(index, result)

    def _deserialize(self, file_name: str) -> Any:
        self._after_apply_run()  # what was applied is committed and revealed first
        data = self.snapshots.deserialize(file_name)
        self._identity.reload(self.state)
        if self._core is not None:
            # Installing a large snapshot blocks the tick thread; do not let that
            # pause count as a missed heartbeat.
            s = self.config.node
            self._core.rl_reset_election_deadline(s.election_timeout_min_ms / 1000)
        self._proposals.advance(self.state.last_applied()[0])
        return data

    def fail_stop(self, exc: BaseException) -> None:
        """Stop for good because of ``exc`` (a caller found this node's data damaged, e.g.
        a read whose record failed its checksum). Any thread; idempotent."""
        self._fail_stop(exc)

    def _fail_stop(self, exc: BaseException) -> None:
        """Stop for good after a node-local failure (storage, format). Idempotent.

        Any thread, usually the tick thread, possibly inside PySyncObj (the journal calls
        it at its first storage error) or during start(). The tick loop ends at its next
        check; callers waiting here learn at once that the node stopped, after the
        ``on_fatal`` callback has run (so whoever owns the node knows first).
        """
        self._stop.set()
        if self.failed is not None:
            return
        self.failed = f"{type(exc).__name__}: {exc}"
        log.critical("FAIL-STOP: %s; this node stops without applying further", self.failed)
        events.info("node %s fail-stop", self.config.node_id)
        hooks: TransportHooks | None = getattr(self, "_hooks", None)
        if hooks is not None:
            hooks.on_send = None
            hooks.halted = True  # a fail-stopped node sends nothing more
        if self._on_fatal is not None:
            self._on_fatal(self.failed)
        self._proposals.fail_waiters()
        self._proposals.fail_all(f"node {self.config.node_id} fail-stopped: {self.failed}")
        self._reads.fail_all(lambda: NodeStopped(f"node {self.config.node_id} fail-stopped"))

    def _on_tick(self) -> None:
        core = self._core
        if core is None or self.failed:
            return
        if self._tick_calls:
            with self._tick_calls_lock:
                calls, self._tick_calls = self._tick_calls, []
            for call in calls:
                call()
        # No-op and membership entries never reach _apply; count them as applied too.
        applied = int(core.raftLastApplied)
        if applied > self._proposals.applied_index:
            self._proposals.advance(applied)
        if core.rl_state() == LEADER:
            if self._leader_noop is None:
                # The tick that made us leader has finished: its no-op index is final.
                noop = core.rl_noop_index()
                if noop is not None:
                    self._leader_noop = (int(core.raftCurrentTerm), noop)
            if self.journal.last_index > self._shipped_index or (
                core.raftCommitIndex > self._shipped_commit
            ):
                # Group commit: one flush and one message per follower for everything
                # proposed this tick, and followers learn new commits without waiting
                # for the next heartbeat.
                core.rl_send_append_entries()
                # The entries left before this fsync (transport.py): it runs while the
                # followers write theirs, not before they receive them.
                self.journal.flush()
                self._shipped_index = self.journal.last_index
                self._shipped_commit = core.raftCommitIndex
            self._identity.maybe_create(core)
            if len(self._reads) and self._reads.settle(self.guard.confirmed_at(clock.now())):
                self._send_confirmation_round()
        if self.journal.size_bytes > MAX_JOURNAL_BYTES:
            core.forceLogCompaction()

    def _on_state_changed(self, old: int, new: int) -> None:
        self._leader_noop = None  # PySyncObj appends the new leader's no-op after this
        self._shipped_index = 0
        self._shipped_commit = 0
        if old == LEADER:
            self._reads.fail_all(
                lambda: NoQuorum("this node stopped leading before a majority confirmed the read")
            )
            # PySyncObj keeps a deposed leader's proposals waiting until their entries
            # are applied or replaced, which on a cut-off node is never: answer them now.
            self._proposals.fail_all("this node stopped leading while the command was in flight")
        core = self._core
        term = core.raftCurrentTerm if core is not None else 0
        events.info(
            "RAFT_EVENT %s",
            json.dumps(
                {
                    "node": self.config.node_id,
                    "role": role_name(new),
                    "from": role_name(old),
                    "term": term,
                    "wall_ms": int(time.time() * 1000),
                }
            ),
        )

    # -- callers' side ----------------------------------------------------------------------

    async def propose(self, command: Command | bytes, timeout: float = 10.0) -> ApplyResult:
        """Replicate a command; return its ApplyResult as applied on *this* node.

        Raises a DefinitelyNotApplied subclass when nothing reached Raft, or
        OutcomeUnknown when it did and the outcome is not known.
        """
        core = self._admit()
        data = command if isinstance(command, bytes) else encode(command)
        return await self._proposals.submit(core, data, timeout, lambda: self.failed is not None)

    def propose_nowait(self, command: Command) -> None:
        """Hand a command to Raft without waiting for its outcome (``ack=leader``).

        Raises the same definite errors as :meth:`propose` before queueing.
        """
        core = self._admit()
        self._proposals.submit_nowait(core, encode(command))

    def _admit(self) -> RaftCore:
        """The one admission check of :meth:`propose` and :meth:`propose_nowait`; any
        thread. Raises, in this order, a DefinitelyNotApplied error (nothing was queued):
        NodeStopped (not started, stopped or fail-stopped), Overloaded
        (``max_inflight_proposals`` awaited), NoLeader (no leader known), NoQuorum (a
        leader no majority confirmed lately), NoLeader (draining before a handover).
        Returns the core to propose to."""
        core = self._core
        if core is None or self.failed or self._stop.is_set():
            raise NodeStopped(f"node {self.config.node_id} is not running")
        self._proposals.check_capacity()
        self._refuse_without_leader(core)
        if self._hooks.draining:
            raise NoLeader("this node is handing over leadership; the command was not proposed")
        return core

    def _refuse_without_leader(self, core: RaftCore) -> None:
        """Raise a definite refusal when no proposal could commit now. Any thread."""
        if core.rl_leader_address() is None:
            # PySyncObj would drop it with MISSING_LEADER anyway; refuse before queueing.
            # A follower forgets a leader it has not heard from for an election timeout.
            raise NoLeader("no leader is known; the command was not proposed")
        if core.rl_state() == LEADER and not self.guard.check_quorum_ok(clock.now()):
            since = self.guard.quorum_contact_ms(clock.now())
            raise NoQuorum(
                "this leader has not been confirmed by a majority "
                + ("since it was elected" if since is None else f"for {since} ms")
                + "; the command was not proposed"
            )

    async def barrier(self, timeout: float = 10.0) -> int:
        """Commit a no-op through the log; returns its index (a linearizable read point)."""
        result = await self.propose(Barrier(nonce=random.getrandbits(63)), timeout)
        return int(result.index)

    async def read_index(self, timeout: float = 10.0) -> int:
        """Leader only: a linearizable read point without a log entry (ReadIndex,
        ``raftlog.raft.read_index``). Returns the index to wait for before reading
        locally. Raises NoLeader when this node does not lead (nothing was done), NoQuorum
        when it is still becoming leader, stops leading, or no majority confirmed it
        within ``timeout``, NodeStopped when it stops. Writes nothing."""
        core = self._core
        if core is None or self.failed or self._stop.is_set():
            raise NodeStopped(f"node {self.config.node_id} is not running")
        if not self.is_leader():
            raise NoLeader("this node is not the leader")
        noop = self.leader_noop_index()
        if noop is None:
            raise NoQuorum("this node is still becoming leader; retry the read")
        start = clock.now()
        index = max(int(core.raftCommitIndex), noop)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._reads.add(start, future):
            self.call_on_tick(self._send_confirmation_round)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise NoQuorum(f"no majority confirmed this leader within {timeout:g} s") from None
        finally:
            self._reads.discard(future)
        return index

    def _send_confirmation_round(self) -> None:
        """Tick thread: one round of appends (heartbeats if nothing is new) to every
        peer, stamped after every read registered so far."""
        self._reads.round_sent(clock.now())
        core = self._core
        if core is not None and core.rl_state() == LEADER:
            core.rl_send_append_entries()

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until this node has applied ``index``; False on timeout."""
        return await self._proposals.wait_applied(index, timeout)

    # -- status -------------------------------------------------------------------------

    def add_apply_listener(self, listener: Callable[[int, ApplyResult], None]) -> None:
        """``listener(index, result)`` runs on the tick thread for each applied entry,
        in index order, once the LMDB batch holding it is committed (readers on other
        threads see it); keep it short and never block (hand work to another thread or
        loop)."""
        self._apply_listeners.append(listener)

    def call_on_tick(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the tick thread at its next tick (PySyncObj is not thread-safe)."""
        with self._tick_calls_lock:
            self._tick_calls.append(fn)
        if self._core is not None:
            self._core.wake()

    def is_leader(self) -> bool:
        return self._core is not None and self._core.rl_state() == LEADER and not self.failed

    def leader_noop_index(self) -> int | None:
        """Index of the no-op this leader appended in its current term, or None when this
        node does not lead or has not finished becoming leader. Once that entry is
        applied the leader has applied every entry committed before its term, which a
        read served locally by a leader needs (Raft, section 8). Any thread."""
        noop, core = self._leader_noop, self._core
        if noop is None or core is None or not self.is_leader():
            return None
        term, index = noop
        return index if term == int(core.raftCurrentTerm) else None

    def leader_id(self) -> str | None:
        if self._core is None:
            return None
        address = self._core.rl_leader_address()
        return None if address is None else self._addr_to_id.get(address)

    def term(self) -> int:
        return 0 if self._core is None else int(self._core.raftCurrentTerm)

    def leader_contact_ms(self) -> int | None:
        """ms since this node last heard from a leader; 0 on the leader."""
        if self.is_leader():
            return 0
        contact = self.guard.last_leader_contact
        return None if contact is None else int((clock.now() - contact) * 1000)

    def leader_connected(self) -> bool:
        core = self._core
        if core is None:
            return False
        address = core.rl_leader_address()
        if address is None:
            return False
        return address == self.config.self_node.raft or address in core.rl_connected()

    def lease_holds(self, lease_ms: int) -> bool:
        """True if this node leads and a majority (itself included) accepted an append it
        sent less than ``lease_ms`` ago: no other leader can exist yet (guard.py states
        the clock-drift bound this relies on). Any thread."""
        if not self.is_leader():
            return False
        return self.guard.lease_valid(clock.now(), lease_ms / 1000)

    def known_lag(self) -> int | None:
        """Entries this node knows it is behind the leader's commit index (None if unknown)."""
        core = self._core
        if core is None:
            return None
        if self.is_leader():
            return max(0, int(core.raftCommitIndex) - self._proposals.applied_index)
        commit = core.rl_leader_commit_index()
        return None if commit is None else max(0, commit - self._proposals.applied_index)

    def is_ready(self) -> tuple[bool, str]:
        core = self._core
        if core is None or self.failed:
            return False, self.failed or "not started"
        if core.rl_leader_address() is None:
            return False, "no leader is known"
        if not core.isReady():
            return False, "still applying the log up to the commit index learned at start"
        return True, "ready"

    def match_indexes(self) -> dict[str, int]:
        """Leader only: node id -> match index of each peer."""
        core = self._core
        if core is None or not self.is_leader():
            return {}
        return {self._addr_to_id.get(a, a): i for a, i in core.rl_match_index().items()}

    def transfer_leadership(self) -> None:
        """Ask PySyncObj to hand leadership to the most up-to-date connected peer."""
        core = self._core
        if core is not None:
            self.call_on_tick(lambda: core.transferLeadership(None, lambda _r, _e: None))

    def start_draining(self) -> None:
        """Before a handover: refuse new proposals, local and forwarded, as definite
        failures (NOT_LEADER), so nothing new is appended that the handover could strand;
        every message from now on says so (``rl_draining``)."""
        self._drain_started = clock.now()
        self._hooks.draining = True

    def drained(self) -> bool:
        """Leader only: everything appended is committed, every peer has all of it, and
        every peer accepted an append sent while draining (so it knows: its forwarded
        commands still unanswered then end as definite refusals, see RaftCore)."""
        core = self._core
        if core is None or not self.is_leader():
            return True
        last = self.journal.last_index
        matches = core.rl_match_index()
        since = self._drain_started
        echoed = self.guard.echoed
        return (
            int(core.raftCommitIndex) >= last
            and all(m >= last for m in matches.values())
            and since is not None
            and all(echoed.get(peer, float("-inf")) >= since for peer in matches)
        )

    @property
    def cluster_id(self) -> str | None:
        return self._identity.id

    @property
    def applied_index(self) -> int:
        return self._proposals.applied_index

    def status(self) -> NodeStatus:
        """Any thread. A consistent-enough view for operators; figures may lag a tick."""
        core = self._core
        now = clock.now()
        if core is None:
            raise NodeStopped("node not started")
        state = core.rl_state()
        leader_addr = core.rl_leader_address()
        is_leader = state == LEADER
        match = core.rl_match_index() if is_leader else {}
        responses = core.rl_last_response() if is_leader else {}
        connected = core.rl_connected()
        last_index = self.journal.last_index
        peers = []
        for peer in self.config.peers:
            m = match.get(peer.raft)
            heard = responses.get(peer.raft) if is_leader else self._hooks.last_heard.get(peer.raft)
            peers.append(
                PeerStatus(
                    id=peer.id,
                    raft=peer.raft,
                    http=peer.http,
                    match_index=m,
                    lag=None if m is None else max(0, last_index - m),
                    last_contact_ms=None if heard is None else int((now - heard) * 1000),
                    connected=peer.raft in connected,
                    refused_cluster=self._hooks.refused.get(peer.raft),
                )
            )
        leader_contact = self.guard.last_leader_contact
        return NodeStatus(
            node_id=self.config.node_id,
            cluster_name=self.config.cluster_name,
            cluster_id=self._identity.id,
            role=role_name(state),
            leader_id=None if leader_addr is None else self._addr_to_id.get(leader_addr),
            term=int(core.raftCurrentTerm),
            commit_index=int(core.raftCommitIndex),
            applied_index=self._proposals.applied_index,
            last_log_index=last_index,
            last_leader_contact_ms=0
            if is_leader
            else (None if leader_contact is None else int((now - leader_contact) * 1000)),
            peers=tuple(peers),
            journal_fsyncs=self.journal.stats.fsyncs,
            journal_entries_added=self.journal.stats.entries_added,
            snapshots_taken=self.snapshots.stats.taken,
            snapshots_installed=self.snapshots.stats.installed,
            failed=self.failed,
            voting=self.voting.describe(),
        )
