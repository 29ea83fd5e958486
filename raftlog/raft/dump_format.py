"""The file format of ``raft.snapshot`` (PySyncObj's ``fullDumpFile``); no PySyncObj here.

Format 2: ``b"RLRAFT02" | u32 header length | msgpack header | u32 CRC32C | state
snapshot``. The CRC covers the magic, the length and the header; the state snapshot
(``raftlog.state.snapshot``, format 2) ends with its own checksum trailer over the rest.
So every byte of the file is covered, and a file is checked in one streaming pass
(:class:`DumpVerifier`: the leader checks the chunks it ships as they go).
Format 1 (``RLRAFT01``, no CRC, a format-1 state snapshot) is still read, unchecked.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

import msgpack

from raftlog import checksum
from raftlog.errors import UnsupportedFormat
from raftlog.state.snapshot import TRAILER_MAGIC, CorruptSnapshot

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "DumpVerifier",
    "encode_dump_header",
    "read_dump_header",
    "verify_dump_stream",
]

MAGIC = b"RLRAFT02"
MAGIC_V1 = b"RLRAFT01"
FORMAT_VERSION = 2
_MAX_HEADER = 1 << 20


def encode_dump_header(header: dict[str, Any]) -> bytes:
    encoded: bytes = msgpack.packb(header, use_bin_type=True)
    prefix = MAGIC + struct.pack(">I", len(encoded)) + encoded
    return prefix + struct.pack(">I", checksum.crc(prefix))


def _parse_prefix(head: bytes) -> tuple[int, int]:
    """(format, header length) from the first 12 bytes."""
    if len(head) < len(MAGIC) + 4 or head[:6] != MAGIC[:6]:
        raise UnsupportedFormat("not a raftlog snapshot (bad magic)")
    magic = head[: len(MAGIC)]
    if magic not in (MAGIC, MAGIC_V1):
        raise UnsupportedFormat(f"snapshot format {magic!r} is newer than this raftlog ({MAGIC!r})")
    (length,) = struct.unpack(">I", head[len(MAGIC) : len(MAGIC) + 4])
    if length > _MAX_HEADER:
        raise CorruptSnapshot(f"raft snapshot header claims {length} bytes")
    return (2 if magic == MAGIC else 1), length


def _decode(fmt: int, head: bytes, body: bytes, crc_bytes: bytes) -> dict[str, Any]:
    if fmt >= 2 and checksum.verification_enabled():
        stored = int.from_bytes(crc_bytes, "big") if len(crc_bytes) == 4 else None
        if stored != checksum.crc(head + body):
            raise CorruptSnapshot(
                f"raft snapshot header fails its checksum (bytes 0-{len(head) + len(body) + 3})"
            )
    try:
        header = msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise CorruptSnapshot(f"raft snapshot header does not decode: {exc}") from None
    if not isinstance(header, dict) or header.get("format", 0) > FORMAT_VERSION:
        raise UnsupportedFormat("snapshot header has a format this raftlog does not know")
    return header


def read_dump_header(f: BinaryIO) -> tuple[dict[str, Any], int]:
    """The validated raft header at the start of ``f`` and the state snapshot's offset.
    CorruptSnapshot when the header fails its checksum; UnsupportedFormat otherwise."""
    head = f.read(len(MAGIC) + 4)
    fmt, length = _parse_prefix(head)
    body = f.read(length)
    crc_bytes = f.read(4) if fmt >= 2 else b""
    header = _decode(fmt, head, body, crc_bytes)
    return header, len(head) + length + len(crc_bytes)


class DumpVerifier:
    """Checks a dump file fed in chunks from its first byte (any chunk sizes).

    ``problem()`` after the last chunk: None when every checksum matches (or the file
    is format 1), else what is wrong."""

    def __init__(self) -> None:
        self._head = b""
        self._inner: checksum.StreamVerifier | None = None
        self._fmt: int | None = None
        self._error: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self._error is not None or self._fmt == 1:
            return
        if self._inner is not None:
            self._inner.feed(chunk)
            return
        self._head += chunk
        try:
            if len(self._head) < len(MAGIC) + 4:
                return
            fmt, length = _parse_prefix(self._head)
            self._fmt = fmt
            if fmt == 1:
                return
            end = len(MAGIC) + 4 + length
            if len(self._head) < end + 4:
                self._fmt = None
                return
            _decode(
                fmt,
                self._head[: len(MAGIC) + 4],
                self._head[len(MAGIC) + 4 : end],
                self._head[end : end + 4],
            )
        except UnsupportedFormat as exc:
            self._error = str(exc)
            return
        self._inner = checksum.StreamVerifier(TRAILER_MAGIC)
        self._inner.feed(self._head[end + 4 :])
        self._head = b""

    def problem(self) -> str | None:
        if self._error is not None:
            return self._error
        if self._fmt == 1 or not checksum.verification_enabled():
            return None
        if self._inner is None:
            return "the file ends inside its raft header"
        return self._inner.problem()


def verify_dump_stream(f: BinaryIO) -> str | None:
    """Read ``f`` to its end through a DumpVerifier; None when it passes. OSError."""
    verifier = DumpVerifier()
    while chunk := f.read(1 << 20):
        verifier.feed(chunk)
    return verifier.problem()
