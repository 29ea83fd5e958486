"""Offline and in-process checks of stored state and snapshot files (issue 9).

``verify_state_dir`` (and ``raftlog.raft.snapshot_check.verify_snapshot_file``, which
reads Raft dumps and so lives with them) are the library behind an offline checker:
they never create or modify anything in what they check (the state is opened
read-only without a lock file, so run them on a stopped node: a node writing at the
same time may make them report damage that is not there). Each problem found is a
``Problem`` naming the file, where (a byte offset, or database and key) and what.

``check_txn`` is the record walk they share with the snapshot writer (which refuses
to ship a damaged record) and snapshot installs: every record's checksum (format 2),
its shape, and the agreement of each ``logs`` record with its entries (first and next
offset, count, bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from raftlog.errors import CorruptStorage, FatalStorageError, UnsupportedFormat
from raftlog.state.store import (
    DB_NAMES,
    K_FORMAT,
    MAX_DBS,
    STATE_FORMAT,
    describe_key,
    offset_of,
    read_format,
    unpack,
    unseal,
)

__all__ = ["Problem", "check_env", "check_txn", "verify_state_dir"]

_META_KEYS = {b"format", b"last_applied", b"cluster"}


@dataclass(frozen=True)
class Problem:
    """One thing found wrong: in ``file``, at ``where`` (byte offset, or db/key), ``what``."""

    file: str
    where: str
    what: str


@dataclass
class _LogTally:
    count: int = 0
    size: int = 0
    first: int | None = None
    last: int | None = None
    damaged: bool = False  # some entry failed its check: its bytes are unknown


@dataclass
class _Walk:
    file: str
    fmt: int
    limit: int | None
    problems: list[Problem] = field(default_factory=list)
    tallies: dict[str, _LogTally] = field(default_factory=dict)

    def add(self, where: str, what: str) -> bool:
        """Record a problem; True when the walk should stop (limit reached)."""
        self.problems.append(Problem(self.file, where, what))
        return self.limit is not None and len(self.problems) >= self.limit

    def body(self, db: bytes, key: bytes, raw: bytes) -> Any:
        """The decoded record, or _BAD after recording why it is not usable."""
        where = f"db {db.decode()}, {describe_key(db, key)}"
        try:
            data = raw if self.fmt == 1 else unseal(db, key, raw)
        except CorruptStorage:
            self.add(where, "checksum mismatch: the record is damaged")
            return _BAD
        try:
            return unpack(data, db.decode())
        except FatalStorageError as exc:
            self.add(where, f"the record does not decode: {exc}")
            return _BAD


_BAD = object()


def _shape(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def check_txn(
    txn: lmdb.Transaction[bytes],
    dbs: dict[bytes, Any],
    file: str,
    *,
    limit: int | None = None,
    fmt: int = STATE_FORMAT,
) -> list[Problem]:
    """Walk every record of every database visible in ``txn``; the problems found
    (at most ``limit``). ``fmt`` 1: no checksums to check, shapes and counts only."""
    walk = _Walk(file, fmt, limit)
    for name in DB_NAMES:
        if _walk_db(walk, txn, name, dbs[name]):
            return walk.problems
    _check_logs(walk, txn, dbs[b"logs"])
    return walk.problems[:limit] if limit is not None else walk.problems


def _walk_db(walk: _Walk, txn: lmdb.Transaction[bytes], name: bytes, db: Any) -> bool:
    """Check one database's records; True when the walk must stop."""
    for key, raw in txn.cursor(db=db):
        where = f"db {name.decode()}, {describe_key(name, key)}"
        if name == b"meta":
            if key not in _META_KEYS:
                if walk.add(where, "unknown meta key"):
                    return True
                continue
            if key == K_FORMAT:
                continue  # read_format checked it before the walk
        value = walk.body(name, key, raw)
        if value is _BAD:
            if name == b"entries":  # still count it, so its logs record is not blamed
                _tally(walk, key, None)
            if walk.limit is not None and len(walk.problems) >= walk.limit:
                return True
            continue
        if (
            name == b"entries"
            and not _entry_ok(walk, key, value, where)
            and walk.limit is not None
            and len(walk.problems) >= walk.limit
        ):
            return True
    return False


