"""The service: the contract's rules (ack levels, read consistency, limits) over a node.

Owns: ``LogService`` (``log_service``), the port it drives a node through
(``node_port``: ``NodePort``, ``StateReader``, ``NodeStatusView``), the node's
in-process twin for testing the service's rules (``memory_node``: ``MemoryNode``, with
injectable failures), the types the HTTP layer sees (``types``: ``LogServiceProtocol``,
``Accepted``, ``ClusterView``, ``Limits``...) and the in-memory service the API tests
run against (``fake``).

May import: the shared top of ``raftlog`` (``commands``, ``config``, ``errors``) and
``raftlog.state`` (the state machine and its entry and result types). Never imports
``raftlog.raft`` (``raftlog.raft.node.RaftNode`` satisfies ``NodePort`` structurally;
``raftlog.cli.serve`` joins the two), nor ``api``, ``raftlog.client`` or
``raftlog.cli``. Makes no network calls: asking another node anything (forwarding, the
leader's cluster view) is ``api.forward``'s.
"""
