"""In-memory twins of the storage seam that can simulate a power loss.

Each keeps two copies: ``content`` (what the process wrote; the page cache) and
``durable`` (what an fsync put on the platter). :meth:`LossyDisk.power_loss` throws
away everything unsynced, optionally keeping a torn prefix of unsynced appends, which
is what a real disk may do. Used by tests; safe to use from one thread at a time.

Both files can also fail like a real disk: ``faults`` maps an operation name to the
OSError that every later call of that operation raises (ENOSPC, EIO...), and ``calls``
counts the calls of each operation, failed ones included, so a test can tell that a
failed fsync was never retried.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["LossyAppendFile", "LossyAtomicFile", "LossyDisk"]


@dataclass
class LossyAppendFile:
    content: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)
    closed: bool = False
    # Operation ("read_all", "append", "truncate", "sync", "replace") -> the error every
    # later call raises. A failing append first writes half of its data: a short write
    # followed by an error is what a disk that fills up mid-record does.
    faults: dict[str, OSError] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return "memory:raft.journal"

    def read_all(self) -> bytes:
        self._enter("read_all")
        return bytes(self.content)

    def append(self, data: bytes) -> None:
        self._check_open()
        self.calls["append"] += 1
        fault = self.faults.get("append")
        if fault is not None:
            self.content += data[: len(data) // 2]
            raise fault
        self.content += data

    def truncate(self, size: int) -> None:
        self._check_open()
        self._enter("truncate")
        del self.content[size:]

    def sync(self) -> None:
        self._check_open()
        self._enter("sync")
        self.durable = bytearray(self.content)

    def replace(self, data: bytes) -> None:
        self._check_open()
        self._enter("replace")
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

    def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        fault = self.faults.get(operation)
        if fault is not None:
            raise fault


@dataclass
class LossyAtomicFile:
    content: bytes | None = None
    durable: bytes | None = None
    # Operation ("read", "write") -> the error every later call raises. A failing write
    # changes nothing (production writes a temp file and renames it).
    faults: dict[str, OSError] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return "memory:raft.meta"

    def read(self) -> bytes | None:
        self._enter("read")
        return self.content

    def write(self, data: bytes) -> None:
        # Production writes a temp file, fsyncs it, renames, fsyncs the directory.
        self._enter("write")
        self.content = data
        self.durable = data

    def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        fault = self.faults.get(operation)
        if fault is not None:
            raise fault

    def lose_unsynced(self) -> None:
        self.content = self.durable


@dataclass
class LossyDisk:
    """The journal files of one node. ``volatile``: a fresh one at every process start
    (the UNSAFE volatile-journal negative control), so nothing survives a restart."""

    journal: LossyAppendFile = field(default_factory=LossyAppendFile)
    meta: LossyAtomicFile = field(default_factory=LossyAtomicFile)
    volatile: bool = False

    def power_loss(self, rng: random.Random | None = None) -> None:
        self.journal.lose_unsynced(rng)
        self.meta.lose_unsynced()
        self.journal.reopen()
