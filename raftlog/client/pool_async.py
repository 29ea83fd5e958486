"""``AsyncPool``: the client's keep-alive HTTP/1.1 connections for one event loop (see
``raftlog.client.http11`` for why not httpx, and for the failures it raises).

Each connection is an ``asyncio.Protocol`` that parses the answer as bytes arrive: no
stream layer, one timer per exchange. Works on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import cast

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

__all__ = ["AsyncPool"]


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
            size = chunk_size(bytes(buffer[:line_end]))
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
