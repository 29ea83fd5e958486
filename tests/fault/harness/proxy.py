"""A userspace TCP fault-injection proxy for fault tests.

Every directed Raft link ``A->B`` (node A dials node B) goes through one
:class:`LinkProxy`: a listener on ``127.0.0.1:<free port>`` that forwards each
accepted connection to B's real address. A :class:`ProxyNet` owns one
background thread running an asyncio loop that serves all its links, so plain
synchronous pytest code can inject faults while real node processes talk::

    with ProxyNet() as net:
        link = net.add("n1->n2", "127.0.0.1", n2_raft_port)
        ...  # point n1 at 127.0.0.1:link.listen_port for n2
        net.partition([{"n1"}, {"n2", "n3"}])
        net.heal_all()

Faults and how they look on the wire:

* ``cut(direction)`` stops *reading* from the source socket of that direction,
  so TCP back-pressure makes the link look like a silent drop: no RST, no FIN,
  the sender's writes eventually block. Bytes already read are held and are
  delivered in order, exactly once, after the direction is restored. A FIN or
  RST from a side whose outgoing direction is cut is held the same way.
* ``delay(ms, jitter_ms)`` adds latency to every chunk in both directions. Each
  chunk is time-stamped when read and written no earlier than
  ``read time + ms +/- jitter``; one pump per direction writes chunks strictly
  in order, so jitter never reorders bytes.
* ``reset()`` aborts every current connection on both sides with
  ``SO_LINGER 0`` (an RST); the listener keeps accepting.
* ``corrupt(direction, corrupter)`` damages PySyncObj messages in one direction: the
  proxy cuts the byte stream into PySyncObj frames (``i32 length | zlib(pickle)``) and
  hands each to a :class:`FrameCorrupter`, which flips one byte in a large frame that
  carries a given byte string. PySyncObj's framing checks nothing but zlib's Adler-32,
  so a byte flipped in the compressed bytes ends the connection (the receiver drops
  it); a byte flipped *before* compression (``recompress=True``: decompress, flip,
  recompress, new length) is damage no layer below the application can see, as a bad
  memory cell or a buggy sender would cause. Installing it resets the link's
  connections, so parsing starts at a frame boundary.

Everything is bounded: reads are at most 64 KiB (``CHUNK_SIZE``), a direction
stops reading while it holds ``MAX_HELD`` (1 MiB) of unwritten bytes, and a
pump waits while the destination's write buffer is over ``WRITE_HIGH_WATER``
(1 MiB). Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import enum
import logging
import random
import socket
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = [
    "CHUNK_SIZE",
    "MAX_HELD",
    "WRITE_HIGH_WATER",
    "Direction",
    "FrameCorrupter",
    "LinkProxy",
    "ProxyNet",
]

Direction = Literal["forward", "backward", "both"]
_Way = Literal["forward", "backward"]
_Role = Literal["client", "upstream"]

LOCALHOST = "127.0.0.1"
CHUNK_SIZE = 64 * 1024
MAX_HELD = 1024 * 1024
WRITE_HIGH_WATER = 1024 * 1024
CONTROL_TIMEOUT = 10.0
_DIRECTIONS: dict[str, tuple[_Way, ...]] = {
    "forward": ("forward",),
    "backward": ("backward",),
    "both": ("forward", "backward"),
}

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


class _Marker(enum.Enum):
    EOF = "eof"  # the source half-closed (FIN): write_eof() on the destination
    ABORT = "abort"  # the source failed (RST, error): abort the destination


_Item = tuple[float, float, bytes | _Marker]  # (read time, jitter factor, payload)


def _abort_with_rst(transport: asyncio.Transport | None) -> None:
    """Close ``transport`` at once; SO_LINGER 0 makes the kernel send an RST."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Side(asyncio.BufferedProtocol):
    """One socket of a proxied connection: the accepted dialer or the upstream."""

    def __init__(self, conn: _Conn, role: _Role) -> None:
        self.conn = conn
        self.role: _Role = role
        self.transport: asyncio.Transport | None = None
        self.eof = False  # the peer half-closed: reading is over for good
        self.closing = False  # we closed/aborted this side ourselves
        self.lost: asyncio.Future[None] = conn.loop.create_future()
        self._buf = bytearray(CHUNK_SIZE)
        self._writable: asyncio.Future[None] | None = None

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.lost.done() and not self.closing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.conn.side_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.conn.received(self, bytes(self._buf[:nbytes]))

    def eof_received(self) -> bool:
        self.eof = True
        self.conn.received(self, _Marker.EOF)
        return True  # keep the transport open: half-close is forwarded in order

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.conn.loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writers()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_writers()
        self.conn.side_lost(self, exc)

    async def wait_writable(self) -> None:
        while self._writable is not None and not self.lost.done():
            await asyncio.shield(self._writable)

    def _wake_writers(self) -> None:
        fut, self._writable = self._writable, None
        if fut is not None and not fut.done():
            fut.set_result(None)


