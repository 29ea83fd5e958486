"""LMDB layout of the state machine: key and record codecs, environment opening, the gate.

Layout (named databases of one LMDB environment):

* ``meta``: b"format" -> msgpack int; b"last_applied" -> msgpack [index, term];
  b"cluster" -> msgpack {"cluster_id", "name", "enabled_version"}.
* ``logs``: log name (UTF-8) -> msgpack [first_offset, next_offset, count, bytes,
  last_timestamp_ms].
* ``entries``: log name + b"\\x00" + offset (8 bytes big-endian) -> msgpack
  [value_json, key, timestamp_ms, raft_index, raft_term]. Log names never hold NUL, so
  one log's entries are one contiguous key range in offset order.
* ``results``: Raft index (8 bytes big-endian) -> msgpack of ``ApplyResult.to_dict()``.
* ``dedup``: reserved for idempotency records (created, left empty).

Records are read back with ``unpack``, which turns undecodable bytes into
FatalStorageError: a corrupt record is a node-local failure.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from raftlog.errors import FatalStorageError, UnsupportedFormat
from raftlog.state_types import ClusterMeta, Entry, LogInfo

__all__ = [
    "DB_NAMES",
    "K_CLUSTER",
    "K_FORMAT",
    "K_LAST_APPLIED",
    "MAX_DBS",
    "STATE_FORMAT",
    "Gate",
    "Handles",
    "check_format",
    "content_digest",
    "entry_key",
    "entry_prefix",
    "entry_size",
    "fsync_dir",
    "offset_of",
    "open_env",
    "pack",
    "pack_cluster",
    "pack_entry",
    "pack_log",
    "u64",
    "unpack",
    "unpack_cluster",
    "unpack_entry",
    "unpack_last_applied",
    "unpack_log",
]

STATE_FORMAT = 1  # the newest on-disk format this code understands (and writes)

K_FORMAT = b"format"
K_LAST_APPLIED = b"last_applied"
K_CLUSTER = b"cluster"
DB_NAMES = (b"meta", b"logs", b"entries", b"results", b"dedup")
MAX_DBS = 8


def pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def unpack(raw: bytes, what: str) -> Any:
    """Decode a stored record; FatalStorageError when it is not what this code wrote."""
    try:
        return msgpack.unpackb(raw, raw=False, use_list=True)
    except Exception as exc:
        raise FatalStorageError(f"corrupt {what} record in the state store: {exc}") from exc


def _ints(value: Any, n: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != n:
        raise FatalStorageError(f"corrupt {what} record in the state store: {value!r}")
    return value


# --- keys -------------------------------------------------------------------------------


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def entry_prefix(log: str) -> bytes:
    return log.encode("utf-8") + b"\x00"


def entry_key(log: str, offset: int) -> bytes:
    return entry_prefix(log) + u64(offset)


def offset_of(key: bytes) -> int:
    return int.from_bytes(key[-8:], "big")


# --- records ----------------------------------------------------------------------------


def pack_log(info: LogInfo) -> bytes:
    return pack(
        [info.first_offset, info.next_offset, info.count, info.bytes, info.last_timestamp_ms]
    )


def unpack_log(log: str, raw: bytes) -> LogInfo:
    first, nxt, count, size, ts = _ints(unpack(raw, "logs"), 5, "logs")
    return LogInfo(log, first, nxt, count, size, ts)


def pack_entry(value_json: bytes, key: str | None, ts: int, index: int, term: int) -> bytes:
    return pack([value_json, key, ts, index, term])


def unpack_entry(offset: int, raw: bytes) -> Entry:
    value_json, key, ts, index, term = _ints(unpack(raw, "entries"), 5, "entries")
    return Entry(offset, value_json, key, ts, index, term)


def entry_size(value_json: bytes, key: str | None) -> int:
    """What an entry counts for in ``LogInfo.bytes``."""
    return len(value_json) + (len(key.encode("utf-8")) if key is not None else 0)


def pack_cluster(meta: ClusterMeta) -> bytes:
    return pack(
        {
            "cluster_id": meta.cluster_id,
            "name": meta.name,
            "enabled_version": meta.enabled_version,
        }
    )


def unpack_cluster(raw: bytes | None) -> ClusterMeta:
    if raw is None:
        return ClusterMeta(None, None, 1)
    d = unpack(raw, "cluster meta")
    if not isinstance(d, dict):
        raise FatalStorageError(f"corrupt cluster meta record in the state store: {d!r}")
    return ClusterMeta(d.get("cluster_id"), d.get("name"), d.get("enabled_version", 1))


def unpack_last_applied(raw: bytes | None) -> tuple[int, int]:
    if raw is None:
        return (0, 0)
    index, term = _ints(unpack(raw, "last_applied"), 2, "last_applied")
    return (index, term)


# --- environment ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handles:
    """An open environment and its named databases."""

    env: lmdb.Environment
    meta: lmdb._Database
    logs: lmdb._Database
    entries: lmdb._Database
    results: lmdb._Database
    dedup: lmdb._Database


def check_format(raw: bytes | None, where: Path) -> None:
    """Raise UnsupportedFormat when the stored format marker is newer or unreadable."""
    if raw is None:
        return
    fmt = unpack(raw, "format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise UnsupportedFormat(f"state at {where} has an unreadable format marker {fmt!r}")
    if fmt > STATE_FORMAT:
        raise UnsupportedFormat(
            f"state at {where} has format {fmt}; this raftlog understands up to {STATE_FORMAT}"
        )


def open_env(path: Path, *, map_size: int, sync: bool) -> Handles:
    """Open (creating if needed) the environment in directory ``path``.

    A new environment gets format STATE_FORMAT and the initial cluster meta. Raises
    UnsupportedFormat for a newer format (checked before anything is written), lmdb.Error
    or OSError when the files cannot be opened.
    """
    path.mkdir(parents=True, exist_ok=True)
    data_file = path / "data.mdb"
    if data_file.exists():
        map_size = max(map_size, data_file.stat().st_size)
    env = lmdb.open(
        str(path),
        map_size=map_size,
        subdir=True,
        max_dbs=MAX_DBS,
        sync=sync,
        metasync=False,
        readahead=False,
        writemap=False,
        lock=True,
    )
    try:
        with env.begin() as txn:
            try:
                meta = env.open_db(b"meta", txn=txn, create=False)
            except lmdb.NotFoundError:
                pass
            else:
                check_format(txn.get(K_FORMAT, db=meta), path)
        with env.begin(write=True) as txn:
            dbs = [env.open_db(name, txn=txn) for name in DB_NAMES]
            if txn.get(K_FORMAT, db=dbs[0]) is None:
                txn.put(K_FORMAT, pack(STATE_FORMAT), db=dbs[0])
                txn.put(K_CLUSTER, pack_cluster(ClusterMeta(None, None, 1)), db=dbs[0])
    except BaseException:
        env.close()
        raise
    return Handles(env, *dbs)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the gate ---------------------------------------------------------------------------


class Gate:
    """Readers/exclusive gate over one LMDB environment.

    Shared holders are threads with a live LMDB transaction (reads, the apply write
    txn, an open snapshot source). Exclusive holders need no transaction alive in the
    process: map growth (``set_mapsize``), restore, close. Once an exclusive request is
    pending, new shared requests wait, so a stream of readers cannot starve it.

    Not reentrant: a thread holding a shared slot must not ask for another one, nor for
    the exclusive one (it would deadlock); it may ``upgrade`` its slot instead.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._pending_exclusive = 0

    def acquire_shared(self) -> None:
        """Blocks while an exclusive holder runs or is pending."""
        with self._cond:
            while self._exclusive or self._pending_exclusive:
                self._cond.wait()
            self._shared += 1

    def release_shared(self) -> None:
        with self._cond:
            self._shared -= 1
            if self._shared <= 1:  # 0 frees acquire_exclusive, 1 an upgrade
                self._cond.notify_all()

    def acquire_exclusive(self) -> None:
        """Blocks until every shared slot is released and no other exclusive holder runs."""
        with self._cond:
            self._pending_exclusive += 1
            acquired = False
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
                self._exclusive = acquired = True
            finally:
                self._pending_exclusive -= 1
                if not acquired:  # interrupted: readers blocked on our request may go
                    self._cond.notify_all()

    def upgrade(self) -> None:
        """Turn the caller's shared slot into the exclusive hold (release_exclusive ends it).

        Waits for every other shared holder to leave; new shared requests wait. Only one
        thread may upgrade at a time (the apply thread): two would wait for each other.
        """
        with self._cond:
            self._pending_exclusive += 1
            upgraded = False
            try:
                while self._exclusive or self._shared > 1:
                    self._cond.wait()
                self._shared -= 1
                self._exclusive = upgraded = True
            finally:
                self._pending_exclusive -= 1
                if not upgraded:  # interrupted: we still hold our shared slot
                    self._cond.notify_all()

    def release_exclusive(self) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.acquire_exclusive()
        try:
            yield
        finally:
            self.release_exclusive()


def content_digest(txn: lmdb.Transaction[bytes], h: Handles) -> tuple[int, str]:
    """(applied index, sha256 hex) of the logical content visible in ``txn``.

    Covers last_applied, the cluster meta and every record of logs, entries and dedup,
    in key order, each length-prefixed. Not results (their window may differ between
    replicas), nor the format marker or anything about the LMDB files.
    """
    applied = unpack_last_applied(txn.get(K_LAST_APPLIED, db=h.meta))
    meta = unpack_cluster(txn.get(K_CLUSTER, db=h.meta))
    hasher = hashlib.sha256(b"raftlog-digest-1\x00")
    hasher.update(pack(["last_applied", applied[0], applied[1]]))
    hasher.update(pack(["cluster", meta.cluster_id, meta.name, meta.enabled_version]))
    for label, db in (("logs", h.logs), ("entries", h.entries), ("dedup", h.dedup)):
        hasher.update(pack(["db", label]))
        count = 0
        for key, value in txn.cursor(db=db):
            hasher.update(u64(len(key)) + key + u64(len(value)))
            hasher.update(value)
            count += 1
        hasher.update(pack(["end", label, count]))
    return applied[0], hasher.hexdigest()
