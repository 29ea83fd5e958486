"""Snapshot files of the state machine: header codec and the snapshot source.

A snapshot is ``SNAPSHOT_MAGIC`` + 4-byte big-endian header length + msgpack header
``{"format", "state_format", "last_applied": [index, term], "cluster_id", "created_ms"}``
followed by a compacted copy of the LMDB data file and, from format 2 on, a checksum
trailer (``raftlog.checksum``: ``b"RLSNAPCK" | u64 length | u32 CRC32C`` over every
byte from the magic to the end of the LMDB copy), which ends the snapshot. Format 1
(no trailer) runs to the end of the file and is still read, unchecked. A caller may
put its own bytes in front; restore takes an offset.

Before the copy is written every record of the frozen view is verified (checksums and
the logs/entries agreement, ``state_verify.check_txn``): a snapshot never carries a
damaged record. The trailer's CRC is computed by reading the written bytes back.
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

from raftlog import checksum
from raftlog.errors import CorruptStorage, FatalStorageError, UnsupportedFormat
from raftlog.state.store import (
    DB_NAMES,
    K_FORMAT,
    K_LAST_APPLIED,
    MAX_DBS,
    STATE_FORMAT,
    fsync_dir,
    pack,
    read_format,
    unpack,
    unpack_last_applied,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_MAGIC",
    "TRAILER_MAGIC",
    "CorruptSnapshot",
    "SnapshotSource",
    "data_length",
    "encode_header",
    "parse_header",
    "read_snapshot_header",
    "recover_dirs",
    "stage_data",
    "swap_dirs",
    "validate_staged",
    "verify_snapshot_stream",
    "write_all",
]

SNAPSHOT_MAGIC = b"RLSNAP01"
SNAPSHOT_FORMAT = 2  # the newest snapshot format this code understands (and writes)
TRAILER_MAGIC = b"RLSNAPCK"
MAX_HEADER_BYTES = 1 << 20


class CorruptSnapshot(UnsupportedFormat):
    """A snapshot that fails its checksum (or its records' checks): refused, never
    installed. An UnsupportedFormat, so every path that refuses an unusable snapshot
    (keeping the old state) refuses this one too; the message says what was wrong."""


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


def data_length(header: dict[str, Any], header_size: int, available: int) -> int:
    """Bytes of LMDB copy after a header, given the ``available`` bytes after it (to the
    end of the file): all of them in format 1, all but the trailer from format 2 on."""
    if header["format"] >= 2:
        return available - checksum.TRAILER_SIZE
    return available


def verify_snapshot_stream(f: BinaryIO, start: int) -> str | None:
    """None when the snapshot beginning at byte ``start`` of ``f`` has a matching
    trailer (or is format 1, which has none); else what is wrong. Raises
    UnsupportedFormat for an unreadable header, OSError."""
    f.seek(start)
    header, _ = parse_header(f)
    if header["format"] < 2 or not checksum.verification_enabled():
        return None
    f.seek(start)
    return checksum.verify_stream(f, TRAILER_MAGIC)


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
        *,
        dbs: dict[bytes, Any] | None = None,
        on_corrupt: Callable[[CorruptStorage], CorruptStorage] | None = None,
    ) -> None:
        self._dbs = dbs
        self._on_corrupt = on_corrupt
        self.outer_crc: int | None = None
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

    def write_to(self, fd: int, crc_base: int | None = None) -> int:
        """Verify every record, then write header + compacted LMDB copy + trailer at the
        current position of ``fd``, and fsync it.

        ``fd`` must be a regular file open for reading and writing (flush any Python
        buffer over it first). Returns the number of bytes written. With ``crc_base``
        (a byte offset of ``fd`` at or before the current position), ``outer_crc`` is
        then the CRC32C of every byte from there to the end of what was written. Raises
        CorruptStorage when a record fails its check (nothing useful is written),
        ValueError when closed, OSError/lmdb.Error when writing fails (the state itself
        is not affected).
        """
        with self._lock:
            if self._closed:
                raise ValueError("snapshot source is closed")
            self._verify_records()
            start = os.lseek(fd, 0, os.SEEK_CUR)
            write_all(fd, encode_header(self._last_applied, self._cluster_id, self._created_ms))
            self._env.copyfd(fd, compact=True, txn=self._txn)
            end = os.lseek(fd, 0, os.SEEK_END)
            inner = checksum.crc_of_region(fd, start, end)
            trailer = checksum.encode_trailer(TRAILER_MAGIC, end - start, inner)
            write_all(fd, trailer)
            os.fsync(fd)
            if crc_base is not None:
                outer = checksum.crc_of_region(fd, crc_base, start)
                outer = checksum.crc_of_region(fd, start, end, outer)
                self.outer_crc = checksum.crc(trailer, outer)
            return end + len(trailer) - start

    def _verify_records(self) -> None:
        if self._dbs is None or not checksum.verification_enabled():
            return
        from raftlog.state.verify import check_txn  # imports this module

        problems = check_txn(self._txn, self._dbs, "data.mdb", limit=1)
        if problems:
            p = problems[0]
            error = CorruptStorage(
                f"refusing to write a snapshot: {p.where}: {p.what}", file="data.mdb"
            )
            raise error if self._on_corrupt is None else self._on_corrupt(error)

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


def stage_data(src: BinaryIO, staging: Path, length: int | None = None) -> None:
    """Copy ``length`` bytes (None: the rest) of ``src`` (an LMDB copy) to
    ``staging/data.mdb`` and fsync it.

    ``staging`` is recreated from scratch; on failure it is removed again. Raises OSError.
    """
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with open(staging / "data.mdb", "wb") as out:
            if length is None:
                shutil.copyfileobj(src, out, 1 << 20)
            else:
                left = length
                while left > 0:
                    chunk = src.read(min(1 << 20, left))
                    if not chunk:
                        raise OSError(f"snapshot ended {left} bytes early")
                    out.write(chunk)
                    left -= len(chunk)
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
    from raftlog.state.verify import check_txn  # imports this module

    try:
        with env.begin() as txn:
            dbs = [env.open_db(name, txn=txn, create=False) for name in DB_NAMES]
            fmt = read_format(txn.get(K_FORMAT, db=dbs[0]), staging)
            raw = txn.get(K_LAST_APPLIED, db=dbs[0])
            if fmt == 1:  # unsealed records; upgraded when the restored state opens
                applied = tuple(unpack(raw, "last_applied")) if raw else (0, 0)
            else:
                applied = unpack_last_applied(raw)
            if checksum.verification_enabled():
                problems = check_txn(
                    txn,
                    dict(zip(DB_NAMES, dbs, strict=True)),
                    "data.mdb",
                    limit=1,
                    fmt=fmt or STATE_FORMAT,
                )
                if problems:
                    raise CorruptSnapshot(
                        f"raftlog snapshot data: {problems[0].where}: {problems[0].what}"
                    )
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
