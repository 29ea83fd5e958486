"""The PySyncObj subclass: one replicated method, our journal, transport and snapshots.

This module and its siblings in ``raftlog.raft`` are the only ones importing pysyncobj.
Everything here runs on the Raft tick thread that :class:`raftlog.raft.node.RaftNode`
owns (``autoTick=False``): PySyncObj's state is never touched concurrently.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.config import FAIL_REASON
from pysyncobj.poller import POLL_EVENT_TYPE

from raftlog.errors import InvariantBroken
from raftlog.raft import clock
from raftlog.raft.guard import ElectionGuard, log_up_to_date
from raftlog.raft.journal import DurableJournal
from raftlog.raft.roles import FOLLOWER, LEADER
from raftlog.raft.snapshot_receive import IncomingDump
from raftlog.raft.transport import (
    DRAINING_FIELD,
    ECHO_FIELD,
    FRESH_FIELD,
    SENT_FIELD,
    TRANSFER_FIELD,
    RaftlogNode,
    RaftlogTransport,
    TransportHooks,
)
from raftlog.raft.voting import VotingRights
from raftlog.raft.wire import install as _install_stored_frames

__all__ = ["CHUNK_RECEIVED", "HELLO", "PREVOTE", "PREVOTE_RESPONSE", "RaftCore"]

# Our own message types; PySyncObj never sees them.
PREVOTE = "rl_prevote"
PREVOTE_RESPONSE = "rl_prevote_response"
# Sent once per new connection, so peers learn at once whether we are fresh (voting.py).
HELLO = "rl_hello"
# A follower's answer to each snapshot chunk: PySyncObj's follower answers only the last,
# and a leader's connection that reads nothing for connection_timeout_ms is dropped, so a
# transfer longer than that never ended (each drop restarts it).
CHUNK_RECEIVED = "rl_chunk_received"

# Snapshot bytes queued per peer connection at most (_rl_pace_snapshot_sends): at one
# heartbeat (100 ms) per refill, up to 640 MB/s per follower.
SNAPSHOT_SEND_AHEAD_BYTES = 64 << 20

_original_create_journal = _syncobj_module.createJournal


def _create_journal(journal_file: Any = None) -> Any:
    # SyncObj builds its journal from conf.journalFile through this module-level
    # function; passing our journal object there is the only way to inject it.
    if isinstance(journal_file, DurableJournal):
        return journal_file
    return _original_create_journal(journal_file)


_syncobj_module.createJournal = _create_journal
# Peer messages framed without zlib's per-message deflate set-up (wire.py).
_install_stored_frames()


class RaftCore(SyncObj):  # type: ignore[misc]
    """PySyncObj with a single replicated method taking a versioned command (bytes)."""

    def __init__(
        self,
        self_address: str,
        peer_addresses: list[str],
        conf: SyncObjConf,
        hooks: TransportHooks,
        apply: Callable[[int, bytes], Any],
        guard: ElectionGuard,
        on_fatal: Callable[[BaseException], None],
        voting: VotingRights,
        on_voter: Callable[[], None],
        after_apply_run: Callable[[], None] = lambda: None,
        may_compact: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rl_transport_hooks = hooks
        # Asked (tick thread) before each of PySyncObj's compaction checks; False skips it.
        self._rl_may_compact = may_compact
        # Called (tick thread) at the end of every apply run of PySyncObj: the node
        # commits the LMDB batch there and only then reveals the entries it holds.
        self._rl_after_apply_run = after_apply_run
        # Called (tick thread) before raising InvariantBroken: the node fail-stops.
        self._rl_on_fatal = on_fatal
        # Entries of leader appends we already held, skipped instead of re-added (stats).
        self.rl_entries_skipped = 0
        # Voting rights of a node that started on an empty data dir (voting.py); on_voter
        # persists the change (tick thread; it may block on a small fsync).
        self.rl_voting = voting
        self._rl_on_voter = on_voter
        self._rl_greeted: set[str] = set()
        self.rl_guard = guard
        # The current leader announced it is draining before a handover (rl_draining).
        self._rl_leader_draining = False
        self._rl_apply = apply
        super().__init__(
            self_address,
            peer_addresses,
            conf,
            nodeClass=RaftlogNode,
            transportClass=RaftlogTransport,
        )
        if conf.fullDumpFile is not None:
            # A received snapshot the disk refuses to take is a fail-stop, not a log line
            # (snapshot_receive.py); SyncObj reads this attribute for each chunk.
            receiver = IncomingDump(str(conf.fullDumpFile), on_fatal)
            self._SyncObj__serializer.setTransmissionData = receiver.receive
        self._rl_pace_snapshot_sends()
        self._rl_wake_r, self._rl_wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # wake() (any thread) and close_wake_pipe() (the tick thread, at its end) take it:
        # without it a wake-up raced the close and wrote to a closed descriptor (EBADF
        # seen in a test), or to whatever file had just reused its number.
        self._rl_wake_lock = threading.Lock()
        self._poller.subscribe(self._rl_wake_r, self._rl_on_wake, POLL_EVENT_TYPE.READ)

    def _rl_pace_snapshot_sends(self) -> None:
        """Queue at most SNAPSHOT_SEND_AHEAD_BYTES of a snapshot per peer connection.

        PySyncObj's leader pushes a whole snapshot into the connection's send buffer in
        one tick (its loop goes on while chunks remain): as much memory as the snapshot
        per follower, and one tick thread busy for all of it. Handing out no chunk while
        the peer's connection still holds that much makes PySyncObj end the loop (it
        sends an empty ``serialized`` message, which the follower ignores) and resume
        the transfer at its next send, a heartbeat or new entries. Tick thread."""
        serializer = self._SyncObj__serializer
        next_chunk = serializer.getTransmissionData
        connections: dict[Any, Any] = self._SyncObj__transport._connections

        def paced(node: Any) -> Any:
            conn = connections.get(node)
            if conn is not None and conn.getSendBufferSize() > SNAPSHOT_SEND_AHEAD_BYTES:
                return None
            return next_chunk(node)

        serializer.getTransmissionData = paced

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, data: bytes) -> Any:
        # Runs on the tick thread for each committed entry, in index order; PySyncObj
        # increments raftLastApplied only after this returns.
        return self._rl_apply(self.raftLastApplied + 1, data)

    def _SyncObj__applyLogEntries(self) -> bool:  # noqa: N802
        """PySyncObj's apply run (every committed entry not applied yet, one by one,
        then their callbacks), followed by our hook: the LMDB batch the run filled is
        committed before anything else in the tick (compaction, the on-tick callbacks)
        runs. An exception out of the run skips the hook; the next run commits."""
        need_send = bool(super()._SyncObj__applyLogEntries())
        self._rl_after_apply_run()
        return need_send

    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:  # noqa: N802
        """A snapshot transfer to a peer whose connection dropped starts again from its
        first chunk. PySyncObj advances a transfer's file position as it hands each chunk
        to the connection and cancelled the transfer only when it next found the peer
        disconnected: chunks lost with a dropped connection's buffers, or one whose send
        failed, were skipped when the peer was back by then, and the follower refused
        every copy on its checksum (seen with a 707 MB snapshot). Tick thread."""
        serializer = self._SyncObj__serializer
        transfer = getattr(serializer, "_Serializer__transmissions", {}).get(node)
        if transfer is not None and transfer.get("file") is not None:
            transfer["file"].close()  # PySyncObj's cancel drops it unclosed
        serializer.cancelTransmisstion(node)
        super()._SyncObj__onNodeDisconnected(node)

    def _SyncObj__tryLogCompaction(self) -> None:  # noqa: N802
        """PySyncObj's compaction check, skipped while ``may_compact`` says no (the node:
        the serializer is idle and the last applied entries are no-ops or membership
        entries, which never reach the state, so no snapshot could claim them)."""
        if self._rl_may_compact():
            super()._SyncObj__tryLogCompaction()

    # -- waking the tick thread from other threads --------------------------------------

    def wake(self) -> None:
        """Any thread: make the tick thread's poll return now (a proposal is queued).
        Never blocks beyond a short lock; a no-op once the tick thread has ended."""
        with self._rl_wake_lock:
            fd = self._rl_wake_w
            if fd < 0:
                return  # the tick thread has ended
            with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is pending
                os.write(fd, b"w")

    def _rl_on_wake(self, _fd: int, _mask: int) -> None:
        try:
            while os.read(self._rl_wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def close_wake_pipe(self) -> None:
        with self._rl_wake_lock:
            fds = (self._rl_wake_r, self._rl_wake_w)
            self._rl_wake_r = self._rl_wake_w = -1
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- follower appends: keep the entries that match (Raft's rule) -----------------------

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        """PySyncObj's message handler, with the follower's log kept as Raft asks.

        PySyncObj's follower deletes *every* entry after ``prevLogIdx`` before adding the
        leader's entries, even entries identical to the ones sent and entries after them.
        When the batch ends before the follower's log does (a resend the leader split
        into batches), its log is then shorter than what it acknowledged and applied
        until the next message: it would vote for a candidate missing committed entries.
        Raft deletes only from the first conflicting entry. So when every entry of an
        append matches ours and our log goes further, the entries after the batch are
        set aside (no I/O: the journal keeps them as its shadow tail) while PySyncObj
        handles the message, as a heartbeat ending at the batch's last entry, then taken
        back. PySyncObj thus computes the commit index
        from the batch's last entry, as Raft does, and answers with the batch's end;
        the entries the leader has not confirmed stay in the log, unconfirmed, as in
        Raft. Tick thread only.
        """
        if isinstance(message, dict) and not self._rl_admit(node, message):
            return
        hidden = self._rl_set_aside_tail(message)
        try:
            super()._SyncObj__onMessageReceived(node, message)
        finally:
            if hidden:
                self._SyncObj__raftLog.reclaim(hidden)
        if (
            isinstance(message, dict)
            and message.get("type") == "append_entries"
            and message.get("serialized") is not None
            and self.rl_state() == FOLLOWER
        ):
            # Keeps the leader's connection reading during a long transfer (CHUNK_RECEIVED).
            self._SyncObj__transport.send(node, {"type": CHUNK_RECEIVED})
        if not self.rl_voting.voter and isinstance(message, dict):
            self._rl_check_caught_up(node, message)
        if (
            isinstance(message, dict)
            and message.get("type") in ("append_entries", "timeout_now")
            and self._SyncObj__raftLeader is node
        ):
            # After PySyncObj handled it: a new leader's first append must not decide how
            # the commands forwarded to the previous one end (_SyncObj__onLeaderChanged).
            self._rl_leader_draining = bool(message.get(DRAINING_FIELD))

    def _SyncObj__onLeaderChanged(self) -> None:  # noqa: N802
        """PySyncObj fails the commands forwarded to the old leader and still awaiting its
        answer with LEADER_CHANGED (outcome unknown). When that leader was draining, they
        were never appended: it refuses every forwarded command from the start of its
        drain, and answered the ones it appended before it (that answer precedes, on the
        same connection, its first draining message, which we saw). So they end with
        NOT_LEADER, a definite refusal the client may retry. Tick thread."""
        if not self._rl_leader_draining:
            super()._SyncObj__onLeaderChanged()
            return
        self._rl_leader_draining = False
        waiting: dict[int, Callable[[Any, int], None]] = self._SyncObj__commandsWaitingReply
        self._SyncObj__commandsWaitingReply: dict[int, Callable[[Any, int], None]] = {}
        for request_id in sorted(waiting):
            waiting[request_id](None, FAIL_REASON.NOT_LEADER)

    # -- check-quorum, vote refusal, PreVote, lease stamps (rules in guard.py) --------------

    def _rl_admit(self, node: Any, message: dict[str, Any]) -> bool:
        """Our part of message handling; False when PySyncObj must not see the message."""
        kind = message.get("type")
        guard = self.rl_guard
        now = clock.now()
        address = str(node.address)
        voting = self.rl_voting
        if voting.on_peer_message(address, bool(message.get(FRESH_FIELD))):
            self._rl_became_voter()
        if kind in (HELLO, CHUNK_RECEIVED):
            return False
        if kind == "append_entries":
            hooks = self.rl_transport_hooks
            if message.get("term", -1) >= self._SyncObj__raftCurrentTerm:
                # PySyncObj accepts it: the sender is our leader from here on.
                guard.on_append_accepted(now)
                voting.on_append_accepted(int(message["term"]), int(message["commit_index"]))
                hooks.echo_to[address] = message.get(SENT_FIELD)
            else:
                hooks.echo_to[address] = None  # ignored by PySyncObj: vouch for nothing
        elif kind == "next_node_idx":
            echo = message.get(ECHO_FIELD)
            if echo is not None and self.rl_state() == LEADER:
                guard.on_echo(address, float(echo))
        elif kind in ("request_vote", "timeout_now") and not voting.may_vote():
            return False  # it may have lost a log it vouched for (voting.py)
        elif kind == "request_vote":
            leading = self.rl_state() == LEADER
            if not guard.may_vote(now, leading=leading, transfer=bool(message.get(TRANSFER_FIELD))):
                return False  # neither a vote nor a term change (dissertation 4.2.3)
        elif kind == PREVOTE:
            self._rl_answer_prevote(node, message, now)
            return False
        elif kind == PREVOTE_RESPONSE:
            self._rl_count_prevote(address, message)
            return False
        return True

    def _rl_answer_prevote(self, node: Any, message: dict[str, Any], now: float) -> None:
        term = int(self._SyncObj__raftCurrentTerm)
        granted = (
            int(message["term"]) > term
            and log_up_to_date(
                int(message["last_log_term"]),
                int(message["last_log_index"]),
                int(self._SyncObj__getCurrentLogTerm()),
                int(self._SyncObj__getCurrentLogIndex()),
            )
            and self.rl_guard.may_vote(now, leading=self.rl_state() == LEADER, transfer=False)
            and self.rl_voting.may_vote()
        )
        self._SyncObj__transport.send(
            node,
            {
                "type": PREVOTE_RESPONSE,
                "term": message["term"],
                "granted": granted,
                "current_term": term,
            },
        )

    def _rl_count_prevote(self, address: str, message: dict[str, Any]) -> None:
        if self.rl_state() == LEADER:
            return
        term = int(self._SyncObj__raftCurrentTerm)
        if message.get("granted"):
            if int(message["term"]) == term + 1 and self.rl_guard.on_prevote_granted(
                address, term + 1
            ):
                self._rl_prevote_won(term)
            return
        theirs = int(message.get("current_term", -1))
        if theirs > term:
            # A peer at a higher term refused: adopt its term (Raft's rule for any reply
            # with a higher term), or a node whose log is newer but whose term is lower
            # could never win a pre-vote against it.
            self._SyncObj__setCurrentTerm(theirs, None)
            self._SyncObj__setState(FOLLOWER)
            self._SyncObj__raftLeader = None

    def _rl_prevote_won(self, term: int) -> None:
        self.rl_guard.prevote_won_in_term = term
        self.rl_guard.prevote = None
        self._SyncObj__raftElectionDeadline = 0.0  # PySyncObj starts the election next tick

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803
        self._rl_before_tick()
        super()._onTick(timeToWait)

    def _rl_became_voter(self) -> None:
        self._rl_on_voter()  # persisted before the node acts as a voter

    def _rl_check_caught_up(self, node: Any, message: dict[str, Any]) -> None:
        if message.get("type") != "append_entries" or self._SyncObj__raftLeader is not node:
            return
        commit = int(self._SyncObj__raftCommitIndex)
        log: DurableJournal = self._SyncObj__raftLog
        term_at = None
        if len(log) and log[0][1] <= commit <= log[-1][1]:
            term_at = int(log[commit - log[0][1]][2])
        if self.rl_voting.on_commit(commit, term_at):
            self._rl_became_voter()

    def _rl_greet_new_connections(self) -> None:
        """Send HELLO on every connection that is new since the last tick."""
        connected = self.rl_connected()
        for peer in self._SyncObj__otherNodes:
            if peer.address in connected and peer.address not in self._rl_greeted:
                self._SyncObj__transport.send(peer, {"type": HELLO})
        self._rl_greeted = connected

    def _rl_before_tick(self) -> None:
        """Check-quorum and PreVote, just before PySyncObj's own tick. Tick thread."""
        guard = self.rl_guard
        now = clock.now()
        if self.rl_voting.on_alone():
            self._rl_became_voter()
        self._rl_greet_new_connections()
        state = self.rl_state()
        if state == LEADER:
            # The leader's own copy counts toward a commit only once durable: entries it
            # shipped before its fsync (transport.py) are synced here at the latest,
            # before PySyncObj's tick computes the commit index. Cheap when clean; a
            # failure raises FatalStorageError and the node fail-stops.
            self.rl_transport_hooks.journal.flush()
            if not guard.check_quorum_ok(now):
                self._SyncObj__setState(FOLLOWER)  # check-quorum: step down
                self._SyncObj__raftLeader = None
            return
        if self._SyncObj__raftLeader is not None and not guard.heard_from_leader(now):
            # Forget a leader we have not heard from for an election timeout: writes and
            # leader reads are refused at once (503) instead of waiting for it; commands
            # forwarded to it get LEADER_CHANGED (outcome unknown) now, not at a timeout.
            self._SyncObj__raftLeader = None
            self._SyncObj__onLeaderChanged()
        if (
            self._SyncObj__selfNode is None
            or self._SyncObj__raftElectionDeadline >= now
            or not self._SyncObj__connectedToAnyone()
        ):
            return  # PySyncObj starts no election in this tick
        if not self.rl_voting.may_vote():
            # Pending (voting.py): never campaign, not even a pre-vote round.
            self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
            return
        term = int(self._SyncObj__raftCurrentTerm)
        if self._SyncObj__transferInProgress:
            self.rl_transport_hooks.transfer_term = term + 1  # the old leader asked for it
            return
        if guard.prevote_won_in_term == term:
            return  # a majority would vote for us: PySyncObj runs the election now
        # Pre-vote instead of an election: the term stays until a majority would vote.
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        round_ = guard.start_prevote(str(self._SyncObj__selfNode.address), term + 1)
        if len(round_.granted) >= guard.majority:
            self._rl_prevote_won(term)
            return
        request = {
            "type": PREVOTE,
            "term": term + 1,
            "last_log_index": int(self._SyncObj__getCurrentLogIndex()),
            "last_log_term": int(self._SyncObj__getCurrentLogTerm()),
        }
        for peer in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(peer, dict(request))

    def _SyncObj__setState(self, newState: int) -> None:  # noqa: N802, N803
        old = self._SyncObj__raftState
        if newState == LEADER and old != LEADER:
            self.rl_guard.on_became_leader(clock.now())
        elif old == LEADER and newState != LEADER:
            self.rl_guard.on_left_leadership()
        super()._SyncObj__setState(newState)

    def _rl_set_aside_tail(self, message: Any) -> list[tuple[bytes, int, int]]:
        """Make PySyncObj delete nothing that matches; return the tail set aside.

        PySyncObj's follower deletes every entry after ``prevLogIdx`` and adds the
        leader's entries again, even the ones it holds already (the leader resends
        entries every tick until their acknowledgement arrives), and logs CRITICAL
        "truncating already-applied log entries" whenever those were applied. Raft
        skips the entries it holds and deletes only from the first conflicting one. So:

        - the leading entries we hold identically are dropped from the message and its
          ``prevLogIdx`` moved to the last of them (no delete, no re-add, no alarm);
        - a conflict (same index, another term) at or below our commit index or last
          applied index is an invariant break, never a routine truncation: the node
          fail-stops before PySyncObj acts on it (:class:`InvariantBroken`). So is an
          entry with our index and term but other bytes;
        - when the rest of the message is empty and our log goes further, the entries
          after it are set aside (no I/O: the journal keeps them as its shadow tail)
          while PySyncObj handles it as a heartbeat, then taken back (see
          ``_SyncObj__onMessageReceived``).
        """
        if not isinstance(message, dict) or message.get("type") != "append_entries":
            return []
        if "prevLogIdx" not in message or "transmission" in message:
            return []
        if message.get("term", -1) < self._SyncObj__raftCurrentTerm:
            return []  # PySyncObj ignores it
        log: DurableJournal = self._SyncObj__raftLog
        if len(log) == 0:
            return []
        first, last = log[0][1], log[-1][1]
        prev = message["prevLogIdx"]
        entries = message.get("entries") or []
        if prev < first or prev > last:
            return []  # PySyncObj rejects it (and asks for what it needs)
        if log[prev - first][2] != message["prevLogTerm"]:
            return []  # PySyncObj rejects it
        held = 0
        for entry in entries:
            if entry[1] > last:
                break
            ours = log[entry[1] - first]
            if ours[2] != entry[2]:
                self._rl_check_conflict(int(entry[1]), ours, entry)
                break
            if bytes(ours[0]) != bytes(entry[0]):
                self._rl_invariant_broken(
                    f"the leader's entry at index {entry[1]} (term {entry[2]}) differs in "
                    "its bytes from the one this node holds with the same index and term"
                )
            held += 1
        if held:
            self.rl_entries_skipped += held
            kept = entries[held - 1]
            prev = kept[1]
            entries = entries[held:]
            message["prevLogIdx"] = prev
            message["prevLogTerm"] = kept[2]
            message["entries"] = entries
        if entries or prev >= last:
            return []  # nothing of ours after it, or a conflict: PySyncObj's handling is exact
        cut = prev + 1 - first
        hidden = [(bytes(e[0]), e[1], e[2]) for e in log[cut:]]
        log.deleteEntriesFrom(cut)
        return hidden

    def _rl_check_conflict(self, index: int, ours: Any, theirs: Any) -> None:
        bound = max(int(self._SyncObj__raftCommitIndex), int(self.raftLastApplied))
        if index <= bound:
            self._rl_invariant_broken(
                f"the leader's log conflicts with this node's at index {index} (ours has "
                f"term {ours[2]}, the leader's term {theirs[2]}), at or below this node's "
                f"commit index / last applied index {bound}: committed entries never "
                "change, so one of the logs is wrong"
            )

    def _rl_invariant_broken(self, why: str) -> None:
        error = InvariantBroken(f"Raft invariant broken: {why}; stopping before acting on it")
        self._rl_on_fatal(error)
        raise error

    # -- private PySyncObj state, read in one place ---------------------------------------
    # Methods, not properties: SyncObj.__init__ calls getattr() on every attribute name.

    def rl_state(self) -> int:
        return int(self._SyncObj__raftState)

    def rl_leader_address(self) -> str | None:
        leader = self._SyncObj__raftLeader
        return None if leader is None else str(leader.address)

    def rl_match_index(self) -> dict[str, int]:
        return {n.address: int(i) for n, i in list(self._SyncObj__raftMatchIndex.items())}

    def rl_last_response(self) -> dict[str, float]:
        return {n.address: float(t) for n, t in list(self._SyncObj__lastResponseTime.items())}

    def rl_connected(self) -> set[str]:
        return {getattr(n, "address", str(n)) for n in list(self._SyncObj__connectedNodes)}

    def rl_noop_index(self) -> int | None:
        value = self._SyncObj__noopIDx
        return None if value is None else int(value)

    def rl_leader_commit_index(self) -> int | None:
        value = self._SyncObj__leaderCommitIndex
        return None if value is None else int(value)

    def rl_send_append_entries(self) -> None:
        self._SyncObj__sendAppendEntries()

    def rl_reset_election_deadline(self, seconds: float) -> None:
        self._SyncObj__raftElectionDeadline = clock.now() + seconds

    def rl_destroy_transport_only(self) -> None:
        """Close sockets without flushing anything: what kill -9 leaves behind."""
        self._SyncObj__transport.destroy()
