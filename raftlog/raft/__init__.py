"""The only package that imports pysyncobj: node wrapper (``raftlog.raft.node.RaftNode``),
durable journal, transport and snapshots. Everything outside sees RaftNode,
``raftlog.raft.status.NodeStatus`` and ``raftlog.errors``."""
