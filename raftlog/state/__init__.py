"""The replicated state machine: named logs of JSON entries in LMDB.

Owns: the pure apply functions (``apply``), the LMDB layout and record checksums
(``store``), the machine that applies committed commands and serves reads
(``machine``), state snapshots (``snapshot``), the read gate (``gate``), the entry
and result types (``types``) and the offline record walk (``verify``).

May import: the shared top of ``raftlog`` (``commands``, ``errors``, ``checksum``).
Never imports ``raftlog.raft``, ``raftlog.service``, ``raftlog.client``, ``raftlog.cli``
or ``api``: the machine knows nothing of Raft, it is handed committed commands in
order (by ``raftlog.raft``) and read by the service.
"""
