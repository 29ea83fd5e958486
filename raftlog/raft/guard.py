"""The rules PySyncObj lacks: check-quorum, vote refusal, PreVote and a sound leader lease.

Pure bookkeeping: no sockets, no PySyncObj, no clock of its own. Every time passed in
and stored here is a reading of the one Raft clock (:func:`raftlog.raft.clock.now`,
PySyncObj's CLOCK_MONOTONIC_RAW); never mix in ``time.monotonic()``, which may be
hundreds of milliseconds apart from it on some machines.

The argument (Raft dissertation, sections 4.2.3, 6.4.1 and 9.6), with ``E`` the minimum
election timeout and ``L`` the lease (``leader_lease_ms``, validated ``L < E``):

- A follower that accepted an append from a leader at time ``r`` (its clock) neither
  grants a vote nor a pre-vote, nor raises its term for a vote request, before
  ``r + E``. A leader does the same while a majority confirmed it within ``E``. A node
  that has just started does the same for ``E`` after its start (it may have heard from
  a leader just before it crashed). Leadership transfers are exempt: the leader asked.
- A node asks for pre-votes before it raises its term; it starts a real election only
  when a majority would vote for it. So a node that was paused or cut off rejoins at
  its old term instead of deposing a healthy leader.
- The leader stamps each append with its send time ``s`` (its clock); a follower echoes
  the stamp of the append it accepted in its reply. Once a majority (the leader
  included) echoed stamps ``>= s``, no other leader can be elected before ``s + E``
  on those followers' clocks: every majority includes one of them. The lease holds
  until ``s + L`` on the leader's clock. This is sound while no clock runs more than
  ``E / L`` times faster than another (2x with the defaults) and needs no bound on
  message delay: the stamp is taken before the append leaves, so delay only shortens
  the lease. A leader that was paused finds its stamps old, not fresh.
- A leader without a majority's confirmation for ``E`` steps down; a follower that has
  not accepted an append for ``E`` forgets its leader, so writes and leader reads are
  refused at once instead of waiting for a leader that is not there.

Threading: one instance per node, used by the tick thread; :meth:`lease_valid` and
:meth:`heard_from_leader` are also read from other threads (single attribute reads of
immutable values: a stale answer is an older, more conservative one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ElectionGuard", "PreVoteRound", "log_up_to_date"]


def log_up_to_date(
    their_last_term: int, their_last_index: int, our_last_term: int, our_last_index: int
) -> bool:
    """Raft's election restriction (section 5.4.1): is their log at least as new as ours?"""
    if their_last_term != our_last_term:
        return their_last_term > our_last_term
    return their_last_index >= our_last_index


@dataclass
class PreVoteRound:
    """One pre-vote round: for the term the candidate would move to."""

    term: int
    granted: set[str] = field(default_factory=set)


@dataclass
class ElectionGuard:
    election_timeout_min: float  # seconds: E above
    cluster_size: int
    started_at: float
    # Follower side: when we last accepted an append from a leader.
    last_leader_contact: float | None = None
    # Leader side: when we became leader, and per peer the newest send stamp it echoed.
    leading_since: float | None = None
    echoed: dict[str, float] = field(default_factory=dict)
    prevote: PreVoteRound | None = None
    # The term in which a pre-vote round was won: the election from it may proceed.
    prevote_won_in_term: int | None = None

    @property
    def majority(self) -> int:
        return self.cluster_size // 2 + 1

    # -- follower --------------------------------------------------------------------------

    def on_append_accepted(self, now: float) -> None:
        self.last_leader_contact = now

    def heard_from_leader(self, now: float) -> bool:
        contact = self.last_leader_contact
        return contact is not None and now - contact < self.election_timeout_min

    # -- leader ------------------------------------------------------------------------------

    def on_became_leader(self, now: float) -> None:
        self.leading_since = now
        self.echoed = {}
        self.prevote = None

    def on_left_leadership(self) -> None:
        self.leading_since = None
        self.echoed = {}

    def on_echo(self, peer: str, sent_at: float) -> None:
        """A peer accepted an append we stamped ``sent_at`` (leader side)."""
        if self.leading_since is None or sent_at < self.leading_since:
            return  # from an earlier leadership of ours: it vouches for nothing now
        if sent_at > self.echoed.get(peer, float("-inf")):
            self.echoed[peer] = sent_at

    def confirmed_at(self, now: float) -> float | None:
        """The newest stamp a majority (ourselves at ``now`` included) has confirmed."""
        if self.leading_since is None:
            return None
        stamps = sorted([now, *self.echoed.values()], reverse=True)
        if len(stamps) < self.majority:
            return None
        return stamps[self.majority - 1]

    def lease_valid(self, now: float, lease: float) -> bool:
        confirmed = self.confirmed_at(now)
        return confirmed is not None and now - confirmed < lease

    def quorum_contact_ms(self, now: float) -> int | None:
        """ms since a majority last confirmed this leader (None if it never did)."""
        confirmed = self.confirmed_at(now)
        return None if confirmed is None else int((now - confirmed) * 1000)

    def check_quorum_ok(self, now: float) -> bool:
        """A leader keeps leading while a majority confirmed it within E (or it was
        elected, by a majority, less than E ago)."""
        if self.leading_since is None:
            return False
        confirmed = self.confirmed_at(now)
        latest = self.leading_since if confirmed is None else max(confirmed, self.leading_since)
        return now - latest < self.election_timeout_min

    # -- votes --------------------------------------------------------------------------------

    def may_vote(self, now: float, *, leading: bool, transfer: bool) -> bool:
        """May we grant a (pre-)vote, or raise our term for a vote request, now?"""
        if transfer:
            return True
        if now - self.started_at < self.election_timeout_min:
            return False
        if leading:
            return not self.check_quorum_ok(now)
        return not self.heard_from_leader(now)

    def start_prevote(self, own_id: str, next_term: int) -> PreVoteRound:
        self.prevote = PreVoteRound(term=next_term, granted={own_id})
        return self.prevote

    def on_prevote_granted(self, peer: str, term: int) -> bool:
        """Count a grant; True once the round has a majority."""
        round_ = self.prevote
        if round_ is None or round_.term != term:
            return False
        round_.granted.add(peer)
        return len(round_.granted) >= self.majority
