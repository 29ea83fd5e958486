"""The client's own HTTP/1.1 connection pools for plain ``http://`` nodes: one for threads
(``SyncPool``), one for an event loop (``AsyncPool``).

Why not httpx here: under 32 concurrent requests httpx/httpcore spent most of the client's
CPU in its pool (every request scans every pooled connection, a ``select`` each, and a
failed ``import sniffio`` per request when it is not installed) and in building its URL,
request and header objects (see docs/PERFORMANCE.md, "The Python client"). On a 2-core
machine that CPU is taken from the node being measured. These pools do what the client
needs and no more: keep-alive connections per origin, the attempt's connect/read/write
timeouts, ``Content-Length`` and chunked bodies, no redirects, no cookies, no proxies, no
compression (``Accept-Encoding`` is not sent).

Failures are raised as the httpx exceptions the core already classifies (``wire``):
``ConnectError``/``ConnectTimeout`` when nothing was sent (connection refused, connect
timeout), ``WriteError``/``WriteTimeout``/``ReadError``/``ReadTimeout`` and
``RemoteProtocolError`` once the request may have left. A pooled connection is checked
before reuse (the server may have closed it while idle) and dropped after ``IDLE_S``
seconds idle, before the server's keep-alive timeout (uvicorn's default: 5 s).

``Answer`` is the response: the part of ``httpx.Response`` the core reads, with headers in
a plain dict keyed by lower-case name (the core looks headers up by lower-case name).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import socket
import threading
import time
import urllib.request
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httpx

__all__ = ["IDLE_S", "Answer", "AsyncPool", "SyncPool", "plain_http", "proxy_configured"]

IDLE_S = 4.0  # a pooled connection idle longer than this is closed, not reused
MAX_IDLE_PER_ORIGIN = 256
MAX_HEAD_BYTES = 64 * 1024

Origin = tuple[str, int]


class Answer:
    """One HTTP answer, read completely. ``headers``: lower-case name -> value (a repeated
    header keeps its last value). ``url`` and ``request`` build httpx objects on demand
    (the core needs them only to follow a redirect or learn a scheme)."""

    __slots__ = ("_url", "content", "headers", "method", "reason_phrase", "status_code")

    def __init__(
        self,
        method: str,
        url: str,
        status_code: int,
        reason_phrase: str,
        headers: dict[str, str],
        content: bytes,
    ) -> None:
        self.method = method
        self._url = url
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    @property
    def url(self) -> httpx.URL:
        return httpx.URL(self._url)

    @property
    def request(self) -> httpx.Request:
        return httpx.Request(self.method, self._url)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content.decode("utf-8"))


def proxy_configured() -> bool:
    """True when the environment names an HTTP proxy (``HTTP_PROXY``, ``ALL_PROXY``...): the
    client then leaves every request to httpx, which honours it."""
    proxies = urllib.request.getproxies()
    return "http" in proxies or "all" in proxies


def plain_http(url: str | httpx.URL) -> bool:
    """True for an ``http://`` URL (the pools here serve no TLS)."""
    return str(url).startswith("http://")


# -- request bytes and response heads (pure) --------------------------------------------------


_ORIGINS: dict[str, Origin] = {}  # "host:port" -> (host, port); bounded by _MAX_ORIGINS
_MAX_ORIGINS = 1024
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~-]*")  # a query value that needs no escaping


def _origin(netloc: str) -> Origin:
    origin = _ORIGINS.get(netloc)
    if origin is None:
        parts = urlsplit(f"http://{netloc}")
        if not parts.hostname:
            raise httpx.InvalidURL(f"no host in {netloc!r}")
        try:
            origin = (parts.hostname, parts.port or 80)
        except ValueError as exc:  # a bad port
            raise httpx.InvalidURL(f"bad port in {netloc!r}") from exc
        if len(_ORIGINS) < _MAX_ORIGINS:
            _ORIGINS[netloc] = origin
    return origin


def _escape(text: str) -> str:
    return text if _PLAIN_VALUE.fullmatch(text) else quote(text, safe="")


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{_escape(name)}={_escape(value)}" for name, value in params.items())


def target_of(url: str, params: dict[str, str] | None) -> tuple[Origin, str, str, str]:
    """``(host, port)``, the ``Host`` header, the request target (path and query) and the
    full URL, for an ``http://`` URL and extra query ``params``."""
    if not url.startswith("http://"):
        raise httpx.UnsupportedProtocol(f"not a plain http URL: {url!r}")
    rest = url[7:]
    cut = len(rest)
    for mark in ("/", "?", "#"):
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    netloc, target = rest[:cut], rest[cut:].partition("#")[0]
    if not netloc or "@" in netloc:
        raise httpx.InvalidURL(f"not a plain http://host:port URL: {url!r}")
    origin = _origin(netloc)
    if not target.startswith("/"):
        target = "/" + target
    if params:
        target = f"{target}{'&' if '?' in target else '?'}{_query(params)}"
    return origin, netloc, target, f"http://{netloc}{target}"


