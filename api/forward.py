"""Handing a request to the leader: 307 redirects and forwarding.

When the service raises ``ServedByLeader(leader_url)`` (or an append asks for
``redirect=true`` on a follower), the request is served by the leader:

* ``redirect=true``: 307 with ``Location: <leader_url><path>?<query>``; the client re-sends.
* otherwise the app's ``Forwarder`` re-sends the same method, path, query and body to the
  leader and relays its status, body and ``X-Raftlog-*`` headers.

The query string is relayed byte for byte, in the ``Location`` of a 307 and in a
forwarded request alike: forwarding never adds, drops or rewrites a parameter, so the
leader (as strict as every node: ``api.validation.RouteParams``) sees exactly what the
follower already accepted. Internal markers travel as headers, never as parameters.

A forwarded request carries ``X-Raftlog-No-Forward: 1``; a node that receives one and is
not the leader either answers 503 ``no_leader`` rather than forwarding again, so a stale
view of the leader can never make requests bounce between nodes.

``GET /v1/cluster`` on a follower is served with the leader's view, fetched here too
(``leader_cluster_view``, with ``X-Raftlog-No-Forward: 1``): when the leader cannot be
asked, the follower answers with its own view, the per-follower figures unknown.

Failures of forwarding are raftlog errors: the leader unreachable (nothing was sent) is
503 ``no_leader``; a failure after a write was sent is 504 ``outcome_unknown``; after a read
was sent, 503 ``no_leader`` (reads write nothing; retrying is safe).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import httpx
from starlette.requests import Request
from starlette.responses import Response

from api.validation import redirect_requested
from raftlog.errors import NoLeader, OutcomeUnknown
from raftlog.service.types import ClusterNode, ClusterView

__all__ = [
    "CLUSTER_FETCH_TIMEOUT_S",
    "FORWARDED_REQUEST_HEADERS",
    "NO_FORWARD_HEADER",
    "REDIRECT_RESPONSE_DOC",
    "RELAYED_RESPONSE_HEADERS",
    "ClusterViewFetcher",
    "Forwarder",
    "HttpForwarder",
    "hand_to_leader",
    "leader_cluster_view",
    "leader_location",
    "redirect_response",
    "redirect_to_known_leader",
]

# The one definition of the marker: a request carrying it is served by the node that
# received it (never forwarded again); ``GET /v1/cluster`` answers with that node's view.
NO_FORWARD_HEADER = "X-Raftlog-No-Forward"
# How long a follower waits for the leader's /v1/cluster before answering its own view.
CLUSTER_FETCH_TIMEOUT_S = 2.0

# Request headers worth relaying to the leader (hop-by-hop and Host are not).
FORWARDED_REQUEST_HEADERS = (
    "content-type",
    "accept",
    "authorization",
    "idempotency-key",
    "last-event-id",
    "user-agent",
    "x-request-id",
)
# Response headers relayed back besides every X-Raftlog-* header.
RELAYED_RESPONSE_HEADERS = (
    "content-type",
    "retry-after",
    "location",
    "idempotent-replayed",
    "allow",
    "x-request-id",
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

REDIRECT_RESPONSE_DOC: dict[str, Any] = {
    "description": "`redirect=true` on a follower: re-send the same request to `Location`, "
    "the leader.",
    "headers": {
        "Location": {
            "description": "The leader's URL for this request (same path and query).",
            "schema": {"type": "string", "example": "http://127.0.0.1:8001/v1/logs/audit/entries"},
        }
    },
}


class Forwarder(Protocol):
    """Re-sends a request to the leader and returns the leader's answer.

    ``body`` is the raw request body already read by the route (``b""`` for reads).
    May raise ``raftlog.errors.RaftlogError`` (``NoLeader``, ``OutcomeUnknown``).
    """

    async def forward(self, request: Request, leader_url: str, body: bytes) -> Response: ...


@runtime_checkable
class ClusterViewFetcher(Protocol):
    """A forwarder that can also fetch the leader's ``/v1/cluster`` for a follower."""

    async def fetch_cluster(self, leader_url: str) -> ClusterView | None:
        """The leader's view, or None when it could not be had (unreachable, no answer
        within CLUSTER_FETCH_TIMEOUT_S, a status other than 200). Never raises for
        transport failures: the caller falls back to its own view."""
        ...


async def leader_cluster_view(request: Request, leader_url: str) -> ClusterView | None:
    """The leader's cluster view through the app's forwarder; None when the app has none
    that can fetch it (the node does not forward) or the fetch failed."""
    forwarder = getattr(request.app.state, "forwarder", None)
    if not isinstance(forwarder, ClusterViewFetcher):
        return None
    return await forwarder.fetch_cluster(leader_url)


