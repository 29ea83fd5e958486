"""A follower writing the snapshot a leader sends: a storage error is a fail-stop.

PySyncObj's ``Serializer.setTransmissionData`` writes the chunks of a received dump to
``raft.snapshot.1.tmp`` and renames it over ``raft.snapshot`` once the last one is in;
when opening, writing or renaming fails it logs the error and carries on: the node
keeps serving on a disk that refuses writes, and asks for the snapshot again and again.
:class:`IncomingDump` takes its place (``RaftCore`` installs it on its serializer) with
the same file protocol, except that an OSError calls the node's fail-stop with a
``FatalStorageError`` (``raftlog serve`` exits 70, as for any other storage error) and
raises it, so PySyncObj neither loads a half-written dump nor answers the leader.
Verifying and installing the completed dump is :mod:`raftlog.raft.snapshots`.

Threads: the tick thread only (PySyncObj's message handling). It blocks on the file
writes of one chunk (no fsync here: the install that follows fsyncs what it keeps).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, BinaryIO

from raftlog.errors import FatalStorageError
from raftlog.raft.journal import describe_os_error

__all__ = ["IncomingDump"]


def _open_for_write(path: str) -> BinaryIO:
    """The one place a received dump is opened (tests substitute a failing disk)."""
    return open(path, "wb")  # closed by IncomingDump


def _replace(source: str, target: str) -> None:
    os.replace(source, target)


class IncomingDump:
    """``setTransmissionData`` for a file-backed PySyncObj serializer."""

    def __init__(self, dump_path: str, on_fatal: Callable[[BaseException], None]) -> None:
        self._dump = dump_path
        self._tmp = dump_path + ".1.tmp"  # PySyncObj's name for it
        self._on_fatal = on_fatal
        self._file: BinaryIO | None = None

    def receive(self, data: Any) -> bool:
        """Take one chunk ``(bytes, is_first, is_last)``; True once the whole dump is in
        place at ``dump_path`` (PySyncObj then loads it). FatalStorageError, after the
        fail-stop callback, when the disk refuses."""
        if data is None:
            return False
        chunk, is_first, is_last = data
        if is_first:
            self._close()
            self._file = self._storage("opening", lambda: _open_for_write(self._tmp))
        elif self._file is None:
            return False  # a transfer whose start we missed: the leader starts over
        file = self._file
        self._storage("writing", lambda: file.write(chunk))
        if not is_last:
            return False
        self._file = None
        self._storage("closing", file.close)
        self._storage("renaming", lambda: _replace(self._tmp, self._dump))
        return True

    def _storage(self, what: str, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except OSError as exc:
            self._close()
            error = FatalStorageError(
                f"{self._tmp}: {what} the snapshot received from the leader failed: "
                f"{describe_os_error(exc)}"
            )
            self._on_fatal(error)
            raise error from exc

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # abandoned: the next transfer truncates it
                file.close()
