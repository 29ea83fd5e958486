"""api/forward.py: forwarding to the leader (a fake Forwarder and HttpForwarder over
in-process transports), loop prevention, and Location building."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from api.app import create_app
from api.forward import NO_FORWARD_HEADER, HttpForwarder, leader_location
from raftlog.errors import NoLeader
from raftlog.service.fake import FakeLogService
from tests.unit.api.support import TEST_LIMITS, assert_error, assert_node_headers

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

LEADER_URL = "http://leader:8001"


class RecordingForwarder:
    def __init__(self, response: Response | None = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str, str, bytes]] = []
        self.response = response
        self.error = error

    async def forward(self, request: Request, leader_url: str, body: bytes) -> Response:
        self.calls.append((request.method, leader_url, request.url.path, request.url.query, body))
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def _follower() -> FakeLogService:
    fake = FakeLogService(
        limits=TEST_LIMITS, node_id="n2", leader=False, leader_id="n1", leader_url_value=LEADER_URL
    )
    fake.last_contact_ms = 7
    return fake


@pytest.fixture
def follower() -> FakeLogService:
    return _follower()


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def test_append_forwarded_with_the_same_body(follower: FakeLogService) -> None:
    leader_answer = Response(
        b'{"log":"audit","offset":0}',
        201,
        {"X-Raftlog-Node": "n1", "X-Raftlog-Applied-Index": "9"},
        "application/json",
    )
    forwarder = RecordingForwarder(leader_answer)
    body = b'{"entries": [{"value": {"a": 1}}, {"value": null}]}'
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        r = await client.post("/v1/logs/audit/entries?ack=all&timeout=3", content=body)
    assert r.status_code == 201
    assert r.json() == {"log": "audit", "offset": 0}
    assert forwarder.calls == [
        ("POST", LEADER_URL, "/v1/logs/audit/entries", "ack=all&timeout=3", body)
    ]
    # The leader served it: its headers are kept; the rest are this node's.
    assert r.headers["X-Raftlog-Node"] == "n1"
    assert r.headers["X-Raftlog-Applied-Index"] == "9"
    assert r.headers["X-Raftlog-Leader"] == "n1"
    assert r.headers["X-Raftlog-Last-Contact-Ms"] == "7"
    assert follower.logs == {}


async def test_leader_read_forwarded_with_an_empty_body(follower: FakeLogService) -> None:
    forwarder = RecordingForwarder(Response(b'{"entries":[],"next_offset":0}', 200))
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        r = await client.get("/v1/logs/audit/entries?consistency=leader&from=0")
    assert r.status_code == 200
    assert_node_headers(r, "n2")
    assert forwarder.calls == [
        ("GET", LEADER_URL, "/v1/logs/audit/entries", "consistency=leader&from=0", b"")
    ]


async def test_already_forwarded_requests_are_not_forwarded_again(
    follower: FakeLogService,
) -> None:
    forwarder = RecordingForwarder(Response(b"{}", 200))
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        r = await client.post(
            "/v1/logs/audit/entries?ack=leader", json={"value": 1}, headers={NO_FORWARD_HEADER: "1"}
        )
    assert_error(r, 503, "no_leader", names="not to forward")
    assert forwarder.calls == []


async def test_forwarder_errors_keep_the_envelope(follower: FakeLogService) -> None:
    forwarder = RecordingForwarder(error=NoLeader("the leader is unreachable"))
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        r = await client.get("/v1/logs?consistency=leader")
    assert_error(r, 503, "no_leader", names="unreachable")
    assert_node_headers(r, "n2")


# -- HttpForwarder ------------------------------------------------------------------------


@pytest.fixture
async def leader_and_follower() -> AsyncIterator[
    tuple[FakeLogService, FakeLogService, httpx.AsyncClient]
]:
    leader = FakeLogService(limits=TEST_LIMITS, node_id="n1")
    follower = _follower()
    leader_client = _client(create_app(leader))
    forwarder = HttpForwarder(timeout=5.0, client=leader_client)
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        yield leader, follower, client
    await forwarder.aclose()


async def test_http_forwarder_end_to_end(
    leader_and_follower: tuple[FakeLogService, FakeLogService, httpx.AsyncClient],
) -> None:
    leader, follower, client = leader_and_follower
    r = await client.post("/v1/logs/audit/entries?ack=all", json={"value": "hello", "key": "k"})
    assert r.status_code == 201
    assert r.json()["offset"] == 0
    assert r.headers["X-Raftlog-Node"] == "n1"
    assert [e.value_json for e in leader.logs["audit"]] == [b'"hello"']
    assert follower.logs == {}
    # the leader's errors come back as they are
    r = await client.post("/v1/logs/audit/entries?ack=all&expected_offset=0", json={"value": 2})
    assert assert_error(r, 409, "offset_mismatch")["next_offset"] == 1
    assert r.headers["X-Raftlog-Node"] == "n1"
    r = await client.get("/v1/logs/audit/entries/0?consistency=leader")
    assert r.json()["value"] == "hello"


async def test_two_nodes_that_each_think_the_other_leads_do_not_loop() -> None:
    a = FakeLogService(node_id="a", leader=False, leader_url_value="http://b")
    b = FakeLogService(node_id="b", leader=False, leader_url_value="http://a")
    b_forwarder = RecordingForwarder(Response(b"{}", 200))  # b would forward back to a
    a_forwarder = HttpForwarder(client=_client(create_app(b, forwarder=b_forwarder)))
    async with _client(create_app(a, forwarder=a_forwarder)) as client:
        r = await client.post("/v1/logs/audit/entries?ack=all", json={"value": 1})
    assert_error(r, 503, "no_leader", names="not to forward")
    assert r.headers["X-Raftlog-Node"] == "b"
    assert b_forwarder.calls == []
    assert a.logs == {} and b.logs == {}
    await a_forwarder.aclose()


def _mock_forwarder(
    handler: httpx.MockTransport, timeout: float = 30.0
) -> tuple[HttpForwarder, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=handler)
    return HttpForwarder(timeout=timeout, client=client), client


async def test_http_forwarder_request_and_relayed_headers(follower: FakeLogService) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            429,
            content=b'{"error":{"code":"overloaded","message":"full"}}',
            headers={
                "Content-Type": "application/json",
                "Retry-After": "1",
                "X-Raftlog-Node": "n1",
                "X-Raftlog-Term": "5",
                "Set-Cookie": "a=b",
                "Server": "leader",
            },
        )

    forwarder, _ = _mock_forwarder(httpx.MockTransport(handle))
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        r = await client.post(
            "/v1/logs/audit/entries?ack=leader&timeout=100",
            content=b'{"value": 1}',
            headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer t",
                "X-Other": "dropped",
            },
        )
    assert_error(r, 429, "overloaded")
    assert r.headers["X-Raftlog-Node"] == "n1" and r.headers["X-Raftlog-Term"] == "5"
    assert "set-cookie" not in r.headers
    (sent,) = seen
    assert sent.method == "POST"
    assert str(sent.url) == LEADER_URL + "/v1/logs/audit/entries?ack=leader&timeout=100"
    assert sent.content == b'{"value": 1}'
    assert sent.headers[NO_FORWARD_HEADER] == "1"
    assert sent.headers["Authorization"] == "Bearer t"
    assert sent.headers["Content-Type"] == "application/json"
    assert "X-Other" not in sent.headers
    assert sent.extensions["timeout"]["read"] >= 105  # the request's own timeout + margin
    await forwarder.aclose()


@pytest.mark.parametrize(
    ("method", "path", "error", "status", "code"),
    [
        ("POST", "/v1/logs/a/entries?ack=all", httpx.ConnectError("refused"), 503, "no_leader"),
        ("POST", "/v1/logs/a/entries?ack=all", httpx.ReadTimeout("slow"), 504, "outcome_unknown"),
        (
            "GET",
            "/v1/logs/a/entries?consistency=leader",
            httpx.ReadTimeout("slow"),
            503,
            "no_leader",
        ),
        ("GET", "/v1/logs?consistency=leader", httpx.ConnectTimeout("slow"), 503, "no_leader"),
    ],
)
async def test_http_forwarder_transport_failures(
    follower: FakeLogService,
    method: str,
    path: str,
    error: httpx.HTTPError,
    status: int,
    code: str,
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise error

    forwarder, _ = _mock_forwarder(httpx.MockTransport(handle))
    async with _client(create_app(follower, forwarder=forwarder)) as client:
        r = await client.request(method, path, json={"value": 1} if method == "POST" else None)
    error_body = assert_error(r, status, code, names=LEADER_URL)
    assert error_body["leader_url"] == LEADER_URL
    assert_node_headers(r, "n2")
    await forwarder.aclose()


async def test_http_forwarder_creates_its_own_client() -> None:
    forwarder = HttpForwarder(timeout=1.0)
    await forwarder.aclose()  # nothing to close yet
    assert forwarder._http() is forwarder._http()
    await forwarder.aclose()


def _request(path: str, query: bytes) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": [],
            "scheme": "http",
            "server": ("t", 80),
            "root_path": "",
        }
    )


def test_leader_location() -> None:
    assert leader_location(_request("/v1/logs/a/entries/3", b""), "http://l:1/") == (
        "http://l:1/v1/logs/a/entries/3"
    )
    assert leader_location(_request("/v1/logs", b"after=a&limit=2"), "https://l") == (
        "https://l/v1/logs?after=a&limit=2"
    )


def test_create_app_keeps_the_forwarder() -> None:
    forwarder = RecordingForwarder()
    app = create_app(_follower(), forwarder=forwarder)
    assert app.state.forwarder is forwarder
