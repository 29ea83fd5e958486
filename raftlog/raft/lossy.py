"""In-memory twins of the storage seam that can simulate a power loss.

Each keeps two copies: ``content`` (what the process wrote; the page cache) and
``durable`` (what an fsync put on the platter). :meth:`LossyDisk.power_loss` throws
away everything unsynced, optionally keeping a torn prefix of unsynced appends, which
is what a real disk may do. Used by tests; safe to use from one thread at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class LossyAppendFile:
    content: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def read_all(self) -> bytes:
        return bytes(self.content)

    def append(self, data: bytes) -> None:
        self._check_open()
        self.content += data

    def truncate(self, size: int) -> None:
        self._check_open()
        del self.content[size:]

    def sync(self) -> None:
        self._check_open()
        self.durable = bytearray(self.content)

    def replace(self, data: bytes) -> None:
        self._check_open()
        self.content = bytearray(data)
        self.durable = bytearray(data)

    def close(self) -> None:
        self.closed = True

    def reopen(self) -> LossyAppendFile:
        self.closed = False
        return self

    def lose_unsynced(self, rng: random.Random | None = None) -> None:
        torn = b""
        if rng is not None and self.content.startswith(self.durable):
            tail = self.content[len(self.durable) :]
            torn = bytes(tail[: rng.randint(0, len(tail))])
        self.content = bytearray(self.durable) + torn
        self.durable = bytearray(self.content)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("file is closed")


@dataclass
class LossyAtomicFile:
    content: bytes | None = None
    durable: bytes | None = None

    def read(self) -> bytes | None:
        return self.content

    def write(self, data: bytes) -> None:
        # Production writes a temp file, fsyncs it, renames, fsyncs the directory.
        self.content = data
        self.durable = data

    def lose_unsynced(self) -> None:
        self.content = self.durable


@dataclass
class LossyDisk:
    """The journal files of one node."""

    journal: LossyAppendFile = field(default_factory=LossyAppendFile)
    meta: LossyAtomicFile = field(default_factory=LossyAtomicFile)

    def power_loss(self, rng: random.Random | None = None) -> None:
        self.journal.lose_unsynced(rng)
        self.meta.lose_unsynced()
        self.journal.reopen()