def _entry_ok(walk: _Walk, key: bytes, value: Any, where: str) -> bool:
    if len(key) < 9 or key[-9:-8] != b"\x00" or not _shape(value, 5):
        walk.add(where, f"not an entry record: {value!r:.80}")
        return False
    value_json, entry_key_field = value[0], value[1]
    if not isinstance(value_json, bytes) or not (
        entry_key_field is None or isinstance(entry_key_field, str)
    ):
        walk.add(where, "entry fields have the wrong types")
        return False
    size = len(value_json) + (
        len(entry_key_field.encode("utf-8")) if entry_key_field is not None else 0
    )
    _tally(walk, key, size)
    return True


def _tally(walk: _Walk, key: bytes, size: int | None) -> None:
    if len(key) < 9 or key[-9:-8] != b"\x00":
        return
    tally = walk.tallies.setdefault(key[:-9].decode("utf-8", "replace"), _LogTally())
    offset = offset_of(key)
    tally.count += 1
    if size is None:
        tally.damaged = True
    else:
        tally.size += size
    tally.first = offset if tally.first is None else min(tally.first, offset)
    tally.last = offset if tally.last is None else max(tally.last, offset)


def _check_logs(walk: _Walk, txn: lmdb.Transaction[bytes], db: Any) -> None:
    seen: set[str] = set()
    for key, raw in txn.cursor(db=db):
        log = key.decode("utf-8", "replace")
        seen.add(log)
        value = walk.body(b"logs", key, raw)
        where = f"db logs, log {log!r}"
        if value is _BAD:
            continue
        if not _shape(value, 5) or not all(isinstance(x, int) for x in value):
            walk.add(where, f"not a logs record: {value!r:.80}")
            continue
        first, nxt, count, size, _ts = value
        t = walk.tallies.get(log, _LogTally())
        for what in _disagreements(first, nxt, count, size, t):
            if walk.add(where, what):
                return
    for log in sorted(set(walk.tallies) - seen):
        if walk.add(f"db entries, log {log!r}", "entries of a log that has no logs record"):
            return


def _disagreements(first: int, nxt: int, count: int, size: int, t: _LogTally) -> Iterator[str]:
    if not 0 <= first <= nxt:
        yield f"first offset {first} is above next offset {nxt}"
    if count != t.count:
        yield f"the record counts {count} entries, {t.count} are stored"
    if size != t.size and not t.damaged:
        yield f"the record counts {size} bytes of entries, {t.size} are stored"
    if t.first is not None and t.first < first:
        yield f"an entry is stored at offset {t.first}, below the first offset {first}"
    if t.last is not None and t.last >= nxt:
        yield f"an entry is stored at offset {t.last}, at or past the next offset {nxt}"
    if count and count > nxt - first:
        yield f"{count} entries cannot fit between offsets {first} and {nxt}"


def check_env(env_dir: Path, file: str) -> list[Problem]:
    """Open ``env_dir`` read-only, without a lock file, and walk it."""
    try:
        env = lmdb.open(str(env_dir), readonly=True, lock=False, subdir=True, max_dbs=MAX_DBS)
    except lmdb.Error as exc:
        return [Problem(file, "file", f"not a readable LMDB environment: {exc}")]
    try:
        with env.begin() as txn:
            dbs: dict[bytes, Any] = {}
            for name in DB_NAMES:
                try:
                    dbs[name] = env.open_db(name, txn=txn, create=False)
                except lmdb.Error as exc:
                    return [Problem(file, f"db {name.decode()}", f"missing or unreadable: {exc}")]
            try:
                fmt = read_format(txn.get(K_FORMAT, db=dbs[b"meta"]), env_dir)
            except (UnsupportedFormat, CorruptStorage, FatalStorageError) as exc:
                return [Problem(file, "db meta, b'format'", str(exc))]
            if fmt is None:
                return [Problem(file, "db meta, b'format'", "no format marker")]
            problems = check_txn(txn, dbs, file, fmt=fmt)
            if fmt == 1:
                what = "format 1: records carry no checksums; only their shape was checked"
                problems.insert(0, Problem(file, "db meta, b'format'", what))
            return problems
    except lmdb.Error as exc:
        return [Problem(file, "file", f"reading failed: {exc}")]
    finally:
        env.close()


def verify_state_dir(path: Path) -> list[Problem]:
    """Every problem of the LMDB state in directory ``path`` (``<data dir>/state``).

    An empty list: every record passed. Nothing is created or modified."""
    file = str(path / "data.mdb")
    if not path.is_dir():
        return [Problem(str(path), "directory", "missing: no state directory here")]
    if not (path / "data.mdb").is_file():
        return [Problem(file, "file", "missing: the directory holds no data.mdb")]
    return check_env(path, file)
