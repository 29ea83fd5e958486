"""Voting rights: a node that may have lost its log never votes its way back.

Raft's safety rests on every vote and every acknowledgement being backed by a log on
disk that is never lost. A node whose data dir was deleted (or replaced by an empty
one) restarts under its old id with an empty log; if it voted, it could give a lagging
peer the majority and elect a leader without acknowledged writes (measured: 0 of 200
kept). It cannot tell, on its own, "I have never held anything" from "I lost what I
held". So a node on an empty data dir starts *pending*: it grants no vote and no
pre-vote, never campaigns and ignores leadership-transfer requests, until one of:

- **bootstrap** (a new cluster): it is still *fresh* (empty log, no cluster id, nothing
  applied, no append accepted) and it has seen every other member announce itself
  fresh (``rl_fresh`` on their messages). If one member still held a log, that member
  is never fresh (it holds data), so a lost node never bootstraps while
  any copy of the old log survives; only when every member's data is gone at once does
  the cluster start anew, which no replication could survive anyway;
- **catch-up** (an existing cluster): it accepted appends from the leader of some term
  T, that leader's commit index at the first such append was K, and its own commit
  index c now satisfies c >= K with the entry at c from term T. Then it holds every
  entry committed before it rejoined: entries of earlier terms because the leader of T
  committed an entry of its own term at c (leader completeness), entries of term T
  because they are at or below K. A leader change restarts the count with the new
  leader's K.

Only a leader elected by others' votes can catch a pending node up, and every such
election happened without the pending node's vote, so by Raft's election restriction
that leader holds every committed entry. The state (``voter``) is persisted in
``node.json`` before the node acts as a voter; a data dir from before this rule (no
field) is a voter. Acknowledging appends while pending is safe: Raft's consistency check
means an acknowledgement of index i vouches for a log holding 1..i.

Pure bookkeeping: no I/O, no PySyncObj. Tick thread only; ``voter`` and ``describe``
are read from other threads (single attribute reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["VotingRights"]


@dataclass
class VotingRights:
    voter: bool
    peers: frozenset[str]  # every other member's Raft address
    fresh: bool = False  # pending and empty: may announce rl_fresh
    seen_fresh: set[str] = field(default_factory=set)
    # Catch-up towards the leader of ``term``: K, its commit index at the first append.
    term: int | None = None
    target: int | None = None
    # How the node became a voter in this run (for the log and status), or None.
    how: str | None = None

    def may_vote(self) -> bool:
        """May this node grant votes and pre-votes, campaign, accept a transfer?"""
        return self.voter

    def on_peer_message(self, peer: str, fresh: bool) -> bool:
        """A message from ``peer``; True when it made this node a voter (bootstrap)."""
        if self.voter or not fresh:
            return False
        self.seen_fresh.add(peer)
        if self.fresh and self.seen_fresh >= self.peers:
            self.voter, self.how = True, "bootstrap: every member started with empty data"
            return True
        return False

    def on_alone(self) -> bool:
        """A single-node cluster: nobody else can hold what it lost."""
        if self.voter or self.peers:
            return False
        self.voter, self.how = True, "bootstrap: a single-node cluster"
        return True

    def on_append_accepted(self, term: int, leader_commit: int) -> None:
        """Before PySyncObj handles an append it accepts (term >= ours)."""
        self.fresh = False  # a leader exists: this node is no longer part of a bootstrap
        if self.voter:
            return
        if self.term != term:
            self.term, self.target = term, leader_commit

    def on_commit(self, commit: int, term_at_commit: int | None) -> bool:
        """After an accepted append; True when it made this node a voter (caught up)."""
        if self.voter or self.term is None or self.target is None:
            return False
        if commit >= self.target and term_at_commit == self.term:
            self.voter = True
            self.how = (
                f"caught up: holds index {commit} (term {self.term}), at or past the "
                f"leader's commit index {self.target} when it rejoined"
            )
            return True
        return False

    def describe(self) -> str:
        if self.voter:
            return "voter"
        if self.target is not None:
            return f"catching up to index {self.target} (term {self.term}) before voting"
        return "waiting for a leader or for every member to start empty before voting"
