"""How a Raft message becomes bytes on a peer connection: PySyncObj's frame, without
its compression.

PySyncObj frames every message as ``len | encrypt(zlib.compress(pickle(message), 3))``.
``zlib.compress`` sets up a fresh deflate stream per call, and that set-up alone costs
about 60 us here, whatever the size of the message: for the few hundred bytes of an
append or its answer it was 25x the pickling and the encryption together, and a leader
sends four such messages per lone append (docs/PERFORMANCE.md, "Peer messages").
Compression buys nothing on the links a cluster uses (loopback and LANs, where the
CPU is the limit, not the bytes).

So messages are framed as PySyncObj's receiver expects them, a zlib stream, but one
made of *stored* (uncompressed) deflate blocks: built here by hand in about 1 us,
decoded by the unchanged receiver (``zlib.decompress``), so nodes using either framing
understand each other. The encryption, the length prefix and the rest of the
connection are PySyncObj's.

:func:`install` makes PySyncObj build every peer connection (outgoing and incoming)
as :class:`StoredFrameConnection`. Threading: connections are used on the Raft tick
thread only, as PySyncObj's are.
"""

from __future__ import annotations

import errno
import socket
import struct
import zlib
from typing import Any

import pysyncobj.tcp_server as _tcp_server_module
import pysyncobj.transport as _transport_module
from pysyncobj import pickle
from pysyncobj.monotonic import monotonic as _monotonic
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

__all__ = ["StoredFrameConnection", "install", "stored_zlib"]

_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, no dictionary, "fastest" level
_MAX_STORED = 0xFFFF  # a stored deflate block holds at most 65,535 bytes
_LENGTH = struct.Struct("i")  # PySyncObj's frame prefix (native int, as its receiver reads)
_BLOCK = struct.Struct("<BHH")  # BFINAL/BTYPE=00 byte, LEN, NLEN
_ADLER = struct.Struct(">I")
_READ_BYTES = 1 << 20  # bytes asked of the socket per read