class _Pipe:
    """One direction of one connection: held chunks plus the pump writing them."""

    def __init__(self, conn: _Conn, way: _Way) -> None:
        self.conn = conn
        self.way: _Way = way
        self.items: collections.deque[_Item] = collections.deque()
        self.held = 0  # bytes read from the source, not yet written
        self.dead = False  # the destination is gone: drop whatever arrives
        self.eof_sent = False
        self._have_items = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def src(self) -> _Side | None:
        return self.conn.client if self.way == "forward" else self.conn.upstream

    @property
    def dst(self) -> _Side | None:
        return self.conn.upstream if self.way == "forward" else self.conn.client

    def start(self) -> None:
        self.task = self.conn.loop.create_task(
            self._pump(), name=f"proxy {self.conn.link.name} {self.way}"
        )

    def push(self, payload: bytes | _Marker) -> None:
        if self.dead:
            return
        link = self.conn.link
        self.items.append((self.conn.loop.time(), link.rng.uniform(-1.0, 1.0), payload))
        if isinstance(payload, bytes):
            self.held += len(payload)
        self._have_items.set()
        self.update_reading()

    def kill(self) -> None:
        """The destination is gone: drop held data and anything that arrives later."""
        self.dead = True
        self.items.clear()
        self.held = 0
        self._have_items.set()
        self.update_reading()

    def update_reading(self) -> None:
        """Read from the source only while this direction flows and is not full."""
        src = self.src
        if src is None or src.transport is None or src.eof or not src.alive:
            return
        want = self.conn.link.is_open(self.way) and self.held < MAX_HELD
        if want and not src.transport.is_reading():
            src.transport.resume_reading()
        elif not want and src.transport.is_reading():
            src.transport.pause_reading()

    async def _pump(self) -> None:
        try:
            while not self.dead:
                if not self.items:
                    self._have_items.clear()
                    await self._have_items.wait()
                    continue
                dst = await self.conn.wait_dst(self.way)
                if dst is None or not dst.alive:
                    self.kill()
                    return
                await dst.wait_writable()
                await self._wait_due(self.items[0])
                if self.dead or not dst.alive:  # checked again: nothing awaits after this
                    self.kill()
                    return
                self._deliver(dst, self.items.popleft()[2])
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a harness bug must not hang the loop
            _log.exception("proxy pump %s %s failed", self.conn.link.name, self.way)
            self.conn.kill()

    async def _wait_due(self, item: _Item) -> None:
        """Wait until the direction flows and the chunk's delay has passed."""
        link = self.conn.link
        loop = self.conn.loop
        read_at, jitter, _ = item
        while not self.dead:
            changed = link.changed  # captured first: any later change sets it
            if not link.is_open(self.way):
                await changed.wait()
                continue
            wait = read_at + link.delay_for(jitter) - loop.time()
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def _deliver(self, dst: _Side, payload: bytes | _Marker) -> None:
        transport = dst.transport
        assert transport is not None
        link = self.conn.link
        if isinstance(payload, bytes):
            self.held -= len(payload)
            transport.write(payload)
            link.count_bytes(self.way, len(payload))
            self.update_reading()
        elif payload is _Marker.EOF:
            self.eof_sent = True
            if transport.can_write_eof():
                transport.write_eof()
            self.conn.eof_forwarded()
        else:
            self.conn.abort_side(dst)


