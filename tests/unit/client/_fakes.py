"""Fake raftlog nodes for client tests: httpx.MockTransport handlers, no sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

URLS = ["http://n1:8001", "http://n2:8002", "http://n3:8003"]

Handler = Callable[[httpx.Request], httpx.Response]


def headers(node: str = "n1", leader: str | None = "n1", **extra: str) -> dict[str, str]:
    out = {
        "X-Raftlog-Node": node,
        "X-Raftlog-Cluster": "c0ffee",
        "X-Raftlog-Term": "3",
        "X-Raftlog-Applied-Index": "1207",
        "X-Raftlog-Leader": leader or "",
        "X-Raftlog-Last-Contact-Ms": "0" if node == leader else "12",
    }
    out.update(extra)
    return out


def ok(body: Any, status: int = 200, node: str = "n1", leader: str | None = "n1") -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers(node, leader))


def error(
    status: int,
    code: str,
    message: str = "something went wrong",
    *,
    node: str = "n1",
    leader: str | None = "n1",
    extra_headers: dict[str, str] | None = None,
    **details: Any,
) -> httpx.Response:
    body = {"error": {"code": code, "message": message, **details}}
    return httpx.Response(status, json=body, headers=headers(node, leader, **(extra_headers or {})))


def entry(offset: int, value: Any = None, key: str | None = None) -> dict[str, Any]:
    return {
        "offset": offset,
        "value": f"v{offset}" if value is None else value,
        "key": key,
        "timestamp": 1732245600000 + offset,
        "index": 100 + offset,
        "term": 3,
    }


def appended(offset: int = 0, count: int = 1, log: str = "orders") -> dict[str, Any]:
    return {
        "log": log,
        "offset": offset,
        "last_offset": offset + count - 1,
        "count": count,
        "index": 1207,
        "term": 3,
    }


def cluster_body(leader: str | None = "n1") -> dict[str, Any]:
    nodes = []
    for i in (1, 2, 3):
        nid = f"n{i}"
        nodes.append(
            {
                "id": nid,
                "raft": f"n{i}:700{i}",
                "http": f"n{i}:800{i}",
                "role": "leader" if nid == leader else "follower",
                "applied_index": 1210 if nid == leader else None,
                "match_index": 1210 - (i - 1),
                "lag": i - 1,
                "last_contact_ms": 0 if nid == leader else 10 * i,
                "reachable": i != 3,
            }
        )
    return {
        "cluster": "demo",
        "cluster_id": "c0ffee",
        "leader": leader,
        "term": 3,
        "commit_index": 1210,
        "nodes": nodes,
    }


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


class Recorder:
    """A MockTransport handler that records every request, dispatching on the host."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


class Sleeps:
    """Stands in for time.sleep: records the delays, sleeps for none of them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)


def connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


class FakeClock:
    """Stands in for time.monotonic in the client's node bookkeeping; moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ClockSleeps(Sleeps):
    """Records the delays and moves a FakeClock on by each (no real sleep)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        self.clock.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self(seconds)


def raising(exc_type: type[httpx.TransportError], message: str = "boom") -> Handler:
    """A handler that fails every request with ``exc_type`` (an httpx transport error)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return handler
