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

Format 2 (STATE_FORMAT) *seals* every record: the stored value is the msgpack body
followed by 4 bytes, the big-endian CRC32C of ``db name + NUL + LMDB key + body``. So
a flipped byte anywhere in a record, and a record moved under another key or into
another database, fail ``unseal`` with CorruptStorage. A format-1 store (no
checksums) is upgraded in place when it is opened: one write transaction re-writes
every record sealed and sets the format to 2 (a crash leaves format 1 intact).

Records are read back with ``unseal`` + ``unpack``: a checksum mismatch is
CorruptStorage, undecodable bytes FatalStorageError: a node-local failure either way.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from raftlog import checksum
from raftlog.errors import CorruptStorage, FatalStorageError, UnsupportedFormat
from raftlog.state.gate import Gate
from raftlog.state.types import ClusterMeta, Entry, LogInfo

__all__ = [
    "DB_NAMES",
    "K_CLUSTER",
    "K_FORMAT",
    "K_LAST_APPLIED",
    "MAX_DBS",
    "SEAL_SIZE",
    "STATE_FORMAT",
    "Gate",
    "Handles",
    "check_format",
    "content_digest",
    "db_map",
    "describe_key",
    "entry_key",
    "entry_prefix",
    "entry_size",
    "fsync_dir",
    "offset_of",
    "open_env",
    "pack",
    "pack_cluster",
    "pack_entries",
    "pack_entry",
    "pack_format",
    "pack_last_applied",
    "pack_log",
    "pack_result",
    "read_format",
    "record_crc",
    "seal",
    "u64",
    "unpack",
    "unpack_cluster",
    "unpack_entry",
    "unpack_last_applied",
    "unpack_log",
    "unpack_result",
    "unseal",
    "upgrade_v1",
]

STATE_FORMAT = 2  # the newest on-disk format this code understands (and writes)
SEAL_SIZE = 4

K_FORMAT = b"format"
K_LAST_APPLIED = b"last_applied"
K_CLUSTER = b"cluster"
DB_NAMES = (b"meta", b"logs", b"entries", b"results", b"dedup")
MAX_DBS = 8


def pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def unpack(raw: bytes | memoryview, what: str) -> Any:
    """Decode a stored record; FatalStorageError when it is not what this code wrote."""
    try:
        return msgpack.unpackb(raw, raw=False, use_list=True)
    except Exception as exc:
        raise FatalStorageError(f"corrupt {what} record in the state store: {exc}") from exc