class FrameCorrupter:
    """Flips one byte in up to ``times`` PySyncObj frames of one direction.

    A frame qualifies when its decompressed message is at least ``min_bytes`` long and
    contains ``needle`` (and ``require``, if given). With ``recompress`` the middle byte
    of the first ``needle`` in the decompressed message is XORed with ``mask`` and the
    frame rebuilt (a valid frame with damaged content); without it the middle byte of
    the compressed payload is flipped (zlib catches it: the receiver disconnects).
    Counters (``frames``, ``flipped``, ``notes``) are read by the test after the fact.
    """

    def __init__(
        self,
        needle: bytes,
        *,
        require: bytes = b"",
        min_bytes: int = 4096,
        times: int = 1,
        mask: int = 0x01,
        recompress: bool = True,
    ) -> None:
        self.needle = needle
        self.require = require
        self.min_bytes = min_bytes
        self.times = times
        self.mask = mask
        self.recompress = recompress
        self.frames = 0
        self.flipped = 0
        self.notes: list[str] = []

    def rewrite(self, payload: bytes) -> bytes:
        self.frames += 1
        if self.flipped >= self.times:
            return payload
        try:
            message = zlib.decompress(payload)
        except zlib.error:
            return payload  # encrypted or not PySyncObj: leave it alone
        if len(message) < self.min_bytes or (self.require and self.require not in message):
            return payload
        at = message.find(self.needle)
        if at < 0:
            return payload
        self.flipped += 1
        if not self.recompress:
            pos = len(payload) // 2
            self.notes.append(f"compressed byte {pos} of a {len(payload)}-byte frame")
            return payload[:pos] + bytes([payload[pos] ^ self.mask]) + payload[pos + 1 :]
        pos = at + len(self.needle) // 2
        self.notes.append(
            f"byte {pos} of a {len(message)}-byte message (inside {self.needle!r}), recompressed"
        )
        damaged = message[:pos] + bytes([message[pos] ^ self.mask]) + message[pos + 1 :]
        return zlib.compress(damaged, 3)


class _FrameStream:
    """Cuts one direction of one connection into PySyncObj frames for a FrameCorrupter."""

    _LEN = struct.Struct("<i")  # PySyncObj: struct.pack('i', len) on little-endian hosts

    def __init__(self, corrupter: FrameCorrupter) -> None:
        self.corrupter = corrupter
        self.buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        while len(self.buf) >= self._LEN.size:
            (length,) = self._LEN.unpack_from(self.buf)
            if length < 0:  # not a PySyncObj stream: pass everything on untouched
                out += self.buf
                self.buf.clear()
                break
            end = self._LEN.size + length
            if len(self.buf) < end:
                break
            frame = self.corrupter.rewrite(bytes(self.buf[self._LEN.size : end]))
            out += self._LEN.pack(len(frame)) + frame
            del self.buf[:end]
        return bytes(out)

    def flush(self) -> bytes:
        rest, self.buf = bytes(self.buf), bytearray()
        return rest


