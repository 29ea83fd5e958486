"""PySyncObj's role numbers (``_SyncObj__raftState``), named once for the raft package.

PySyncObj keeps a node's role as a bare int (``_RAFT_STATE`` in pysyncobj.syncobj:
follower 0, candidate 1, leader 2). Code in ``raftlog.raft`` compares
``RaftCore.rl_state()`` and ``onStateChanged`` arguments with these names, never with
the digits. Pure data: no pysyncobj import, safe to use from any thread.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "ROLE_NAMES"]

FOLLOWER: Final = 0
CANDIDATE: Final = 1
LEADER: Final = 2

# What NodeStatus.role says for each of them (status.py).
ROLE_NAMES: Final[dict[int, str]] = {FOLLOWER: "follower", CANDIDATE: "candidate", LEADER: "leader"}
