"""CRC32C checksums of stored records and snapshot files (issue 9).

One algorithm everywhere: CRC32C (Castagnoli), computed by the ``crc32c`` package
(SSE4.2 / ARMv8 instructions where the CPU has them, a software table otherwise).

* ``crc``: the checksum of some bytes, optionally continuing an earlier one; ``crcs``
  the same for many at once.
* A *trailer* closes a file or stream: ``magic (8 bytes) | u64 length | u32 crc``,
  where length and crc cover every byte of the file before the trailer.
  :class:`StreamVerifier` checks one while the bytes go past (the last 20 bytes seen
  are the trailer), so a file is checked in one pass without knowing its size first.
* :func:`verification_enabled`: False only under the UNSAFE test switch
  ``RAFTLOG_UNSAFE_SKIP_CHECKSUMS=1`` (``raftlog serve``); every check of this package
  then passes without looking, so the fault suite can show what the checks prevent.
  Checksums are still *written*.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from crc32c import crc32c

__all__ = [
    "TRAILER_SIZE",
    "StreamVerifier",
    "crc",
    "crc_of_region",
    "crcs",
    "encode_trailer",
    "set_verification",
    "verification_enabled",
    "verify_stream",
]

_TRAILER = struct.Struct(">8sQI")
TRAILER_SIZE = _TRAILER.size  # 20
_CHUNK = 1 << 20

_verify = True


def set_verification(enabled: bool) -> None:
    """Turn every checksum *verification* on or off (process-wide; tests and the UNSAFE
    switch only)."""
    global _verify
    _verify = enabled


def verification_enabled() -> bool:
    return _verify


def crc(data: bytes | memoryview, value: int = 0) -> int:
    """CRC32C of ``data``, continuing ``value`` (the CRC of the bytes before it)."""
    return int(crc32c(data, value))


def crcs(chunks: Iterable[bytes], values: Iterable[int]) -> Iterator[int]:
    """``crc(chunk, value)`` of each pair of ``chunks`` and ``values``, lazily, in one C
    loop (``map``): the per-record checksums of a batch without a Python call each."""
    return map(crc32c, chunks, values)


def encode_trailer(magic: bytes, length: int, checksum: int) -> bytes:
    assert len(magic) == 8
    return _TRAILER.pack(magic, length, checksum)


class StreamVerifier:
    """Checks a stream that ends with a trailer of ``magic``, fed in chunks of any size.

    ``problem()`` after the last chunk: None when the trailer is there, its length is
    the number of bytes before it and its CRC matches them; else a sentence saying what
    is wrong (with the byte offset of the trailer).
    """

    def __init__(self, magic: bytes) -> None:
        self._magic = magic
        self._crc = 0
        self._count = 0  # bytes covered by self._crc
        self._tail = b""  # the last (at most TRAILER_SIZE) bytes fed, not yet covered

    def feed(self, chunk: bytes | memoryview) -> None:
        data = self._tail + bytes(chunk) if self._tail else bytes(chunk)
        if len(data) <= TRAILER_SIZE:
            self._tail = data
            return
        cut = len(data) - TRAILER_SIZE
        self._crc = crc(memoryview(data)[:cut], self._crc)
        self._count += cut
        self._tail = data[cut:]

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._count + len(self._tail)

    def problem(self) -> str | None:
        if len(self._tail) < TRAILER_SIZE:
            return f"no checksum trailer: the data ends after {self.size} bytes"
        magic, length, checksum = _TRAILER.unpack(self._tail)
        if magic != self._magic:
            return (
                f"no checksum trailer at byte {self._count} (found {magic!r}, expected "
                f"{self._magic!r}): the data is truncated, extended or damaged"
            )
        if length != self._count:
            return (
                f"the checksum trailer at byte {self._count} covers {length} bytes, "
                f"but {self._count} precede it"
            )
        if checksum != self._crc:
            return (
                f"checksum mismatch: the trailer at byte {self._count} records CRC32C "
                f"{checksum:#010x}, the {self._count} bytes before it have {self._crc:#010x}"
            )
        return None


def verify_stream(f: BinaryIO, magic: bytes, limit: int | None = None) -> str | None:
    """Read ``f`` from its position (to EOF, or ``limit`` bytes) through a verifier;
    None when the trailer matches, else what is wrong. Raises OSError."""
    verifier = StreamVerifier(magic)
    left = limit
    while left is None or left > 0:
        chunk = f.read(_CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            break
        verifier.feed(chunk)
        if left is not None:
            left -= len(chunk)
    return verifier.problem()


def crc_of_region(fd: int, start: int, end: int, value: int = 0) -> int:
    """CRC32C of bytes [start, end) of ``fd`` (read with pread), continuing ``value``."""
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_CHUNK, end - pos), pos)
        if not chunk:
            raise OSError(f"file ended at byte {pos}, expected {end}")
        value = crc(chunk, value)
        pos += len(chunk)
    return value