class _Conn:
    """One accepted connection and its upstream counterpart."""

    def __init__(self, link: LinkProxy) -> None:
        self.link = link
        self.corrupt_gen = link.corrupt_gen
        self._streams: dict[_Way, _FrameStream] = {}
        self.loop = link.net.loop
        self.client: _Side | None = None
        self.upstream: _Side | None = None
        self.forward = _Pipe(self, "forward")
        self.backward = _Pipe(self, "backward")
        self.done = False
        self._upstream_ready: asyncio.Future[_Side | None] = self.loop.create_future()
        self._connect_task: asyncio.Task[None] | None = None

    def pipe_from(self, side: _Side) -> _Pipe:
        return self.forward if side.role == "client" else self.backward

    def pipe_to(self, side: _Side) -> _Pipe:
        return self.backward if side.role == "client" else self.forward

    def side_made(self, side: _Side) -> None:
        if side.role == "client":
            self.client = side
            if self.link.closed:
                self.abort_side(side)
                return
            self.link.conn_accepted(self)
            self.forward.start()
            self.backward.start()
            self.on_change()
        else:
            self.upstream = side
            self.backward.update_reading()

    def on_change(self) -> None:
        """Apply the link's current cut/delay state (called after every change)."""
        if self.done:
            return
        if self._connect_task is None and self.link.is_open("forward"):
            self._connect_task = self.loop.create_task(
                self._connect(), name=f"proxy {self.link.name} connect"
            )
        self.forward.update_reading()
        self.backward.update_reading()

    async def _connect(self) -> None:
        host, port = self.link.upstream
        try:
            _, proto = await self.loop.create_connection(
                lambda: _Side(self, "upstream"), host, port
            )
        except OSError as exc:
            _log.debug("proxy %s: upstream %s:%s failed: %s", self.link.name, host, port, exc)
            self.link.upstream_failures += 1
            if not self._upstream_ready.done():
                self._upstream_ready.set_result(None)
            self.abort_side(self.client)
            self._maybe_done()
            return
        assert isinstance(proto, _Side)
        if self.done:
            self.abort_side(proto)
            return
        if not self._upstream_ready.done():
            self._upstream_ready.set_result(proto)

    async def wait_dst(self, way: _Way) -> _Side | None:
        if way == "backward":
            return self.client
        return await asyncio.shield(self._upstream_ready)

    def received(self, side: _Side, payload: bytes | _Marker) -> None:
        pipe = self.pipe_from(side)
        corrupter = self.link.corrupter(pipe.way)
        if corrupter is not None and self.corrupt_gen == self.link.corrupt_gen:
            stream = self._streams.setdefault(pipe.way, _FrameStream(corrupter))
            if isinstance(payload, bytes):
                payload = stream.feed(payload)
                if not payload:
                    return
            else:
                rest = stream.flush()
                if rest:
                    pipe.push(rest)
        pipe.push(payload)

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if not side.closing:
            # The peer failed (RST, socket error); a clean FIN only arrives via
            # eof_received. Pass it on, after any held bytes, as an RST.
            _log.debug("proxy %s: %s side lost: %r", self.link.name, side.role, exc)
            self.pipe_from(side).push(_Marker.ABORT)
        self.pipe_to(side).kill()
        self._maybe_done()

    def eof_forwarded(self) -> None:
        """Both directions delivered their FIN: close both sides gracefully."""
        if self.forward.eof_sent and self.backward.eof_sent:
            for side in (self.client, self.upstream):
                if side is not None and side.alive:
                    side.closing = True
                    assert side.transport is not None
                    side.transport.close()

    def abort_side(self, side: _Side | None) -> None:
        if side is not None and side.transport is not None and not side.lost.done():
            side.closing = True
            _abort_with_rst(side.transport)

    def _maybe_done(self) -> None:
        client_gone = self.client is None or self.client.lost.done()
        upstream_gone = (
            self.upstream.lost.done()
            if self.upstream is not None
            else self._upstream_ready.done() or self._connect_task is None
        )
        if client_gone and upstream_gone:
            self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        for task in (self.forward.task, self.backward.task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if not self._upstream_ready.done():
            self._upstream_ready.set_result(None)
        self.link.conn_finished(self)

    def kill(self) -> list[Awaitable[Any]]:
        """Abort both sides with an RST; returns what to await until all is closed."""
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        self.abort_side(self.client)
        self.abort_side(self.upstream)
        waits: list[Awaitable[Any]] = [
            side.lost for side in (self.client, self.upstream) if side is not None
        ]
        waits += [
            t for t in (self._connect_task, self.forward.task, self.backward.task) if t is not None
        ]
        self._finish()
        return waits


class LinkProxy:
    """One directed link: a listener on 127.0.0.1 forwarding to a fixed upstream.

    Create it with :meth:`ProxyNet.add`. The control methods are thread-safe and
    block until the change is in force on the proxy's loop, for existing and new
    connections alike.
    """

    def __init__(self, net: ProxyNet, name: str, upstream: tuple[str, int]) -> None:
        self.net = net
        self.name = name
        self.upstream = upstream
        self.listen_port = 0
        self.rng = random.Random(net.seed_for(name))
        self.closed = False
        self.changed = asyncio.Event()  # replaced (and the old one set) on every change
        self._open: dict[_Way, bool] = {"forward": True, "backward": True}
        self._delay_ms = 0.0
        self._jitter_ms = 0.0
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._accepted = 0
        self._bytes: dict[_Way, int] = {"forward": 0, "backward": 0}
        self.upstream_failures = 0
        self._resets = 0
        self._corrupters: dict[_Way, FrameCorrupter | None] = {"forward": None, "backward": None}
        self.corrupt_gen = 0  # connections made before the last corrupt() are not parsed

    def __repr__(self) -> str:
        return (
            f"<LinkProxy {self.name} 127.0.0.1:{self.listen_port} -> "
            f"{self.upstream[0]}:{self.upstream[1]} {self._state_text()}>"
        )

    @property
    def endpoints(self) -> tuple[str, str]:
        """``("n1", "n2")`` for a link named ``"n1->n2"``."""
        src, sep, dst = self.name.partition("->")
        if not sep:
            raise ValueError(f"link name {self.name!r} is not of the form 'a->b'")
        return src.strip(), dst.strip()

    # -- control (any thread) --------------------------------------------------

    def cut(self, direction: Direction = "both") -> None:
        """Stop moving bytes in ``direction`` (a silent drop, no RST/FIN)."""
        ways = _ways(direction)
        self.net.call(lambda: self.set_open(ways, False))

    def restore(self, direction: Direction = "both") -> None:
        """Undo :meth:`cut` for ``direction``, keeping any delay."""
        ways = _ways(direction)
        self.net.call(lambda: self.set_open(ways, True))

    def heal(self) -> None:
        """Restore both directions and clear delays."""
        self.net.call(self.heal_now)

    def delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every chunk by ``ms +/- jitter_ms`` in both directions, in order."""
        if ms < 0 or jitter_ms < 0:
            raise ValueError("delay and jitter must be >= 0")
        self.net.call(lambda: self._set_delay(float(ms), float(jitter_ms)))

    def reset(self) -> None:
        """Abort every current connection on both sides with an RST."""
        self.net.run(self._reset_now())

    def corrupt(self, direction: _Way, corrupter: FrameCorrupter | None) -> None:
        """Pass ``direction``'s PySyncObj frames through ``corrupter`` (None: stop).

        Resets the link's connections, so every frame parsed starts at a boundary."""

        async def apply() -> None:
            self._corrupters[direction] = corrupter
            self.corrupt_gen += 1
            await self._kill_all()

        self.net.run(apply())

    def corrupter(self, way: _Way) -> FrameCorrupter | None:
        return self._corrupters[way]

    def stats(self) -> dict[str, Any]:
        """Counters and current fault state (a consistent snapshot)."""
        if self.net.running:
            return self.net.call(self._stats_now)
        return self._stats_now()

    def close(self) -> None:
        """Stop listening and abort this link's connections. Idempotent."""
        if self.closed:
            return
        if self.net.running:
            self.net.run(self.aclose())
        self.closed = True
        self.net.forget(self)

    # -- loop-thread side ------------------------------------------------------

    def is_open(self, way: _Way) -> bool:
        return self._open[way]

    @property
    def is_cut(self) -> bool:
        return not (self._open["forward"] and self._open["backward"])

    def delay_for(self, jitter: float) -> float:
        """The delay in seconds for a chunk whose jitter factor is ``jitter``."""
        return max(0.0, self._delay_ms + jitter * self._jitter_ms) / 1000.0

    def count_bytes(self, way: _Way, n: int) -> None:
        self._bytes[way] += n

    def conn_accepted(self, conn: _Conn) -> None:
        self._accepted += 1
        self._conns.add(conn)

    def conn_finished(self, conn: _Conn) -> None:
        self._conns.discard(conn)

    async def start(self) -> None:
        self._server = await self.net.loop.create_server(
            lambda: _Side(_Conn(self), "client"), host=LOCALHOST, port=0, reuse_address=True
        )
        self.listen_port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._kill_all()
        self._notify()

    def set_open(self, ways: Iterable[_Way], value: bool) -> None:
        for way in ways:
            self._open[way] = value
        self._notify()

    def _set_delay(self, ms: float, jitter_ms: float) -> None:
        self._delay_ms = ms
        self._jitter_ms = jitter_ms
        self._notify()

    def heal_now(self) -> None:
        self._open = {"forward": True, "backward": True}
        self._delay_ms = self._jitter_ms = 0.0
        self._corrupters = {"forward": None, "backward": None}
        self._notify()

    async def _reset_now(self) -> None:
        self._resets += 1
        await self._kill_all()

    async def _kill_all(self) -> None:
        waits: list[Awaitable[Any]] = []
        for conn in list(self._conns):
            waits += conn.kill()
        if waits:
            await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=CONTROL_TIMEOUT / 2
            )

    def _notify(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()
        for conn in list(self._conns):
            conn.on_change()

    def _stats_now(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen_port": self.listen_port,
            "upstream": self.upstream,
            "connections_accepted": self._accepted,
            "connections_active": len(self._conns),
            "bytes_forward": self._bytes["forward"],
            "bytes_backward": self._bytes["backward"],
            "bytes_held_forward": sum(c.forward.held for c in self._conns),
            "bytes_held_backward": sum(c.backward.held for c in self._conns),
            "upstream_failures": self.upstream_failures,
            "resets": self._resets,
            "forward_cut": not self._open["forward"],
            "backward_cut": not self._open["backward"],
            "delay_ms": self._delay_ms,
            "jitter_ms": self._jitter_ms,
            "closed": self.closed,
        }

    def _state_text(self) -> str:
        ways: tuple[_Way, ...] = ("forward", "backward")
        cut = [w for w in ways if not self._open[w]]
        parts = [f"cut={'+'.join(cut)}" if cut else "open"]
        if self._delay_ms or self._jitter_ms:
            parts.append(f"delay={self._delay_ms:g}+/-{self._jitter_ms:g}ms")
        return " ".join(parts)


def _ways(direction: str) -> tuple[_Way, ...]:
    try:
        return _DIRECTIONS[direction]
    except KeyError:
        raise ValueError(
            f"direction must be 'forward', 'backward' or 'both', not {direction!r}"
        ) from None


class ProxyNet:
    """A set of :class:`LinkProxy` served by one background asyncio thread.

    ``seed`` makes delay jitter reproducible. Use as a context manager or call
    :meth:`close`; after close no thread, socket or listener is left.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed
        self.loop = asyncio.new_event_loop()
        self._links: dict[str, LinkProxy] = {}
        self._lock = threading.Lock()
        self._closed = False
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(started,), name="ProxyNet-loop", daemon=True
        )
        self.thread.start()
        if not started.wait(CONTROL_TIMEOUT):  # pragma: no cover
            raise RuntimeError("ProxyNet loop thread did not start")

    def __enter__(self) -> ProxyNet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._links)} links"
        return f"<ProxyNet {state}>"

    # -- links -----------------------------------------------------------------

    def add(self, name: str, upstream_host: str, upstream_port: int) -> LinkProxy:
        """Start a listener on 127.0.0.1:<free port> forwarding to the upstream."""
        with self._lock:
            if self._closed:
                raise RuntimeError("ProxyNet is closed")
            if name in self._links:
                raise ValueError(f"link {name!r} already exists")
            link = LinkProxy(self, name, (upstream_host, int(upstream_port)))
            self._links[name] = link
        try:
            self.run(link.start())
        except BaseException:
            with self._lock:
                self._links.pop(name, None)
            raise
        return link

    def get(self, name: str) -> LinkProxy:
        try:
            return self._links[name]
        except KeyError:
            raise KeyError(f"no link named {name!r} (have {sorted(self._links)})") from None

    def __getitem__(self, name: str) -> LinkProxy:
        return self.get(name)

    @property
    def links(self) -> dict[str, LinkProxy]:
        """A copy of ``{name: link}``."""
        with self._lock:
            return dict(self._links)

    # -- faults across links ---------------------------------------------------

    def partition(self, groups: list[set[str]]) -> None:
        """Split the listed nodes into ``groups``, atomically across all links.

        Links whose endpoints are in different groups are cut in both directions;
        links whose endpoints are in the same group are restored (their delay is
        kept), so calling ``partition`` again replaces the previous partition.
        Links touching a node that is in no group are left as they are.
        """
        where: dict[str, int] = {}
        for i, group in enumerate(groups):
            for node in group:
                if node in where:
                    raise ValueError(f"node {node!r} is in more than one group")
                where[node] = i
        plan: list[tuple[LinkProxy, bool]] = []
        for link in self.links.values():
            a, b = link.endpoints
            if a in where and b in where:
                plan.append((link, where[a] == where[b]))

        def apply() -> None:
            for link, flows in plan:
                link.set_open(("forward", "backward"), flows)

        self.call(apply)

    def partition_pair(self, a: str, b: str) -> None:
        """Cut both directions of every link between ``a`` and ``b`` only.

        A partial partition: ``a`` and ``b`` can still reach everyone else.
        """
        targets = [link for link in self.links.values() if set(link.endpoints) == {a, b}]

        def apply() -> None:
            for link in targets:
                link.set_open(("forward", "backward"), False)

        self.call(apply)

    def isolate(self, node: str) -> None:
        """Cut both directions of every link from or to ``node``."""
        targets = [link for link in self.links.values() if node in link.endpoints]

        def apply() -> None:
            for link in targets:
                link.set_open(("forward", "backward"), False)

        self.call(apply)

    def stall(self, node: str, direction: Literal["in", "out"]) -> None:
        """Stop the bytes ``node`` sends to ("out") or receives from ("in") its peers."""
        plan: list[tuple[LinkProxy, Direction]] = []
        for link in self.links.values():
            a, b = link.endpoints
            if node in (a, b):
                node_sends: Direction = "forward" if a == node else "backward"
                node_gets: Direction = "backward" if a == node else "forward"
                plan.append((link, node_sends if direction == "out" else node_gets))

        def apply() -> None:
            for link, way in plan:
                link.set_open(_ways(way), False)

        self.call(apply)

    def heal_all(self) -> None:
        """Restore every link in both directions and clear all delays."""
        targets = list(self.links.values())

        def apply() -> None:
            for link in targets:
                link.heal_now()

        self.call(apply)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: link.stats() for name, link in self.links.items()}

    # -- lifecycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._closed and self.thread.is_alive()

    def close(self) -> None:
        """Close every link, stop the loop and join its thread. Idempotent."""
        if threading.get_ident() == self.thread.ident:
            raise RuntimeError("ProxyNet.close() must not be called from its own loop")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links = list(self._links.values())
        try:
            if self.thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._shutdown(links), self.loop).result(
                    CONTROL_TIMEOUT
                )
        finally:
            if self.thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(CONTROL_TIMEOUT)
        for link in links:
            link.closed = True

    async def _shutdown(self, links: list[LinkProxy]) -> None:
        for link in links:
            await link.aclose()

    def seed_for(self, name: str) -> str | None:
        """A per-link jitter seed (str seeds are hashed deterministically)."""
        return None if self.seed is None else f"{self.seed}/{name}"

    def forget(self, link: LinkProxy) -> None:
        with self._lock:
            if self._links.get(link.name) is link:
                del self._links[link.name]

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the loop thread and return its result."""
        if threading.get_ident() == self.thread.ident:
            return fn()
        if not self.running:
            raise RuntimeError("ProxyNet is closed")
        fut: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(CONTROL_TIMEOUT)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop thread and wait for its result."""
        if threading.get_ident() == self.thread.ident:
            coro.close()
            raise RuntimeError("cannot block on the ProxyNet loop from its own thread")
        if not self.running:
            coro.close()
            raise RuntimeError("ProxyNet is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(CONTROL_TIMEOUT)

    def _run(self, started: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        started.set()
        try:
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
