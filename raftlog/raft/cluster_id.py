"""The cluster id: what this node knows of it, the leader creating it, ``rl_fresh``.

A cluster gets its id once, from its first leader: once that leader's no-op is applied
(so the state would already have learned an id a previous leader created) it proposes
``SetClusterMeta`` with a new uuid4, at most once per term. Every node learns the id
when that entry is applied, or from a snapshot it installs; the transport stamps it on
every message and refuses peers with another one (transport.py). The per-node identity
(``node.json``: node id, cluster name, voter) is :mod:`raftlog.raft.identity`.

Threads: the tick thread calls :meth:`ClusterIdentity.maybe_create`,
:meth:`ClusterIdentity.learn`, :meth:`ClusterIdentity.reload` and
:meth:`ClusterIdentity.announces_fresh`; ``start()`` sets the id read from the state
before the tick thread runs. Any thread reads :attr:`ClusterIdentity.id` (a str or
None, replaced whole). Nothing here blocks or does I/O, except ``reload``, which reads
the state's metadata (LMDB, a short read transaction).
"""

from __future__ import annotations

import logging
import uuid

from raftlog.commands import SetClusterMeta, encode
from raftlog.raft.core import RaftCore
from raftlog.raft.journal import DurableJournal
from raftlog.raft.voting import VotingRights
from raftlog.state.machine import ApplyResult, ClusterMetaSet, StateMachine

__all__ = ["ClusterIdentity"]

events = logging.getLogger("raftlog.events")


class ClusterIdentity:
    def __init__(self, cluster_name: str) -> None:
        self._cluster_name = cluster_name
        self.id: str | None = None
        self._proposed_term = -1  # the term in which this node last proposed an id

    def learn(self, result: ApplyResult) -> None:
        """Tick thread, after each apply: adopt the id a SetClusterMeta entry set."""
        if isinstance(result, ClusterMetaSet) and result.cluster_id:
            if self.id != result.cluster_id:
                events.info("cluster id %s", result.cluster_id)
            self.id = result.cluster_id

    def reload(self, state: StateMachine) -> None:
        """Start-up and after a snapshot install: the id is whatever the state holds."""
        self.id = state.cluster_meta().cluster_id

    def maybe_create(self, core: RaftCore) -> None:
        """Tick thread, leader only: propose an id if the cluster has none yet (at most
        once per term). The outcome is not awaited: a proposal that is lost is made again
        by a leader of a later term."""
        if self.id is not None or self._proposed_term == core.raftCurrentTerm:
            return
        noop = core.rl_noop_index()
        if noop is None or core.raftLastApplied < noop:
            return  # our no-op is not applied yet: the state may still learn an id
        self._proposed_term = core.raftCurrentTerm
        command = SetClusterMeta(cluster_id=str(uuid.uuid4()), name=self._cluster_name)
        core.apply_command(encode(command), callback=lambda _r, _e: None)

    def announces_fresh(self, voting: VotingRights, journal: DurableJournal) -> bool:
        """Tick thread (transport): does this node still hold nothing at all? Said on
        every message, after a bootstrap too: a node that became a voter on hearing the
        others' hellos may not have had its own fresh hello read by them yet, and they
        need it to bootstrap (without it, no one else could ever vote for it)."""
        return voting.fresh and self.id is None and (len(journal) == 0 or int(journal[-1][2]) == 0)
