"""The client's own HTTP/1.1 pools (``raftlog.client.http11``): request bytes, response
parsing, keep-alive reuse, connections the server closed, timeouts, and the httpx
exceptions each failure is raised as (which the core classifies).

The pure parts without sockets; the pools against a scripted server on 127.0.0.1 in this
process (a thread per connection, closed at the end of each test).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from raftlog.client import AppendResult, Client, ConnectionFailed, OutcomeUnknown
from raftlog.client.http11 import (
    body_length,
    parse_head,
    request_bytes,
    target_of,
)
from raftlog.client.pool_async import AsyncPool
from raftlog.client.pool_sync import SyncPool

pytestmark = pytest.mark.unit

TIMEOUT = httpx.Timeout(connect=5.0, read=5.0, write=5.0, pool=5.0)


def response(
    body: bytes = b'{"ok":true}', status: str = "200 OK", extra: str = "", chunked: bool = False
) -> bytes:
    if chunked:
        half = len(body) // 2
        chunks = [body[:half], body[half:]]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
        head = f"HTTP/1.1 {status}\r\ntransfer-encoding: chunked\r\n{extra}\r\n"
        return head.encode() + payload
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


@dataclass
class Reply:
    data: bytes | None  # None: send nothing (the client times out)
    close: bool = False  # close the connection after sending
    pieces: int = 1  # sent in this many parts...
    gap_s: float = 0.0  # ...this long apart


@dataclass
class ScriptServer:
    """Answers each request with the next scripted ``Reply``; records raw requests and how
    many connections were accepted."""

    replies: list[Reply]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        file = conn.makefile("rb")
        with contextlib.closing(conn), contextlib.closing(file):
            while not self._stop.is_set():
                try:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = file.readline()
                        if not line:
                            return
                        head += line
                except TimeoutError:
                    if head:
                        return
                    continue
                except OSError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + (file.read(length) if length else b""))
                reply = self.replies.pop(0)
                if reply.data is None:
                    self._stop.wait(10)
                    return
                step = max(1, -(-len(reply.data) // reply.pieces))
                for start in range(0, len(reply.data), step):
                    if start:
                        self._stop.wait(reply.gap_s)
                    conn.sendall(reply.data[start : start + step])
                if reply.close:
                    conn.shutdown(socket.SHUT_RDWR)
                    self.closed.set()
                    return

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def serving(*replies: Reply) -> Iterator[ScriptServer]:
    server = ScriptServer(list(replies))
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- pure parts ---------------------------------------------------------------------------------


def test_target_merges_params_into_the_query() -> None:
    origin, netloc, target, full = target_of(
        "http://127.0.0.1:8001/v1/logs/a%2Fb/entries?x=1", {"ack": "quorum", "timeout": "10"}
    )
    assert origin == ("127.0.0.1", 8001) and netloc == "127.0.0.1:8001"
    assert target == "/v1/logs/a%2Fb/entries?x=1&ack=quorum&timeout=10"
    assert full == "http://127.0.0.1:8001" + target
    _, _, target, _ = target_of("http://h:1", {"after": "a b&c/d", "limit": "5"})
    assert target == "/?after=a%20b%26c%2Fd&limit=5"
    with pytest.raises(httpx.UnsupportedProtocol):
        target_of("https://127.0.0.1:8001/", None)
    with pytest.raises(httpx.InvalidURL):
        target_of("http://127.0.0.1:notaport/", None)


def test_request_bytes() -> None:
    data = request_bytes("POST", "h:1", "/p?q=1", {"Content-Type": "application/json"}, b"{}")
    assert data == (
        b"POST /p?q=1 HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert b"Content-Length" not in request_bytes("GET", "h:1", "/", {}, None)
    with pytest.raises(httpx.LocalProtocolError):  # header injection
        request_bytes("GET", "h:1", "/", {"Idempotency-Key": "a\r\nX-Evil: 1"}, None)
    with pytest.raises(httpx.LocalProtocolError):
        request_bytes("GET", "h:1", "/", {"Idempotency-Key": "clé"}, None)


def test_parse_head_and_body_length() -> None:
    status, reason, headers = parse_head(
        b"HTTP/1.1 503 Service Unavailable\r\nX-Raftlog-Leader: n2\r\nContent-Length: 7\r\n\r\n"
    )
    assert (status, reason, headers["x-raftlog-leader"]) == (503, "Service Unavailable", "n2")
    assert body_length("GET", status, headers) == 7
    assert body_length("GET", 200, {"transfer-encoding": "chunked"}) == -1
    assert body_length("GET", 204, {}) == 0
    assert body_length("GET", 200, {}) is None  # until the server closes
    for bad in (b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nnocolon\r\n"):
        with pytest.raises(httpx.RemoteProtocolError):
            parse_head(bad)
    with pytest.raises(httpx.RemoteProtocolError):
        body_length("GET", 200, {"content-length": "-1"})


# -- the pools against a scripted server ----------------------------------------------------


def test_sync_pool_reuses_a_connection_and_reads_both_body_framings() -> None:
    with serving(Reply(response(b'{"a":1}')), Reply(response(b'{"b":22}', chunked=True))) as srv:
        pool = SyncPool({"User-Agent": "t"})
        first = pool.request("GET", srv.url + "/x", {"q": "1"}, None, {}, TIMEOUT)
        second = pool.request("POST", srv.url + "/y", None, b"{}", {}, TIMEOUT)
        pool.close()
    assert (first.status_code, first.json()) == (200, {"a": 1})
    assert second.json() == {"b": 22} and second.headers["transfer-encoding"] == "chunked"
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"GET /x?q=1 HTTP/1.1\r\n")
    assert b"User-Agent: t\r\n" in srv.requests[0]
    assert srv.requests[1].endswith(b"Content-Length: 2\r\n\r\n{}")
    assert str(first.url) == srv.url + "/x?q=1" and first.request.method == "GET"


def test_sync_pool_drops_a_connection_the_server_closed_while_idle() -> None:
    with serving(Reply(response(), close=True), Reply(response(b'{"n":2}'))) as srv:
        pool = SyncPool({})
        pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        assert srv.closed.wait(5)
        assert pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT).json() == {"n": 2}
        pool.close()
    assert srv.connections == 2


def test_connection_close_is_not_pooled() -> None:
    with serving(Reply(response(extra="connection: close\r\n")), Reply(response())) as srv:
        pool = SyncPool({})
        pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        pool.close()
    assert srv.connections == 2


def test_failures_are_the_httpx_exceptions_the_core_classifies() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
    pool = SyncPool({})
    with pytest.raises(httpx.ConnectError):  # nothing listens: never sent
        pool.request("GET", f"http://127.0.0.1:{port}/", None, None, {}, TIMEOUT)
    short = httpx.Timeout(connect=5.0, read=0.2, write=5.0, pool=5.0)
    with serving(Reply(None)) as srv, pytest.raises(httpx.ReadTimeout):
        pool.request("GET", srv.url + "/", None, None, {}, short)
    with serving(Reply(b"", close=True)) as srv, pytest.raises(httpx.RemoteProtocolError):
        pool.request("POST", srv.url + "/", None, b"{}", {}, TIMEOUT)
    cut_short = Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", close=True)
    with serving(cut_short) as srv, pytest.raises(httpx.RemoteProtocolError):
        pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
    pool.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_async_pool_reuse_idle_close_and_timeout(loop: str) -> None:
    async def main(srv: ScriptServer) -> None:
        pool = AsyncPool({})
        first = await pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        second = await pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        assert (first.json(), second.json()) == ({"a": 1}, {"b": 2})
        assert srv.connections == 1
        # the server closes that connection while it is idle: the next request reconnects
        deadline = time.monotonic() + 5
        while not srv.closed.is_set():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        idle = pool._idle.get(("127.0.0.1", srv.port), [])
        while any(c.usable(time.monotonic()) for c in idle):  # the loop reads the EOF
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        third = await pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        assert third.json() == {"c": 3} and srv.connections == 2
        short = httpx.Timeout(connect=5.0, read=0.2, write=5.0, pool=5.0)
        with pytest.raises(httpx.ReadTimeout):
            await pool.request("GET", srv.url + "/", None, None, {}, short)
        await pool.aclose()

    replies = [
        Reply(response(b'{"a":1}')),
        Reply(response(b'{"b":2}', chunked=True), close=True),
        Reply(response(b'{"c":3}')),
        Reply(None),
    ]
    runner = asyncio.run if loop == "asyncio" else pytest.importorskip("uvloop").run
    with serving(*replies) as srv:
        runner(main(srv))


def test_client_uses_the_pool_for_plain_http_and_classifies_its_failures() -> None:
    body = b'{"log":"orders","offset":0,"last_offset":0,"count":1,"index":7,"term":2}'
    with serving(Reply(response(body, "201 Created")), Reply(b"", close=True)) as srv:
        with Client([srv.url], token="s3cret", retries=0) as client:
            assert client._pool is not None
            result = client.append("orders", {"id": 1}, idempotency_key="k1")
            assert isinstance(result, AppendResult) and result.index == 7
            with pytest.raises(OutcomeUnknown):  # the connection broke after the write left
                client.append("orders", {"id": 2})
        request = srv.requests[0]
        assert request.startswith(b"POST /v1/logs/orders/entries?ack=quorum&timeout=10 ")
        for header in (b"Authorization: Bearer s3cret", b"Idempotency-Key: k1"):
            assert header in request
        assert request.endswith(b'\r\n\r\n{"value":{"id":1}}')
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
    with Client([f"http://127.0.0.1:{port}"], retries=0) as client:
        with pytest.raises(ConnectionFailed) as info:
            client.append("orders", 1)
        assert info.value.definitely_not_applied


def test_a_given_transport_or_a_proxy_leaves_requests_to_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with Client(["http://127.0.0.1:1"], transport=transport) as client:
        assert client._pool is None
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    with Client(["http://127.0.0.1:1"]) as client:
        assert client._pool is None


def test_async_pool_parses_responses_that_arrive_in_pieces() -> None:
    trailers = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'3\r\n{"a\r\n5;ext=1\r\n":12}\r\n0\r\nx-trailer: 1\r\n\r\n'
    )
    replies = [
        Reply(response(b'{"first":1}'), pieces=7, gap_s=0.01),
        Reply(trailers, pieces=9, gap_s=0.01),
        Reply(response(b'{"last":3}', extra="connection: close\r\n")),
    ]

    async def main(srv: ScriptServer) -> None:
        pool = AsyncPool({})
        answers = [
            await pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT) for _ in range(3)
        ]
        assert [a.json() for a in answers] == [{"first": 1}, {"a": 12}, {"last": 3}]
        await pool.aclose()

    with serving(*replies) as srv:
        asyncio.run(main(srv))
    assert srv.connections == 1


def test_the_async_read_timeout_restarts_whenever_bytes_arrive() -> None:
    # 4 parts 0.8 s apart: 2.4 s in all, each gap well inside the 2 s read timeout.
    slow = Reply(response(b'{"slow":true}'), pieces=4, gap_s=0.8)
    timeout = httpx.Timeout(connect=5.0, read=2.0, write=5.0, pool=5.0)

    async def main(srv: ScriptServer) -> None:
        pool = AsyncPool({})
        started = time.monotonic()
        answer = await pool.request("GET", srv.url + "/", None, None, {}, timeout)
        assert answer.json() == {"slow": True} and time.monotonic() - started > 2.0
        await pool.aclose()

    with serving(slow) as srv:
        asyncio.run(main(srv))


def test_an_async_request_cancelled_mid_way_closes_its_connection() -> None:
    async def main(srv: ScriptServer) -> None:
        pool = AsyncPool({})
        task = asyncio.create_task(pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT))
        deadline = time.monotonic() + 5
        while not srv.requests:  # the request reached the server, which will never answer
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not pool._idle.get(("127.0.0.1", srv.port))
        answer = await pool.request("GET", srv.url + "/", None, None, {}, TIMEOUT)
        assert answer.json() == {"ok": True} and srv.connections == 2
        await pool.aclose()

    with serving(Reply(None), Reply(response())) as srv:
        asyncio.run(main(srv))


def test_a_redirect_is_followed_through_the_pool_with_the_parameters() -> None:
    moved = response(b"", "307 Temporary Redirect", extra="location: /v2/elsewhere\r\n")
    body = b'{"log":"orders","offset":3,"last_offset":3,"count":1,"index":9,"term":2}'
    with serving(Reply(moved), Reply(response(body, "201 Created"))) as srv:
        with Client([srv.url], retries=0) as client:
            assert client.append("orders", 1).offset == 3
        first, second = srv.requests
    assert first.startswith(b"POST /v1/logs/orders/entries?ack=quorum&timeout=10 ")
    assert second.startswith(b"POST /v2/elsewhere?ack=quorum&timeout=10 HTTP/1.1\r\n")
    assert second.endswith(b'\r\n\r\n{"value":1}') and srv.connections == 1
