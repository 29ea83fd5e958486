"""Raft for raftlog: the only package that imports pysyncobj.

It owns replication and everything a node keeps for it: the node facade
(``raftlog.raft.node.RaftNode``: the tick thread, proposals and their admission,
status, fail-stop), the PySyncObj subclass (core.py), the durable journal and its file
seam (journal.py, storage.py, lossy.py), the transport (transport.py), snapshots
(snapshots.py, snapshot_receive.py, dump_format.py, snapshot_check.py), the election
rules (guard.py, voting.py), the node's and the cluster's identity (identity.py,
cluster_id.py) and the start-up checks (startup.py). Everything outside sees RaftNode,
``raftlog.raft.status.NodeStatus`` and ``raftlog.errors``; no PySyncObj type leaves.

Imports: only the shared top of ``raftlog`` (errors, commands, config, checksum)
and ``raftlog.state``; never ``raftlog.service``, ``raftlog.client``, ``raftlog.cli`` or
``api``. Threads: see each module's docstring (most run on the tick thread only).
"""