def stored_zlib(data: bytes) -> bytes:
    """``data`` as a valid zlib stream of stored deflate blocks (RFC 1950/1951):
    ``zlib.decompress(stored_zlib(d)) == d`` for every ``d``."""
    size = len(data)
    if size == 0:
        return _ZLIB_HEADER + _BLOCK.pack(1, 0, 0xFFFF) + _ADLER.pack(zlib.adler32(data))
    if size <= _MAX_STORED:
        return b"".join(
            (
                _ZLIB_HEADER,
                _BLOCK.pack(1, size, size ^ 0xFFFF),
                data,
                _ADLER.pack(zlib.adler32(data)),
            )
        )
    view = memoryview(data)
    parts: list[bytes | memoryview] = [_ZLIB_HEADER]
    for start in range(0, size, _MAX_STORED):
        chunk = view[start : start + _MAX_STORED]
        final = 1 if start + _MAX_STORED >= size else 0
        parts.append(_BLOCK.pack(final, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
    parts.append(_ADLER.pack(zlib.adler32(data)))
    return b"".join(parts)


class StoredFrameConnection(TcpConnection):  # type: ignore[misc]
    """PySyncObj's peer connection, sending stored-block zlib frames (see module doc)."""

    # PySyncObj's private buffers (bytes; bytearrays once this class has used them).
    _TcpConnection__writeBuffer: bytes | bytearray
    _TcpConnection__readBuffer: bytes | bytearray
    recvLastTimestamp: int  # noqa: N815 - PySyncObj's attribute

    def send(self, message: Any) -> None:
        # PySyncObj's TcpConnection.send with stored_zlib in place of zlib.compress; the
        # rest (the random key of an encrypted connection, encryption stamped with
        # PySyncObj's clock, the length prefix, the immediate send attempt) is unchanged.
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        data = stored_zlib(pickle.dumps(message))
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(_monotonic()))
        buffer: Any = self._TcpConnection__writeBuffer
        if not isinstance(buffer, bytearray):  # PySyncObj resets it to bytes() on (dis)connect
            buffer = self._TcpConnection__writeBuffer = bytearray(buffer)
        buffer += _LENGTH.pack(len(data))
        buffer += data
        self._TcpConnection__trySendBuffer()
        if self._TcpConnection__writeBuffer and self.state == CONNECTION_STATE.CONNECTED:
            # What the socket did not take goes when it is writable. PySyncObj waits for
            # WRITE only until a connection's buffer first empties, so after that a rest
            # waited for the next message (a heartbeat, 100 ms): a follower catching up
            # by log got one socket buffer per heartbeat (100k entries took 8 s instead
            # of under 1 s), and a snapshot travelled no faster.
            self._TcpConnection__poller.subscribe(
                self._TcpConnection__fileno,
                self._TcpConnection__processConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR,
            )

    def _TcpConnection__processSend(self) -> bool:  # noqa: N802
        # PySyncObj's, with the sent prefix deleted from a bytearray (amortized O(1) at
        # the front) instead of copying the rest of an immutable buffer after every
        # send: with a snapshot's chunks queued that copy was quadratic in the queue
        # (a 220 MB snapshot took minutes, the tick thread copying all along).
        buffer: Any = self._TcpConnection__writeBuffer
        if not buffer:
            return False
        try:
            sent = self._TcpConnection__socket.send(buffer)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if sent < 0:
            self.disconnect()
            return False
        if sent == 0:
            return False
        if not isinstance(buffer, bytearray):
            buffer = self._TcpConnection__writeBuffer = bytearray(buffer)
        del buffer[:sent]
        return True

    def _TcpConnection__processRead(self) -> bool:  # noqa: N802
        # PySyncObj's, reading up to 1 MiB at a time (its default is 8 KiB) into a
        # bytearray: it appended each read to an immutable buffer, a copy of everything
        # unparsed per 8 KiB read, quadratic while a snapshot's chunks arrive.
        try:
            incoming = self._TcpConnection__socket.recv(
                max(int(self._TcpConnection__recvBufferSize), _READ_BYTES)
            )
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if self._TcpConnection__socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return False
        if not incoming:
            self.disconnect()
            return False
        buffer: Any = self._TcpConnection__readBuffer
        if not isinstance(buffer, bytearray):
            buffer = self._TcpConnection__readBuffer = bytearray(buffer)
        buffer += incoming
        return True

    def _TcpConnection__processParseMessage(self) -> Any:  # noqa: N802
        # PySyncObj's, consuming the parsed frame from the bytearray's front instead of
        # copying the rest. Same checks: the encryption's timestamps never go back, the
        # random key of the connection matches; any failure drops the connection.
        buffer: Any = self._TcpConnection__readBuffer
        if len(buffer) < 4:
            return None
        (length,) = _LENGTH.unpack_from(buffer, 0)
        if len(buffer) - 4 < length:
            return None
        data = bytes(buffer[4 : 4 + length])
        try:
            if self.encryptor:
                stamp = self.encryptor.extract_timestamp(data)
                if stamp < self.recvLastTimestamp:
                    raise ValueError("a frame older than the previous one")
                self.recvLastTimestamp = stamp
                data = self.encryptor.decrypt(data)
            message = pickle.loads(zlib.decompress(data))
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ValueError("a frame with another connection's key")
        except Exception:
            self.disconnect()  # as PySyncObj: a frame that does not verify ends the link
            return None
        if not isinstance(buffer, bytearray):
            buffer = self._TcpConnection__readBuffer = bytearray(buffer)
        del buffer[: 4 + length]
        return message


def install() -> None:
    """Make PySyncObj create every peer connection as a StoredFrameConnection. Idempotent;
    called when ``raftlog.raft.core`` is imported, before any SyncObj exists."""
    _transport_module.TcpConnection = StoredFrameConnection
    _tcp_server_module.TcpConnection = StoredFrameConnection
