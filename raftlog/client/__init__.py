"""The raftlog Python client: ``Client`` (sync) and ``AsyncClient`` over the v1 HTTP API.

::

    from raftlog.client import Client, OutcomeUnknown

    with Client(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as c:
        r = c.append("orders", {"id": 42})           # AppendResult
        e = c.get("orders", r.offset, consistency="any", min_index=r.index)
        for entry in c.tail("orders", max_entries=10):
            print(entry.offset, entry.value)

What this package owns: the client side of the v1 API, nothing of the server. Its modules:

* ``core``: the sans-IO core. Each call is a plan (a generator) that yields ``Request`` and
  ``Sleep`` steps and is sent back responses or transport exceptions; node selection, leader
  following, redirects, retries with backoff, the deadline and the classification of every
  outcome (definitely not applied vs ``OutcomeUnknown``) are written there once.
* ``sync`` (``Client``) and ``aio`` (``AsyncClient``): thin drivers that perform the steps
  with ``pool_sync`` / ``pool_async`` (the client's own HTTP/1.1 pools over ``http11``,
  for plain ``http://``) or httpx (for ``https://``, a given transport, a configured
  proxy), and ``time.sleep`` / ``asyncio.sleep``.
* ``nodes`` (URLs, per-node backoff, the spreading of ``any`` reads), ``wire`` (building
  requests, reading answers), ``errors`` (the exception tree), ``models`` (the result
  types), ``load`` (bounded load from either client, for benchmarks).

Imports allowed: the standard library, httpx, and of raftlog only the shared top
(``raftlog.__version__``); never ``raftlog.raft``, ``state``, ``service``, ``cli`` or ``api``.

Behaviour (both clients):

* **Nodes.** ``urls`` (a list, or one comma-separated string; ``None`` reads ``RAFTLOG_URL``,
  else ``http://127.0.0.1:8001``). A call starts at the node that last answered, unless that
  node is in backoff (below); a failure moves it on to another node.
* **Attempt timeouts.** Each attempt on one node has its own timeouts, much shorter than
  the call's: ``connect_timeout`` (default 0.5 s) to open the connection (and to get one
  from the pool), ``read_timeout`` (default 2 s) for the node's answer once the request is
  sent. A request that asks the server to wait gets that wait on top of ``read_timeout``:
  a long poll its ``wait``, a ``min_index`` read and an ``ack=all`` write the call's
  ``timeout`` (the server answers 504 by then). Choose ``read_timeout`` above the cluster's
  usual commit latency and near its ``election_timeout_max_ms`` (server default 2000 ms):
  by the time an attempt on a frozen leader is given up, a new leader is usually known.
* **Node backoff.** A node that could not be reached or did not answer in time (connection
  refused or reset, connect/read timeout) is put in backoff for ``node_backoff`` seconds
  (default 1 s), doubling on each further failure up to ``node_backoff_max`` (default 30 s),
  reset by its next answer. Calls go to nodes outside backoff; a node in backoff is tried
  only when no other node is left in the current round and no node answered in that round
  (when all are in backoff, the one that failed longest ago goes first). So after a
  timeout, even one that raised ``OutcomeUnknown``, the next call goes elsewhere.
* **Reads spread over the nodes.** A ``consistency="any"`` read goes to a node drawn at
  random, weighted by 1 / its observed latency (EWMA); a node that answered such a read
  with a 503 (``too_stale``...) or failed is skipped for ``node_backoff`` (doubling) and
  must answer ``/readyz`` 200 to come back. ``spread_reads=False`` turns this off. Every
  other call starts at the node that last answered, as below.
* **Leader.** On a 503 from one node, the client tries the node named in that answer's
  ``X-Raftlog-Leader`` (its URL learned from ``GET /v1/cluster``; skipped while in
  backoff), else the next URL. 307 and 308 redirects are followed here (not by httpx,
  which would drop ``Authorization`` when the leader is another origin), re-sending the
  same method, body and headers.
* **Retries.** Only failures that certainly changed nothing are retried: a request that
  was never sent (connection refused, connect or pool timeout), 429 (waiting at least
  ``Retry-After``, capped at ``RETRY_AFTER_CAP``), 503 (its ``Retry-After`` is not awaited:
  during an election another node may answer at once); reads (GET) also after a timeout,
  a connection broken mid-way and a 502. Moving on to a node not yet tried in the current
  round is immediate; once the round is over, the client sleeps (exponential ``backoff``
  with jitter, capped at ``MAX_BACKOFF``) and starts a new round, at most ``retries``
  times, and never once the call's deadline (``timeout`` + ``wait`` + ``GRACE`` seconds
  from its start) has passed; a call thus lasts at most its deadline plus one attempt.
* **Unknown outcomes are never retried.** A write answered 504 ``outcome_unknown``, a write
  that timed out or whose connection broke after it was sent, or one given an undocumented
  answer raises ``OutcomeUnknown`` (see ``raftlog.client.errors`` for the whole exception
  tree).
* **Timeouts on the server.** ``timeout`` (or a call's ``timeout=``) is sent as the
  server's ``timeout`` parameter.
* **Missing logs.** ``get`` on a log that does not exist raises ``LogNotFound`` (the server
  answers a missing log like an empty one, so a 404 ``offset_not_found`` at offset 0 is
  checked with one ``GET /v1/logs/{log}``).
"""

from __future__ import annotations

from raftlog.client.aio import AsyncClient
from raftlog.client.core import _Core as _Core  # tests read its constants
from raftlog.client.errors import (
    BatchTooLarge,
    Conflict,
    ConnectionFailed,
    EntryTooLarge,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientStorage,
    InvalidRequest,
    LogNotFound,
    MembershipChangeInProgress,
    NoLeader,
    NoQuorum,
    NotFound,
    NotFullyReplicated,
    OffsetMismatch,
    OffsetNotFound,
    OutcomeUnknown,
    Overloaded,
    RaftlogClientError,
    RequestTooLarge,
    Timeout,
    TooLarge,
    TooStale,
    Trimmed,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnexpectedWriteResponse,
)
from raftlog.client.models import (
    Accepted,
    Ack,
    AppendResult,
    ClusterNodeStatus,
    ClusterStatus,
    Consistency,
    EntriesPage,
    Entry,
    LogInfo,
    LogsPage,
    ResponseMeta,
)
from raftlog.client.nodes import DEFAULT_URL, ENV_URL, resolve_urls
from raftlog.client.sync import Client

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "Accepted",
    "Ack",
    "AppendResult",
    "AsyncClient",
    "BatchTooLarge",
    "Client",
    "ClusterNodeStatus",
    "ClusterStatus",
    "Conflict",
    "ConnectionFailed",
    "Consistency",
    "EntriesPage",
    "Entry",
    "EntryTooLarge",
    "Forbidden",
    "IdempotencyKeyReused",
    "InsufficientStorage",
    "InvalidRequest",
    "LogInfo",
    "LogNotFound",
    "LogsPage",
    "MembershipChangeInProgress",
    "NoLeader",
    "NoQuorum",
    "NotFound",
    "NotFullyReplicated",
    "OffsetMismatch",
    "OffsetNotFound",
    "OutcomeUnknown",
    "Overloaded",
    "RaftlogClientError",
    "RequestTooLarge",
    "ResponseMeta",
    "Timeout",
    "TooLarge",
    "TooStale",
    "Trimmed",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnexpectedWriteResponse",
    "resolve_urls",
]
