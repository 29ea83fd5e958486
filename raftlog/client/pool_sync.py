"""``SyncPool``: the client's keep-alive HTTP/1.1 connections for threads (see
``raftlog.client.http11`` for why not httpx, and for the failures it raises).

Blocking sockets; a lock guards the idle lists only, so ``Client`` stays thread-safe and
no I/O happens under the lock.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from typing import Any

import httpx

from raftlog.client.http11 import (
    IDLE_S,
    MAX_HEAD_BYTES,
    MAX_IDLE_PER_ORIGIN,
    Answer,
    Origin,
    body_length,
    chunk_size,
    keeps_alive,
    parse_head,
    request_bytes,
    target_of,
)

__all__ = ["SyncPool"]


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
            size = chunk_size(file.readline(MAX_HEAD_BYTES))
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