def _ints(value: Any, n: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != n:
        raise FatalStorageError(f"corrupt {what} record in the state store: {value!r}")
    return value


_SEEDS = {name: checksum.crc(name + b"\x00") for name in DB_NAMES}


def record_crc(db: bytes, key: bytes, body: bytes | memoryview) -> int:
    return checksum.crc(body, checksum.crc(key, _SEEDS[db]))


def seal(db: bytes, key: bytes, body: bytes) -> bytes:
    """The stored form of ``body`` under ``key`` in database ``db`` (format 2)."""
    return body + record_crc(db, key, body).to_bytes(SEAL_SIZE, "big")


def unseal(db: bytes, key: bytes, raw: bytes) -> memoryview:
    """The body of a sealed record; CorruptStorage when its checksum does not match.

    ``file`` of the error is "data.mdb" (the state machine names the directory)."""
    body = memoryview(raw)[:-SEAL_SIZE]
    if checksum.verification_enabled():
        stored = int.from_bytes(raw[-SEAL_SIZE:], "big") if len(raw) >= SEAL_SIZE else None
        if stored is None or stored != record_crc(db, key, body):
            raise CorruptStorage(
                f"checksum mismatch in the state store: database {db.decode()!r}, "
                f"key {describe_key(db, key)}; the record is damaged and is not served",
                file="data.mdb",
            )
    return body


def describe_key(db: bytes, key: bytes) -> str:
    """A readable name for a record's key (log name and offset for an entry)."""
    if db == b"entries" and len(key) > 8 and key[-9:-8] == b"\x00":
        return f"log {key[:-9].decode('utf-8', 'replace')!r} offset {offset_of(key)}"
    if db == b"logs":
        return f"log {key.decode('utf-8', 'replace')!r}"
    if db == b"results" and len(key) == 8:
        return f"raft index {int.from_bytes(key, 'big')}"
    return repr(key)


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
    body = pack(
        [info.first_offset, info.next_offset, info.count, info.bytes, info.last_timestamp_ms]
    )
    return seal(b"logs", info.log.encode("utf-8"), body)


def unpack_log(log: str, raw: bytes) -> LogInfo:
    body = unseal(b"logs", log.encode("utf-8"), raw)
    first, nxt, count, size, ts = _ints(unpack(body, "logs"), 5, "logs")
    return LogInfo(log, first, nxt, count, size, ts)


def pack_entry(
    record_key: bytes, value_json: bytes, key: str | None, ts: int, index: int, term: int
) -> bytes:
    """The stored entry at ``record_key`` (``entry_key(log, offset)``)."""
    return seal(b"entries", record_key, pack([value_json, key, ts, index, term]))


_U32 = struct.Struct(">I")


def pack_entries(
    prefix: bytes,
    start: int,
    values: Sequence[bytes],
    keys: Sequence[str | None],
    ts: int,
    index: int,
    term: int,
) -> list[tuple[bytes, bytes]]:
    """``(record_key, stored record)`` of entries ``start, start + 1, ...`` of the log
    whose ``entry_prefix`` is ``prefix``: byte for byte what ``entry_key`` and
    ``pack_entry`` give for each (a unit test compares them), built one column at a
    time in C (``map``) instead of one Python call chain per entry.

    Why it is equal: the key is the prefix and the offset's 8 big-endian bytes (one
    struct); a tuple packs as the array of its items, so each body is
    ``pack([v, k, ts, index, term])``; the seal's CRC over the key then the body is the
    CRC of their concatenation (a CRC continues over the next bytes). Pure; any thread
    (the Packer is this call's own)."""
    pack_one = msgpack.Packer(use_bin_type=True).pack
    key_of = struct.Struct(f">{len(prefix)}sQ").pack
    record_keys = list(map(key_of, repeat(prefix), range(start, start + len(values))))
    bodies = list(map(pack_one, zip(values, keys, repeat(ts), repeat(index), repeat(term))))
    crcs = checksum.crcs(map(add, record_keys, bodies), repeat(_SEEDS[b"entries"]))
    return list(zip(record_keys, map(add, bodies, map(_U32.pack, crcs)), strict=True))


def unpack_entry(record_key: bytes, raw: bytes) -> Entry:
    body = unseal(b"entries", record_key, raw)
    value_json, key, ts, index, term = _ints(unpack(body, "entries"), 5, "entries")
    return Entry(offset_of(record_key), value_json, key, ts, index, term)


def entry_size(value_json: bytes, key: str | None) -> int:
    """What an entry counts for in ``LogInfo.bytes``."""
    return len(value_json) + (len(key.encode("utf-8")) if key is not None else 0)


def pack_cluster(meta: ClusterMeta) -> bytes:
    body = pack(
        {
            "cluster_id": meta.cluster_id,
            "name": meta.name,
            "enabled_version": meta.enabled_version,
        }
    )
    return seal(b"meta", K_CLUSTER, body)


def unpack_cluster(raw: bytes | None) -> ClusterMeta:
    if raw is None:
        return ClusterMeta(None, None, 1)
    d = unpack(unseal(b"meta", K_CLUSTER, raw), "cluster meta")
    if not isinstance(d, dict):
        raise FatalStorageError(f"corrupt cluster meta record in the state store: {d!r}")
    return ClusterMeta(d.get("cluster_id"), d.get("name"), d.get("enabled_version", 1))


def pack_last_applied(index: int, term: int) -> bytes:
    return seal(b"meta", K_LAST_APPLIED, pack([index, term]))


def unpack_last_applied(raw: bytes | None) -> tuple[int, int]:
    if raw is None:
        return (0, 0)
    index, term = _ints(
        unpack(unseal(b"meta", K_LAST_APPLIED, raw), "last_applied"), 2, "last_applied"
    )
    return (index, term)


def pack_result(index: int, result: dict[str, Any]) -> bytes:
    return seal(b"results", u64(index), pack(result))


def unpack_result(index: int, raw: bytes) -> Any:
    return unpack(unseal(b"results", u64(index), raw), "results")


def pack_format() -> bytes:
    return seal(b"meta", K_FORMAT, pack(STATE_FORMAT))


def read_format(raw: bytes | None, where: Path) -> int | None:
    """The stored format (None for a new store). Format 1's marker is one unsealed
    msgpack int; later ones are sealed. UnsupportedFormat when unreadable or newer."""
    if raw is None:
        return None
    sealed = len(raw) > SEAL_SIZE
    body = unseal(b"meta", K_FORMAT, raw) if sealed else raw  # CorruptStorage: damaged
    fmt = unpack(body, "format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise UnsupportedFormat(f"state at {where} has an unreadable format marker {fmt!r}")
    if fmt > STATE_FORMAT:
        raise UnsupportedFormat(
            f"state at {where} has format {fmt}; this raftlog understands up to {STATE_FORMAT}"
        )
    if (fmt == 1) == sealed:
        raise UnsupportedFormat(f"state at {where} has a malformed format marker")
    return fmt


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


def db_map(h: Handles) -> dict[bytes, Any]:
    """Database name -> handle, for code that walks every database."""
    return dict(zip(DB_NAMES, (h.meta, h.logs, h.entries, h.results, h.dedup), strict=True))


def check_format(raw: bytes | None, where: Path) -> None:
    """Raise UnsupportedFormat when the stored format marker is newer or unreadable
    (CorruptStorage when a sealed marker fails its checksum)."""
    read_format(raw, where)


def open_env(path: Path, *, map_size: int, sync: bool) -> Handles:
    """Open (creating if needed) the environment in directory ``path``.

    A new environment gets format STATE_FORMAT and the initial cluster meta; a format-1
    one is upgraded (``upgrade_v1``). Raises UnsupportedFormat for a newer format
    (checked before anything is written), CorruptStorage when a format-1 record does not
    decode, lmdb.Error or OSError when the files cannot be opened.
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
        fmt: int | None = None
        with env.begin() as txn:
            try:
                meta = env.open_db(b"meta", txn=txn, create=False)
            except lmdb.NotFoundError:
                pass
            else:
                fmt = read_format(txn.get(K_FORMAT, db=meta), path)
        with env.begin(write=True) as txn:
            dbs = [env.open_db(name, txn=txn) for name in DB_NAMES]
            if fmt is None:
                txn.put(K_FORMAT, pack_format(), db=dbs[0])
                txn.put(K_CLUSTER, pack_cluster(ClusterMeta(None, None, 1)), db=dbs[0])
        if fmt == 1:
            upgrade_v1(env, dbs, path)
    except BaseException:
        env.close()
        raise
    return Handles(env, *dbs)


def upgrade_v1(env: lmdb.Environment, dbs: list[Any], path: Path) -> None:
    """Seal every record of a format-1 store and mark it format 2, in one transaction.

    Each record must decode as one msgpack value first (CorruptStorage otherwise): a
    damaged format-1 record is refused, never sealed as if it were good. Grows the map
    when the rewrite does not fit (LMDB copies every page it changes).
    """
    for _attempt in range(8):
        try:
            with env.begin(write=True) as txn:
                for name, db in zip(DB_NAMES, dbs, strict=True):
                    cur = txn.cursor(db=db)
                    for key, value in cur.iternext():
                        if name == b"meta" and key == K_FORMAT:
                            continue
                        try:
                            msgpack.unpackb(value, raw=False)
                        except Exception as exc:
                            raise CorruptStorage(
                                f"state at {path} (format 1): database {name.decode()!r}, key "
                                f"{describe_key(name, key)} does not decode ({exc}); refusing "
                                "to upgrade it to format 2",
                                file=str(path / "data.mdb"),
                            ) from exc
                        cur.put(key, seal(name, key, value))
                txn.put(K_FORMAT, pack_format(), db=dbs[0])
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
            continue
        return
    raise FatalStorageError(f"state at {path}: upgrading to format 2 does not fit in the map")


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; with
    ``durable``, the file and the rename are fsynced before it returns. Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def content_digest(txn: lmdb.Transaction[bytes], h: Handles) -> tuple[int, str]:
    """(applied index, sha256 hex) of the logical content visible in ``txn``.

    Covers last_applied, the cluster meta and every record of logs, entries and dedup,
    in key order, each length-prefixed (bodies: every checksum is verified on the way,
    none is hashed). Not results (their window may differ between
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
        name = label.encode()
        for key, value in txn.cursor(db=db):
            body = unseal(name, key, value)
            hasher.update(u64(len(key)) + key + u64(len(body)))
            hasher.update(body)
            count += 1
        hasher.update(pack(["end", label, count]))
    return applied[0], hasher.hexdigest()
