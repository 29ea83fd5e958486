"""raftlog: a Raft-replicated log service (PySyncObj + LMDB).

The top of the package holds only what every package shares and imports nothing of
its packages: ``commands`` (the versioned command envelope and wire limits),
``config`` (the validated settings), ``errors`` (the one error table: definitely not
applied vs outcome unknown), ``checksum`` and ``ports``. The packages: ``state`` (the
LMDB state machine), ``raft`` (the only importer of PySyncObj), ``service`` (the
contract's rules over a ``NodePort``), ``client`` (the Python client), ``cli`` (the
``raftlog`` command). The map and its arrows: ``raftlog/DESIGN.md``.
"""

__version__ = "0.1.0"
