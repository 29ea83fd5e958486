"""The service: the contract's rules (ack levels, read consistency, limits) over a node.

Owns: ``LogService`` (``log_service``), the types the HTTP layer sees (``types``:
``LogServiceProtocol``, ``Accepted``, ``ClusterView``, ``Limits``...) and the in-memory
service the API tests run against (``fake``).

May import: the shared top of ``raftlog`` and ``raftlog.state`` (entry and result
types), and ``raftlog.raft`` for the node it drives. Never imports ``api``,
``raftlog.client`` or ``raftlog.cli``.
"""