def request_bytes(
    method: str,
    netloc: str,
    target: str,
    headers: dict[str, str],
    body: bytes | None,
) -> bytes:
    fields = [f"{name}: {value}" for name, value in headers.items()]
    if any("\r" in line or "\n" in line for line in fields):
        raise httpx.LocalProtocolError("a header name or value contains CR or LF")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        fields.append(f"Content-Length: {len(body or b'')}")
    text = "\r\n".join([f"{method} {target} HTTP/1.1", f"Host: {netloc}", *fields])
    try:
        head = (text + "\r\n\r\n").encode("ascii")
    except UnicodeEncodeError as exc:
        raise httpx.LocalProtocolError(f"a header is not ASCII: {exc}") from exc
    return head + body if body else head


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """The status, reason and headers of a response head (ending with a blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, status_reason = lines[0].partition(" ")
    code, _, reason = status_reason.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise httpx.RemoteProtocolError(f"malformed header line {line!r}")
            headers[name.strip().lower()] = value.strip()
    return int(code), reason, headers


def body_length(method: str, status: int, headers: dict[str, str]) -> int | None:
    """The body's length from the head: a number, -1 for chunked, None for until EOF."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return -1
    length = headers.get("content-length")
    if length is None:
        return None
    try:
        value = int(length)
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"bad Content-Length {length!r}") from exc
    if value < 0:
        raise httpx.RemoteProtocolError(f"bad Content-Length {length!r}")
    return value


def keeps_alive(headers: dict[str, str], length: int | None) -> bool:
    return length is not None and "close" not in headers.get("connection", "").lower()


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"bad chunk size line {line!r}") from exc


# -- asyncio ------------------------------------------------------------------------------------


