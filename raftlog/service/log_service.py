"""LogService: the contract's semantics (acks, consistency levels, waits) on a node.

The node is anything satisfying ``raftlog.service.node_port.NodePort``: a
``raftlog.raft.node.RaftNode`` when serving, ``raftlog.service.memory_node.MemoryNode``
in the contract-rule tests. Runs on the event loop thread. Reads use the node's state
directly (LMDB reads take microseconds); writes and barriers go through Raft. Which
errors mean what for the caller is stated on each method and in ``raftlog.errors``.

Consistency, in short (README has the full table):

- ``quorum``: a barrier (a no-op committed through the log, proposed *after* the read
  arrived; reads arriving before it is proposed share it), then wait until this node
  applied it, then read locally. Linearizable on every node; a node that cannot reach a
  majority cannot commit the barrier and answers ``no_quorum``.
- ``leader``: the leader answers while its lease holds (a majority accepted an append it
  sent less than ``leader_lease_ms`` ago, ``raftlog.raft.guard``) and once it applied the
  no-op of its term; followers hand the request to the leader. Linearizable under the
  clock-rate bound the README states.
- ``any``: local, with ``min_index`` waits and ``max_lag``/``max_staleness_ms`` refusals.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from raftlog.bulk import columns_of
from raftlog.commands import Append, append_entries
from raftlog.config import Config
from raftlog.errors import (
    CorruptStorage,
    InsufficientStorage,
    InvalidRequest,
    LogNotFound,
    NodeStopped,
    NoLeader,
    NoQuorum,
    NotFullyReplicated,
    OffsetMismatch,
    OffsetNotFound,
    OutcomeUnknown,
    ReadTimeout,
    ServedByLeader,
    TooStale,
    Trimmed,
)
from raftlog.service.coalesce import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, AppendCoalescer
from raftlog.service.node_port import NodePort
from raftlog.service.types import (
    Accepted,
    AppendRequest,
    AppendResult,
    ClusterNode,
    ClusterView,
    EntryRange,
    Limits,
    LogPage,
    NodeHeaders,
    PageBudget,
    ReadOptions,
)
from raftlog.state.types import Appended, ApplyResult, Entry, GroupApplied, LogInfo, Rejected

__all__ = [
    "LEASE_GRACE_HEARTBEATS",
    "MIN_FREE_BYTES",
    "READ_CHUNK_ENTRIES",
    "LogService",
]

# Writes are refused (507) when the data dir's file system has less than this free.
MIN_FREE_BYTES = 64 << 20
# A range read takes entries from the state this many at a time, so that it holds at
# most this many entries beyond the ones its capped page returns (a page of 10000
# entries of 1 MiB must not be read whole to return 4 MiB of it).
READ_CHUNK_ENTRIES = 32
# A leader read whose lease has lapsed waits this many heartbeats for it to be renewed.
LEASE_GRACE_HEARTBEATS = 2


class _BarrierGroups:
    """Coalesces quorum reads: a read joins the group that has not been proposed yet.

    A group is proposed on the next loop iteration after its first read, so every read
    sharing a barrier arrived before that barrier was proposed. The barrier gets the
    longest timeout of its readers (each reader still stops at its own). Event loop
    thread only.
    """

    def __init__(self, node: NodePort) -> None:
        self._node = node
        self._forming: asyncio.Future[int] | None = None
        self._forming_timeout = 0.0

    async def wait(self, timeout: float) -> int:
        if self._forming is None:
            loop = asyncio.get_running_loop()
            self._forming = loop.create_future()
            self._forming_timeout = timeout
            # Readers may all have given up: mark the outcome retrieved either way.
            self._forming.add_done_callback(lambda f: f.cancelled() or f.exception())
            loop.call_soon(self._launch, self._forming)
        else:
            self._forming_timeout = max(self._forming_timeout, timeout)
        return await asyncio.shield(self._forming)

    def _launch(self, group: asyncio.Future[int]) -> None:
        timeout = self._forming_timeout
        self._forming = None  # later reads form the next group

        def done(task: asyncio.Task[int]) -> None:
            if group.done():
                return
            exc = task.exception()
            if exc is not None:
                group.set_exception(exc)
            else:
                group.set_result(task.result())

        asyncio.ensure_future(self._node.barrier(timeout)).add_done_callback(done)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_log = logging.getLogger(__name__)


def _refuses_damage(
    read: Callable[_P, Coroutine[Any, Any, _R]],
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """A read that meets a record failing its checksum (CorruptStorage) never answers
    with it: the node fail-stops (``raftlog serve`` exits 65, files left as found) and the
    request gets NodeStopped (503, definite, retried by clients on another node)."""

    @functools.wraps(read)
    async def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await read(*args, **kwargs)
        except CorruptStorage as exc:
            service = args[0]
            assert isinstance(service, LogService)
            _log.critical("damaged data refused, not served: %s", exc)
            service.node.fail_stop(exc)
            raise NodeStopped(
                f"node {service.config.node_id} found damaged data and stopped; "
                "retry on another node"
            ) from exc

    return guarded


class LogService:
    def __init__(
        self, node: NodePort, config: Config, *, unsafe_local_quorum_reads: bool = False
    ) -> None:
        s = config.node
        # Negative control for the fault suite only: quorum reads become local reads.
        self._unsafe_local_quorum_reads = unsafe_local_quorum_reads
        self.node = node
        self.config = config
        self.limits = Limits(
            max_entry_bytes=s.max_entry_bytes,
            max_batch_entries=s.max_batch_entries,
            max_batch_bytes=s.max_batch_bytes,
            max_request_bytes=s.max_request_bytes,
            max_response_bytes=s.max_response_bytes,
        )
        self._barriers = _BarrierGroups(node)
        # Concurrent appends share proposals (raftlog.service.coalesce); the waiting bound
        # is the node's proposal bound, so overload answers as before coalescing.
        self.coalescer = AppendCoalescer(
            node,
            max_members=DEFAULT_MAX_MEMBERS,
            max_bytes=min(DEFAULT_MAX_BYTES, s.max_batch_bytes),
            max_waiting=s.max_inflight_proposals,
        )
        self._log_events: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free_checked = 0.0
        self._free_ok = True
        scheme = "https" if s.tls_cert_file else "http"
        self._urls = {n.id: f"{scheme}://{n.http}" for n in config.nodes}

    async def start(self) -> None:
        """Call on the serving loop before the first request."""
        self._loop = asyncio.get_running_loop()
        self.node.add_apply_listener(self._on_applied)

    async def close(self) -> None:
        """Call on the serving loop after the last request; the node is not stopped."""

    # -- node facts -----------------------------------------------------------------------

    def headers(self) -> NodeHeaders:
        node = self.node
        return NodeHeaders(
            node_id=self.config.node_id,
            cluster_id=node.cluster_id,
            term=node.term(),
            applied_index=node.applied_index,
            leader_id=node.leader_id(),
            last_contact_ms=node.leader_contact_ms(),
        )

    def is_leader(self) -> bool:
        return self.node.is_leader()

    def leader_url(self) -> str | None:
        leader = self.node.leader_id()
        return None if leader is None else self._urls.get(leader)

    def live(self) -> bool:
        return self.node.failed is None

    def ready(self) -> tuple[bool, str]:
        return self.node.is_ready()

    def _to_leader(self) -> ServedByLeader:
        url = self.leader_url()
        if url is None:
            raise NoLeader("no leader is known")
        return ServedByLeader(url)

    # -- writes ---------------------------------------------------------------------------

    async def append(self, request: AppendRequest) -> AppendResult | Accepted:
        """201 AppendResult, or 202 Accepted for ``ack=leader``.

        Raises ServedByLeader (ack=leader/all on a follower), definite errors before
        proposing (NoLeader, Overloaded, InsufficientStorage, OffsetMismatch, ...),
        OutcomeUnknown once proposed, NotFullyReplicated for ack=all.

        ``ack=quorum``/``all`` go through the coalescer (each keeps its own result and
        timeout); ``ack=leader`` is handed to Raft alone at once, as its 202 promises.
        """
        node = self.node
        if request.ack in ("leader", "all") and not node.is_leader():
            raise self._to_leader()
        self._check_disk()
        command = Append(
            log=request.log,
            entries=append_entries(*columns_of(request.entries, "value_json", "key")),
            timestamp_ms=int(time.time() * 1000),
            expected_offset=request.expected_offset,
        )
        if request.ack == "leader":
            node.propose_nowait(command)
            return Accepted(request.log)
        started = time.monotonic()
        result = await self.coalescer.submit(command, request.timeout)
        appended = self._appended(result)
        if request.ack == "all":
            remaining = request.timeout - (time.monotonic() - started)
            if not await self._wait_all_replicated(appended.index, remaining):
                raise NotFullyReplicated(
                    "committed by a majority but not yet replicated to every member "
                    f"within {request.timeout:g} s",
                    committed=True,
                    **appended.to_dict(),
                )
        return appended

    @staticmethod
    def _appended(result: ApplyResult) -> AppendResult:
        if isinstance(result, Appended):
            return AppendResult(
                result.log,
                result.offset,
                result.last_offset,
                result.count,
                result.index,
                result.term,
            )
        if isinstance(result, Rejected):
            if result.code == "offset_mismatch":
                next_offset = result.details.get("next_offset")
                raise OffsetMismatch(
                    f"expected_offset did not match: the log's next offset is {next_offset}; "
                    "nothing was written",
                    next_offset=next_offset,
                )
            if result.code == "replayed":
                raise OutcomeUnknown(result.message)
            raise InvalidRequest(f"{result.message}; nothing was written")
        raise OutcomeUnknown(f"unexpected apply result {type(result).__name__}")

    async def _wait_all_replicated(self, index: int, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        members = {n.id for n in self.config.peers}
        while True:
            matches = self.node.match_indexes()
            if all(matches.get(m, 0) >= index for m in members):
                return True
            if time.monotonic() >= deadline or not self.node.is_leader():
                return False
            await asyncio.sleep(0.005)

    def _check_disk(self) -> None:
        now = time.monotonic()
        if now - self._free_checked > 1.0:
            self._free_checked = now
            free = shutil.disk_usage(self.config.data_dir).free
            self._free_ok = free >= MIN_FREE_BYTES
        if not self._free_ok:
            raise InsufficientStorage(
                f"node {self.config.node_id} has less than {MIN_FREE_BYTES >> 20} MiB of disk "
                "free; nothing was written"
            )

    # -- reads ----------------------------------------------------------------------------

    async def _read_point(self, options: ReadOptions) -> None:
        """Establish the consistency the read asked for, or raise. Writes nothing."""
        node = self.node
        started = time.monotonic()
        if options.consistency == "quorum" and self._unsafe_local_quorum_reads:
            pass
        elif options.consistency == "quorum":
            if not node.leader_connected():
                raise NoQuorum(
                    f"node {self.config.node_id} cannot reach a leader; a quorum read "
                    "needs a majority"
                )
            index = await self._quorum_read_point(options.timeout)
            remaining = options.timeout - (time.monotonic() - started)
            if not await node.wait_applied(index, max(0.0, remaining)):
                raise ReadTimeout(f"this node did not apply the read barrier {index} in time")
        elif options.consistency == "leader":
            if not node.is_leader():
                url = self.leader_url()
                if url is None:
                    raise NoQuorum("no leader is known; a leader read needs a leader")
                raise ServedByLeader(url)
            # A new leader learns what its predecessors committed only by applying an
            # entry of its own term: until its no-op is applied it may miss writes.
            noop = node.leader_noop_index()
            if noop is None:
                raise NoQuorum("this node is still becoming leader; retry the leader read")
            if not await node.wait_applied(noop, options.timeout):
                raise ReadTimeout(f"this new leader did not apply its first entry {noop} in time")
            if not await self._lease_renewed(started, options.timeout):
                raise NoQuorum(
                    "this leader has not heard from a majority within leader_lease_ms "
                    f"({self.config.node.leader_lease_ms} ms)"
                )
        else:
            if options.max_staleness_ms is not None:
                contact = node.leader_contact_ms()
                if contact is None or contact > options.max_staleness_ms:
                    raise TooStale(
                        f"this node last heard from a leader "
                        f"{'never' if contact is None else f'{contact} ms ago'}; "
                        f"max_staleness_ms is {options.max_staleness_ms}",
                        last_contact_ms=contact,
                    )
            if options.max_lag is not None:
                lag = node.known_lag()
                if lag is not None and lag > options.max_lag:
                    raise TooStale(
                        f"this node is {lag} entries behind the leader's commit index; "
                        f"max_lag is {options.max_lag}",
                        lag=lag,
                    )
        if options.min_index is not None and node.applied_index < options.min_index:
            remaining = options.timeout - (time.monotonic() - started)
            if not await node.wait_applied(options.min_index, max(0.0, remaining)):
                raise ReadTimeout(
                    f"this node has applied index {node.applied_index}, not min_index "
                    f"{options.min_index}, after {options.timeout:g} s"
                )

    async def _quorum_read_point(self, timeout: float) -> int:
        """The index a quorum read must see applied. On the leader: ReadIndex (one round
        of appends confirms it still leads; nothing is written); on a follower, or a
        leader that just stopped leading: a barrier committed through the log (shared
        by the reads that arrived before it was proposed). Raises NoQuorum."""
        node = self.node
        if node.is_leader():
            try:
                return await node.read_index(timeout)
            except NoLeader:
                pass  # no longer leads: the barrier goes to whoever does
        try:
            return await asyncio.wait_for(self._barriers.wait(timeout), timeout)
        except (NoLeader, OutcomeUnknown, TimeoutError):
            raise NoQuorum(f"no quorum confirmed the read within {timeout:g} s") from None

    async def _lease_renewed(self, started: float, timeout: float) -> bool:
        """True once this leader's lease holds (``leader_lease_ms``); False when it stops
        leading or the lease is still lapsed after LEASE_GRACE_HEARTBEATS heartbeats.

        A lease lapses when a heartbeat round goes unanswered for leader_lease_ms: a cut-off
        leader, or a machine so busy the answers came late. The next round renews it in the
        second case, so a leader read waits that long (at most two heartbeats, and never past
        the read's timeout) before refusing: a cut-off leader still says no_quorum within a
        fraction of a second, and a busy one does not refuse reads it can serve safely (the
        lease is checked afresh, never assumed)."""
        node = self.node
        lease_ms = self.config.node.leader_lease_ms
        grace_s = LEASE_GRACE_HEARTBEATS * self.config.node.heartbeat_ms / 1000
        deadline = min(time.monotonic() + grace_s, started + timeout)
        while node.is_leader():
            if node.lease_holds(lease_ms):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return False

    @_refuses_damage
    async def get_entry(self, log: str, offset: int, options: ReadOptions) -> Entry:
        await self._read_point(options)
        info, entry = self.node.state.entry_with_info(log, offset)  # one read transaction
        next_offset = 0 if info is None else info.next_offset
        if info is not None and offset < info.first_offset:
            raise Trimmed(
                f"offset {offset} of log {log!r} was removed by retention",
                first_offset=info.first_offset,
            )
        if entry is None:
            raise OffsetNotFound(
                f"log {log!r} has no entry at offset {offset} (next offset {next_offset})",
                next_offset=next_offset,
            )
        return entry

    @_refuses_damage
    async def read_range(
        self, log: str, start: int, limit: int, options: ReadOptions, wait_s: float = 0.0
    ) -> EntryRange:
        await self._read_point(options)
        deadline = time.monotonic() + wait_s
        while True:
            # A page that would not start at ``start`` is Trimmed by _read_page itself, so
            # the log's info is read only for an empty page (all of it trimmed, or nothing
            # at ``start`` yet): a page of up to READ_CHUNK_ENTRIES is one read transaction.
            entries = self._read_page(log, start, limit)
            info = None
            if not entries:
                info = self.node.state.log_info(log)
                if info is not None and start < info.first_offset:
                    raise Trimmed(
                        f"offset {start} of log {log!r} was removed by retention",
                        first_offset=info.first_offset,
                    )
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                next_offset = entries[-1].offset + 1 if entries else start
                return EntryRange(entries, next_offset)
            await self._wait_for_log(log, info, start, remaining)

    def _read_page(self, log: str, start: int, limit: int) -> list[Entry]:
        """Consecutive entries from ``start``: at most ``limit``, and only as many as fit in
        ``max_response_bytes`` as served (at least one when one exists at ``start``).

        Read in chunks of READ_CHUNK_ENTRIES, each its own LMDB read transaction; entries
        never change once written, but a trim between two chunks would make the state
        skip ahead, so the page ends at the first offset that does not follow (and a
        page that would not start at ``start`` is Trimmed: never a silent skip)."""
        state = self.node.state
        budget = PageBudget(self.limits.max_response_bytes)
        out: list[Entry] = []
        expected = start
        while len(out) < limit:
            want = min(READ_CHUNK_ENTRIES, limit - len(out))
            chunk = state.read_range(log, expected, want)
            for entry in chunk:
                if entry.offset != expected:
                    if not out:
                        raise Trimmed(
                            f"offset {start} of log {log!r} was removed by retention",
                            first_offset=entry.offset,
                        )
                    return out
                if not budget.admit(entry):
                    return out
                out.append(entry)
                expected += 1
            if len(chunk) < want:
                return out
        return out

    async def _wait_for_log(
        self, log: str, info: LogInfo | None, start: int, timeout: float
    ) -> None:
        event = asyncio.Event()
        waiters = self._log_events[log]
        waiters.append(event)
        try:
            # Re-check after registering: an append may have landed in between.
            latest = self.node.state.log_info(log)
            if latest is not None and latest.next_offset > start:
                return
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return
        finally:
            waiters.remove(event)
            if not waiters:
                self._log_events.pop(log, None)

    def _on_applied(self, index: int, result: ApplyResult) -> None:
        # The node's apply thread (RaftNode: its tick thread; MemoryNode: the caller's):
        # hand over to the loop, never touch asyncio objects here.
        if not self._log_events or self._loop is None:
            return
        members = result.results if isinstance(result, GroupApplied) else (result,)
        for log in {r.log for r in members if isinstance(r, Appended)}:
            if log in self._log_events:
                self._loop.call_soon_threadsafe(self._wake_log, log)

    def _wake_log(self, log: str) -> None:
        for event in self._log_events.get(log, []):
            event.set()

    @_refuses_damage
    async def list_logs(self, after: str | None, limit: int, options: ReadOptions) -> LogPage:
        await self._read_point(options)
        infos = self.node.state.list_logs(after, limit + 1)
        more = len(infos) > limit
        infos = infos[:limit]
        return LogPage(infos, infos[-1].log if more and infos else None)

    @_refuses_damage
    async def get_log(self, log: str, options: ReadOptions) -> LogInfo:
        await self._read_point(options)
        info = self.node.state.log_info(log)
        if info is None:
            raise LogNotFound(f"log {log!r} does not exist")
        return info

    # -- cluster --------------------------------------------------------------------------

    async def cluster(self, forwarded: bool = False) -> ClusterView:
        """This node's own view of every member: per-follower figures only on the leader.

        ``forwarded`` (the request carried ``X-Raftlog-No-Forward``) changes nothing here:
        a follower's HTTP layer fetches the leader's view itself (``api.forward``) and
        asks the service only when it must answer with its own. Never blocks.
        """
        status = self.node.status()
        is_leader = status.role == "leader"
        nodes = [
            ClusterNode(
                id=self.config.node_id,
                raft=self.config.self_node.raft,
                http=self.config.self_node.http,
                role=status.role,
                applied_index=status.applied_index,
                match_index=status.last_log_index if is_leader else None,
                lag=0 if is_leader else None,
                last_contact_ms=0 if is_leader else status.last_leader_contact_ms,
                reachable=True,
            )
        ]
        for peer in status.peers:
            nodes.append(
                ClusterNode(
                    id=peer.id,
                    raft=peer.raft,
                    http=peer.http,
                    role=("leader" if peer.id == status.leader_id else "follower")
                    if is_leader and peer.connected
                    else ("leader" if peer.id == status.leader_id else "unknown"),
                    applied_index=None,
                    match_index=peer.match_index if is_leader else None,
                    lag=peer.lag if is_leader else None,
                    last_contact_ms=peer.last_contact_ms if is_leader else None,
                    reachable=peer.connected if is_leader else None,
                )
            )
        return ClusterView(
            cluster=self.config.cluster_name,
            cluster_id=status.cluster_id,
            leader=status.leader_id,
            term=status.term,
            commit_index=status.commit_index,
            nodes=nodes,
        )
