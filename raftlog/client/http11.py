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
import select
import socket
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

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
        return json.loads(self.content)


def proxy_configured() -> bool:
    """True when the environment names an HTTP proxy (``HTTP_PROXY``, ``ALL_PROXY``...): the
    client then leaves every request to httpx, which honours it."""
    proxies = urllib.request.getproxies()
    return "http" in proxies or "all" in proxies


def plain_http(url: str | httpx.URL) -> bool:
    """True for an ``http://`` URL (the pools here serve no TLS)."""
    return str(url).startswith("http://")


# -- request bytes and response heads (pure) --------------------------------------------------


def target_of(url: str, params: dict[str, str] | None) -> tuple[Origin, str, str, str]:
    """``(host, port)``, the ``Host`` header, the request target (path and query) and the
    full URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"not a plain http URL: {url!r}")
    query = parts.query
    if params:
        extra = urlencode(params)
        query = f"{query}&{extra}" if query else extra
    path = parts.path or "/"
    target = f"{path}?{query}" if query else path
    port = parts.port or 80
    full = f"http://{parts.netloc}{target}"
    return (parts.hostname, port), parts.netloc, target, full


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
    try:
        text = head.decode("latin-1")
        status_line, _, rest = text.partition("\r\n")
        version, _, status_reason = status_line.partition(" ")
        code, _, reason = status_reason.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(status_line)
        status = int(code)
        headers: dict[str, str] = {}
        for line in rest.split("\r\n"):
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(line)
                headers[name.strip().lower()] = value.strip()
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"malformed response head: {exc}") from exc
    return status, reason, headers


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


class _AsyncConn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (
            now - self.idle_since < IDLE_S
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


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
            answer, reusable = await self._exchange(conn, method, full, data, timeout)
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
        try:
            async with asyncio.timeout(timeout.connect):
                reader, writer = await asyncio.open_connection(origin[0], origin[1])
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _AsyncConn(reader, writer)

    async def _exchange(
        self, conn: _AsyncConn, method: str, url: str, data: bytes, timeout: httpx.Timeout
    ) -> tuple[Answer, bool]:
        try:
            conn.writer.write(data)
            async with asyncio.timeout(timeout.write):
                await conn.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("write timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        reader = conn.reader
        try:
            async with asyncio.timeout(timeout.read) as limit:
                head = await reader.readuntil(b"\r\n\r\n")
                status, reason, headers = parse_head(head)
                length = body_length(method, status, headers)
                if timeout.read is not None:  # the body gets its own read timeout
                    limit.reschedule(asyncio.get_running_loop().time() + timeout.read)
                if length is None:
                    content = await reader.read()
                elif length >= 0:
                    content = await reader.readexactly(length) if length else b""
                else:
                    content = await self._chunked(reader)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("read timed out") from exc
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                "server disconnected without sending a complete response"
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("response head too large") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        answer = Answer(method, url, status, reason, headers, content)
        return answer, keeps_alive(headers, length)

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = _chunk_size(await reader.readuntil(b"\r\n"))
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

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
        try:  # an idle connection is readable only when the server closed it (or misbehaved)
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

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
