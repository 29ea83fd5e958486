"""``/v1/cluster``: the members and their replication state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api import schemas, validation
from api.errors import error_responses
from api.forward import NO_FORWARD_HEADER, leader_cluster_view
from api.routers import ServiceDep
from raftlog.service.types import ClusterView, LogServiceProtocol

__all__ = ["GET_CLUSTER", "router"]

router = APIRouter(prefix="/v1", tags=["cluster"])

GET_CLUSTER = validation.RouteParams()  # no query parameters


async def _view(request: Request, service: LogServiceProtocol, own_view: bool) -> ClusterView:
    """``own_view`` (header ``X-Raftlog-No-Forward``): this node's own view. Otherwise a
    follower that knows a leader relays the leader's view (``api.forward``) and falls
    back to its own when the leader cannot be asked."""
    if not own_view and not service.is_leader():
        leader_url = service.leader_url()
        if leader_url is not None:
            view = await leader_cluster_view(request, leader_url)
            if view is not None:
                return view
    return await service.cluster(forwarded=own_view)


@router.get(
    "/cluster",
    summary="Cluster members, leader, term and per-follower replication",
    response_model=schemas.Cluster,
    responses=error_responses("invalid_request", "no_leader", "node_stopped"),
)
@validation.accepts(GET_CLUSTER)
async def get_cluster(request: Request, service: ServiceDep) -> Response:
    """Per-follower figures come from the leader's view; a follower fetches them from the
    leader and marks them unknown (`null`) when it cannot. With the request header
    `X-Raftlog-No-Forward: 1` a node answers with its own view."""
    GET_CLUSTER.query(request)
    view = await _view(request, service, NO_FORWARD_HEADER.lower() in request.headers)
    return schemas.json_response(200, view.to_dict())
