"""raftlog: a Raft-replicated log service (PySyncObj + LMDB)."""

__version__ = "0.1.0"
