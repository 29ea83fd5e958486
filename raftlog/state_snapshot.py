"""Snapshot files of the state machine: header codec and the snapshot source.

A snapshot is ``SNAPSHOT_MAGIC`` + 4-byte big-endian header length + msgpack header
``{"format", "state_format", "last_applied": [index, term], "cluster_id", "created_ms"}``
followed by a compacted copy of the LMDB data file, running to the end of the file
(or of the stream). A caller may put its own bytes in front; restore takes an offset.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import lmdb
import msgpack

from raftlog.errors import FatalStorageError, UnsupportedFormat
from raftlog.state_store import (
    DB_NAMES,
    K_FORMAT,
    K_LAST_APPLIED,
    MAX_DBS,
    STATE_FORMAT,
    check_format,
    fsync_dir,
    pack,
    unpack_last_applied,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_MAGIC",
    "SnapshotSource",
    "encode_header",
    "parse_header",
    "read_snapshot_header",
    "recover_dirs",
    "stage_data",
    "swap_dirs",
    "validate_staged",
    "write_all",
]

SNAPSHOT_MAGIC = b"RLSNAP01"
SNAPSHOT_FORMAT = 1  # the newest snapshot format this code understands (and writes)
MAX_HEADER_BYTES = 1 << 20


def encode_header(last_applied: tuple[int, int], cluster_id: str | None, created_ms: int) -> bytes:
    body = pack(
        {
            "format": SNAPSHOT_FORMAT,
            "state_format": STATE_FORMAT,
            "last_applied": [last_applied[0], last_applied[1]],
            "cluster_id": cluster_id,
            "created_ms": created_ms,
        }
    )
    return SNAPSHOT_MAGIC + len(body).to_bytes(4, "big") + body


def _read_exact(f: BinaryIO, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _version(header: dict[Any, Any], field: str, newest: int, what: str) -> None:
    value = header.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UnsupportedFormat(f"raftlog snapshot header has an unreadable {field}: {value!r}")
    if value > newest:
        raise UnsupportedFormat(
            f"snapshot has {what} {value}; this raftlog understands up to {newest}"
        )


def parse_header(f: BinaryIO) -> tuple[dict[str, Any], int]:
    """Read and validate the header at the current position of ``f``.

    Returns (header, its size in bytes); ``f`` is left at the first byte of the LMDB
    copy. Raises UnsupportedFormat for anything this code cannot use.
    """
    prefix = _read_exact(f, len(SNAPSHOT_MAGIC) + 4)
    if prefix[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
        raise UnsupportedFormat("not a raftlog snapshot (bad magic)")
    if len(prefix) < len(SNAPSHOT_MAGIC) + 4:
        raise UnsupportedFormat("raftlog snapshot is truncated inside its header")
    size = int.from_bytes(prefix[len(SNAPSHOT_MAGIC) :], "big")
    if size > MAX_HEADER_BYTES:
        raise UnsupportedFormat(f"raftlog snapshot header claims {size} bytes; refusing")
    body = _read_exact(f, size)
    if len(body) < size:
        raise UnsupportedFormat("raftlog snapshot is truncated inside its header")
    try:
        header = msgpack.unpackb(body, raw=False, use_list=True)
    except Exception as exc:
        raise UnsupportedFormat(f"raftlog snapshot header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise UnsupportedFormat("raftlog snapshot header is not a map")
    _version(header, "format", SNAPSHOT_FORMAT, "format")
    _version(header, "state_format", STATE_FORMAT, "state format")
    applied = header.get("last_applied")
    if not (
        isinstance(applied, list)
        and len(applied) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in applied)
    ):
        raise UnsupportedFormat(f"raftlog snapshot header has a bad last_applied: {applied!r}")
    return header, len(prefix) + size


def read_snapshot_header(source: str | os.PathLike[str] | BinaryIO) -> dict[str, Any]:
    """The validated header of a snapshot file (a path, or a binary file object read from
    its current position). Raises UnsupportedFormat for a non-snapshot or newer format."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            return parse_header(f)[0]
    return parse_header(source)[0]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SnapshotSource:
    """A consistent view of the state at ``last_applied``, ready to be written out.

    Made by ``StateMachine.begin_snapshot`` on the caller's thread: it holds an LMDB
    read transaction and a shared gate slot until ``close()``, so map growth, restore
    and close of the state machine wait for it. Close it promptly (it is a context
    manager). ``write_to`` may run on any thread; ``close`` waits for a running
    ``write_to`` to finish.
    """

    def __init__(
        self,
        env: lmdb.Environment,
        txn: lmdb.Transaction[bytes],
        release: Callable[[], None],
        last_applied: tuple[int, int],
        cluster_id: str | None,
        created_ms: int,
    ) -> None:
        self._env = env
        self._txn = txn
        self._release = release
        self._last_applied = last_applied
        self._cluster_id = cluster_id
        self._created_ms = created_ms
        self._lock = threading.Lock()
        self._closed = False

    @property
    def last_applied(self) -> tuple[int, int]:
        return self._last_applied

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    def write_to(self, fd: int) -> int:
        """Write header + compacted LMDB copy at the current position of ``fd``, fsync it.

        ``fd`` must be a regular file open for writing (flush any Python buffer over it
        first). Returns the number of bytes written. Raises ValueError when closed,
        OSError/lmdb.Error when writing fails (the state itself is not affected).
        """
        with self._lock:
            if self._closed:
                raise ValueError("snapshot source is closed")
            start = os.lseek(fd, 0, os.SEEK_CUR)
            write_all(fd, encode_header(self._last_applied, self._cluster_id, self._created_ms))
            self._env.copyfd(fd, compact=True, txn=self._txn)
            os.fsync(fd)
            return os.lseek(fd, 0, os.SEEK_CUR) - start

    def close(self) -> None:
        """End the read transaction and release the gate slot. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._txn.abort()
            finally:
                self._release()

    def __enter__(self) -> SnapshotSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- restore helpers ------------------------------------------------------------------


def stage_data(src: BinaryIO, staging: Path) -> None:
    """Copy the rest of ``src`` (an LMDB copy) to ``staging/data.mdb`` and fsync it.

    ``staging`` is recreated from scratch; on failure it is removed again. Raises OSError.
    """
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with open(staging / "data.mdb", "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def validate_staged(staging: Path, header: dict[str, Any]) -> None:
    """Check that ``staging`` holds a raftlog state matching ``header``.

    Opens it read-only without a lock file. Raises UnsupportedFormat when the data is
    not a usable raftlog state (not LMDB, databases missing, newer format, or a
    last_applied different from the header's).
    """
    if not (staging / "data.mdb").stat().st_size:
        raise UnsupportedFormat("raftlog snapshot has no state data after its header")
    try:
        env = lmdb.open(str(staging), readonly=True, lock=False, subdir=True, max_dbs=MAX_DBS)
    except lmdb.Error as exc:
        raise UnsupportedFormat(f"raftlog snapshot data is not an LMDB environment: {exc}") from exc
    try:
        with env.begin() as txn:
            dbs = [env.open_db(name, txn=txn, create=False) for name in DB_NAMES]
            check_format(txn.get(K_FORMAT, db=dbs[0]), staging)
            applied = unpack_last_applied(txn.get(K_LAST_APPLIED, db=dbs[0]))
    except (lmdb.Error, FatalStorageError) as exc:
        raise UnsupportedFormat(f"raftlog snapshot data is not a usable state: {exc}") from exc
    finally:
        env.close()
    if list(applied) != header["last_applied"]:
        raise UnsupportedFormat(
            f"raftlog snapshot header says last_applied {header['last_applied']} "
            f"but its data holds {list(applied)}"
        )


def recover_dirs(path: Path, staging: Path, old: Path) -> None:
    """Clean up after a crash during restore (call before opening ``path``).

    A crash between the two renames of ``swap_dirs`` leaves only ``old``: keep that
    (the old state; Raft sends the snapshot again). A staging directory is always stale.
    """
    if not path.exists() and old.exists():
        os.replace(old, path)
    elif old.exists():
        shutil.rmtree(old)
    if staging.exists():
        shutil.rmtree(staging)


def swap_dirs(path: Path, staging: Path, old: Path) -> None:
    """Rename ``path`` to ``old`` and ``staging`` to ``path``; nothing may have them open.

    Raises OSError; then ``path`` holds the old state again and staging is removed.
    At every instant ``path`` or ``old`` holds a complete state (see recover_dirs).
    """
    shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(path, old)
        try:
            os.replace(staging, path)
        except OSError:
            os.replace(old, path)
            raise
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