def _cluster_from_dict(data: dict[str, Any]) -> ClusterView:
    return ClusterView(
        cluster=data["cluster"],
        cluster_id=data["cluster_id"],
        leader=data["leader"],
        term=data["term"],
        commit_index=data["commit_index"],
        nodes=[ClusterNode(**n) for n in data["nodes"]],
    )


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1")
    return request.url.path


def leader_location(request: Request, leader_url: str) -> str:
    """``<leader_url><path>?<query>`` for this request (the query only when there is one)."""
    query = request.url.query
    location = leader_url.rstrip("/") + _raw_path(request)
    return f"{location}?{query}" if query else location


def redirect_response(request: Request, leader_url: str) -> Response:
    return Response(status_code=307, headers={"Location": leader_location(request, leader_url)})


def redirect_to_known_leader(request: Request, leader_url: str | None) -> Response:
    """307 to ``leader_url``; 503 ``no_leader`` (with Retry-After) when none is known."""
    if leader_url is None:
        raise NoLeader("no leader is known; nothing was written")
    return redirect_response(request, leader_url)


async def hand_to_leader(request: Request, leader_url: str, body: bytes) -> Response:
    """Serve the request at the leader: 307 with ``redirect=true``, else forward it."""
    if redirect_requested(request.query_params):
        return redirect_response(request, leader_url)
    if NO_FORWARD_HEADER.lower() in request.headers:
        raise NoLeader(
            f"this node is not the leader and was asked not to forward; the leader appears "
            f"to be at {leader_url}",
            leader_url=leader_url,
        )
    forwarder: Forwarder | None = getattr(request.app.state, "forwarder", None)
    if forwarder is None:
        raise NoLeader(
            f"this node does not forward requests; the leader is at {leader_url} "
            "(or retry with redirect=true)",
            leader_url=leader_url,
        )
    return await forwarder.forward(request, leader_url, body)


def _budget_s(request: Request) -> float:
    """The request's own time budget (``timeout`` + ``wait``), already validated."""
    total = 0.0
    for name, default in (("timeout", 10.0), ("wait", 0.0)):
        try:
            value = float(request.query_params.get(name, default))
        except ValueError:
            value = default
        total += value if math.isfinite(value) and value > 0 else default
    return total


class HttpForwarder:
    """Forwards with httpx. ``timeout`` is the least time allowed for the leader's answer;
    a request's own ``timeout`` (+ ``wait``) extends it. One client, created on first use
    on the serving loop; ``aclose()`` releases it."""

    def __init__(
        self,
        timeout: float = 30.0,
        *,
        connect_timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: proxy variables meant for the outside world must not
            # capture traffic between nodes.
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch_cluster(self, leader_url: str) -> ClusterView | None:
        """``GET <leader_url>/v1/cluster`` with ``X-Raftlog-No-Forward: 1`` (the leader's
        own view, never bounced on). Runs on the serving loop; waits at most
        CLUSTER_FETCH_TIMEOUT_S; None on a transport failure or a status other than 200."""
        try:
            reply = await self._http().get(
                f"{leader_url.rstrip('/')}/v1/cluster",
                headers={NO_FORWARD_HEADER: "1"},
                timeout=CLUSTER_FETCH_TIMEOUT_S,
            )
        except httpx.HTTPError:
            return None
        if reply.status_code != 200:
            return None
        return _cluster_from_dict(reply.json())

    async def forward(self, request: Request, leader_url: str, body: bytes) -> Response:
        headers = {
            name: value
            for name in FORWARDED_REQUEST_HEADERS
            if (value := request.headers.get(name)) is not None
        }
        headers[NO_FORWARD_HEADER] = "1"
        read_timeout = max(self.timeout, _budget_s(request) + 5.0)
        timeout = httpx.Timeout(read_timeout, connect=min(self.connect_timeout, read_timeout))
        url = leader_location(request, leader_url)
        try:
            reply = await self._http().request(
                request.method, url, content=body or None, headers=headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise NoLeader(
                f"the leader at {leader_url} is unreachable ({type(exc).__name__}); "
                "nothing was sent to it",
                leader_url=leader_url,
            ) from None
        except httpx.HTTPError as exc:
            if request.method in _SAFE_METHODS:
                raise NoLeader(
                    f"the leader at {leader_url} did not answer ({type(exc).__name__})",
                    leader_url=leader_url,
                ) from None
            raise OutcomeUnknown(
                f"the request was forwarded to the leader at {leader_url}, which did not "
                f"answer ({type(exc).__name__}); the write may or may not have been applied",
                leader_url=leader_url,
            ) from None
        relayed = {
            name: value
            for name, value in reply.headers.items()
            if name.lower().startswith("x-raftlog-") or name.lower() in RELAYED_RESPONSE_HEADERS
        }
        return Response(content=reply.content, status_code=reply.status_code, headers=relayed)
