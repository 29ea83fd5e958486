"""The file seam under the Raft journal: an append-only file and a small atomic file.

Production uses :class:`OsAppendFile` and :class:`OsAtomicFile`. Tests substitute
:mod:`raftlog.raft.lossy` twins that keep "what reached the disk" apart from "what
the process wrote", so a simulated power loss drops exactly the unsynced writes.

Contract for both: every method is called from the Raft tick thread only (or
before it starts). ``sync()`` returns once everything written so far is durable
(in ``durable=False`` mode it only hands data to the OS page cache, which
survives a process crash but not a power loss). Any OSError propagates unchanged:
:class:`raftlog.raft.journal.DurableJournal` turns the first one into a
``FatalStorageError`` and never touches the files again (the node fail-stops). In
particular nobody retries a failed ``sync()``: after a failed fsync the state of the
page cache is unknown, so a second fsync that "succeeds" proves nothing.

``name`` identifies the file in error messages (its path, for the OS files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from raftlog.state.store import atomic_write, fsync_dir

__all__ = ["AppendFile", "AtomicFile", "OsAppendFile", "OsAtomicFile", "atomic_write", "fsync_dir"]


class AppendFile(Protocol):
    @property
    def name(self) -> str: ...
    def read_all(self) -> bytes: ...
    def append(self, data: bytes) -> None: ...
    def truncate(self, size: int) -> None: ...
    def sync(self) -> None: ...
    def replace(self, data: bytes) -> None:
        """Atomically replace the whole content; durable on return (in durable mode)."""
        ...

    def close(self) -> None: ...


class AtomicFile(Protocol):
    @property
    def name(self) -> str: ...
    def read(self) -> bytes | None: ...
    def write(self, data: bytes) -> None:
        """Atomically replace the content; durable on return (in durable mode)."""
        ...


class OsAppendFile:
    def __init__(self, path: Path, *, durable: bool) -> None:
        self._path = path
        self._durable = durable
        existed = path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if not existed and durable:
            fsync_dir(path.parent)

    @property
    def name(self) -> str:
        return str(self._path)

    def read_all(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0) if size else b""

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def sync(self) -> None:
        if self._durable:
            os.fdatasync(self._fd)

    def replace(self, data: bytes) -> None:
        atomic_write(self._path, data, durable=self._durable)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsAtomicFile:
    def __init__(self, path: Path, *, durable: bool) -> None:
        self._path = path
        self._durable = durable

    @property
    def name(self) -> str:
        return str(self._path)

    def read(self) -> bytes | None:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, data: bytes) -> None:
        atomic_write(self._path, data, durable=self._durable)
