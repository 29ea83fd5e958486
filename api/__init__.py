"""raftlog's HTTP API (FastAPI). Routers stay thin; errors become HTTP in one place.

Owns: the app factory (``app``), one router per resource (``routers``), the strict
parameter check (``validation``), the OpenAPI document built from the node's limits
(``openapi``, served offline by ``docs``), response schemas (``schemas``), the one
mapping of errors to HTTP (``errors``), every call to another node: forwarding to
the leader and the leader's cluster view (``forward``), the hot routes served without
FastAPI's router (``hot``) and JSON on the request path, orjson where it is proven to
answer as ``json`` does (``codec``). Nothing on the request path runs in a thread pool.

May import: the shared top of ``raftlog``, ``raftlog.service`` (the
``LogServiceProtocol`` seam and its types) and ``raftlog.state`` (entry types). Never
imports ``raftlog.raft``, ``raftlog.client`` or ``raftlog.cli``.
"""
