"""raftlog's HTTP API (FastAPI). Routers stay thin; errors become HTTP in one place.

Owns: the app factory (``app``), one router per resource (``routers``), the strict
parameter check (``validation``), the OpenAPI document built from the node's limits
(``openapi``, served offline by ``docs``), response schemas (``schemas``), the one
mapping of errors to HTTP (``errors``) and every call to another node: forwarding to
the leader and the leader's cluster view (``forward``).

May import: the shared top of ``raftlog``, ``raftlog.service`` (the
``LogServiceProtocol`` seam and its types) and ``raftlog.state`` (entry types). Never
imports ``raftlog.raft``, ``raftlog.client`` or ``raftlog.cli``.
"""