class _AsyncConn(asyncio.Protocol):
    """One connection as an asyncio protocol: ``exchange`` writes a request and awaits its
    response, parsed as bytes arrive (``data_received``), with no stream layer between.
    Used by one request at a time (the pool hands it out exclusively)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self._closed = False
        self._last_data = 0.0
        self._read_timeout: float | None = None
        self._method = "GET"
        self._url = ""
        self._head: tuple[int, str, dict[str, str]] | None = None
        self._length: int | None = 0
        self._chunks: list[bytes] = []
        self.idle_since = 0.0

    # protocol callbacks (event loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass, hence no check).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._last_data = self._loop.time()
        if self._waiter is not None:
            self._advance(eof=False)

    def eof_received(self) -> bool:
        self._closed = True
        if self._waiter is not None:
            self._advance(eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            if exc is None:
                self._advance(eof=True)
            else:
                self._fail(httpx.ReadError(str(exc) or type(exc).__name__))

    # the pool's side

    def usable(self, now: float) -> bool:
        transport = self._transport
        return (
            not self._closed
            and transport is not None
            and self._loop is asyncio.get_running_loop()  # not left over from another loop
            and not transport.is_closing()
            and not self._buffer
            and now - self.idle_since < IDLE_S
        )

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    async def exchange(
        self, method: str, url: str, data: bytes, timeout: httpx.Timeout
    ) -> tuple[Answer, bool]:
        """Send ``data``, await the whole response; ``ReadTimeout`` when no byte came for
        ``timeout.read`` seconds. On any failure the connection is closed by the caller."""
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self._method, self._url = method, url
        self._head, self._length, self._chunks = None, 0, []
        self._read_timeout = timeout.read
        waiter: asyncio.Future[tuple[Answer, bool]] = self._loop.create_future()
        self._waiter = waiter
        transport.write(data)
        self._last_data = self._loop.time()
        timer = None
        if timeout.read is not None:
            timer = self._loop.call_at(self._last_data + timeout.read, self._check_timeout)
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _check_timeout(self) -> None:
        waiter, limit = self._waiter, self._read_timeout
        if waiter is None or waiter.done() or limit is None:
            return
        due = self._last_data + limit
        if self._loop.time() < due:  # bytes came meanwhile: the read timeout restarts
            self._loop.call_at(due, self._check_timeout)
            return
        self._fail(httpx.ReadTimeout("read timed out"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _advance(self, *, eof: bool) -> None:
        """Parse what arrived; settle the waiter once the response is complete."""
        try:
            result = self._parse(eof)
        except httpx.HTTPError as exc:
            self._fail(exc)
            return
        if result is not None and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(result)

    def _parse(self, eof: bool) -> tuple[Answer, bool] | None:
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("response head too large")
                if eof:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a response"
                    )
                return None
            self._head = parse_head(bytes(buffer[: end + 4]))
            del buffer[: end + 4]
            self._length = body_length(self._method, self._head[0], self._head[2])
        status, reason, headers = self._head
        length = self._length
        if length is None:  # until the server closes
            if not eof:
                return None
            content = bytes(buffer)
            buffer.clear()
        elif length >= 0:
            if len(buffer) < length:
                if eof:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a complete response"
                    )
                return None
            content = bytes(buffer[:length])
            del buffer[:length]
        else:
            body = self._parse_chunks(eof)
            if body is None:
                return None
            content = body
        answer = Answer(self._method, self._url, status, reason, headers, content)
        return answer, keeps_alive(headers, length) and not eof

    def _parse_chunks(self, eof: bool) -> bytes | None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = _chunk_size(bytes(buffer[:line_end]))
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                    del buffer[: line_end + 4]
                elif trailer_end >= 0:
                    del buffer[: trailer_end + 4]
                else:
                    break
                return b"".join(self._chunks)
            start = line_end + 2
            if len(buffer) < start + size + 2:
                break
            self._chunks.append(bytes(buffer[start : start + size]))
            del buffer[: start + size + 2]
        if eof:
            raise httpx.RemoteProtocolError("server disconnected inside a chunked body")
        return None


class AsyncPool:
    """Keep-alive connections per origin for one event loop (not thread-safe: use it from
    the loop that created its connections). ``request`` awaits one exchange; a task
    cancelled mid-way closes its connection (it is never reused half-read)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self._idle: dict[Origin, collections.deque[_AsyncConn]] = {}
        self._closed = False

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> Answer:
        origin, netloc, target, full = target_of(url, params)
        data = request_bytes(method, netloc, target, {**self._headers, **headers}, body)
        conn = await self._checkout(origin, timeout)
        done = False
        try:
            answer, reusable = await conn.exchange(method, full, data, timeout)
            done = True
        finally:
            if not done:
                conn.close()
        if reusable and not self._closed:
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(origin, collections.deque())
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(conn)
                return answer
        conn.close()
        return answer

    async def _checkout(self, origin: Origin, timeout: httpx.Timeout) -> _AsyncConn:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be closed
            if conn.usable(now):
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout.connect):
                _, conn = await loop.create_connection(
                    lambda: _AsyncConn(loop), origin[0], origin[1]
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


# -- threads --------------------------------------------------------------------------------


class _SyncConn:
    __slots__ = ("file", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb", buffering=65536)
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        if now - self.idle_since >= IDLE_S:
            return False
        # An idle connection has something to read only when the server closed it (or
        # misbehaved): peek without blocking (no select(), which fails on fds >= 1024).
        # The exchange sets the socket's timeouts again.
        try:
            self.sock.settimeout(0.0)
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing to read: still open
        except OSError:
            return False
        return False  # EOF or stray bytes

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class SyncPool:
    """Keep-alive connections per origin, shared by threads (a lock guards the idle lists;
    no I/O is done under it). ``request`` blocks for one exchange, within the attempt's
    timeouts."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self._idle: dict[Origin, collections.deque[_SyncConn]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> Answer:
        origin, netloc, target, full = target_of(url, params)
        data = request_bytes(method, netloc, target, {**self._headers, **headers}, body)
        conn = self._checkout(origin, timeout)
        try:
            answer, reusable = self._exchange(conn, method, full, data, timeout)
        except BaseException:
            conn.close()
            raise
        if reusable:
            conn.idle_since = time.monotonic()
            with self._lock:
                idle = self._idle.setdefault(origin, collections.deque())
                if not self._closed and len(idle) < MAX_IDLE_PER_ORIGIN:
                    idle.append(conn)
                    return answer
        conn.close()
        return answer

    def _checkout(self, origin: Origin, timeout: httpx.Timeout) -> _SyncConn:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if conn.usable(now):
                return conn
            conn.close()
        try:
            sock = socket.create_connection(origin, timeout=timeout.connect)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _SyncConn(sock)

    def _exchange(
        self, conn: _SyncConn, method: str, url: str, data: bytes, timeout: httpx.Timeout
    ) -> tuple[Answer, bool]:
        sock = conn.sock
        try:
            sock.settimeout(timeout.write)
            sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout("write timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        file = conn.file
        try:
            sock.settimeout(timeout.read)
            lines: list[bytes] = []
            size = 0
            while True:
                line = file.readline(MAX_HEAD_BYTES)
                if not line:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a response"
                    )
                size += len(line)
                if size > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("response head too large")
                if line == b"\r\n":
                    break
                lines.append(line)
            status, reason, headers = parse_head(b"".join(lines))
            length = body_length(method, status, headers)
            if length is None:
                content = file.read()
            elif length >= 0:
                content = file.read(length) if length else b""
                if len(content) != length:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a complete response"
                    )
            else:
                content = self._chunked(file)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("read timed out") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        return Answer(method, url, status, reason, headers, content), keeps_alive(headers, length)

    @staticmethod
    def _chunked(file: Any) -> bytes:
        parts: list[bytes] = []
        while True:
            size = _chunk_size(file.readline(MAX_HEAD_BYTES))
            if size == 0:
                while file.readline(MAX_HEAD_BYTES) not in (b"\r\n", b""):
                    pass  # trailers
                return b"".join(parts)
            chunk = file.read(size + 2)
            if len(chunk) != size + 2:
                raise httpx.RemoteProtocolError("server disconnected inside a chunked body")
            parts.append(chunk[:size])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
