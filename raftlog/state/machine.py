"""The replicated state machine of raftlog, stored in LMDB.

Imports neither PySyncObj nor any web framework: the Raft layer feeds it committed
commands, the API layer reads from it.

Threads:

* ``apply`` and ``restore``: only the Raft apply thread, ``apply`` in increasing
  index order.
* reads, ``digest``, ``begin_snapshot``, ``snapshot``, ``last_applied``: any thread.
* ``close``: any thread; waits for live transactions (including open snapshot sources).

What a failure means:

* ``Rejected`` results are deterministic: every replica records the same one at the
  same index, and ``last_applied`` advances as for any other result.
* ``FatalStorageError``: this node's storage failed (map full and cannot grow, ENOSPC,
  EIO, a corrupt record). Nothing of the entry was written and ``last_applied`` did not
  advance; ``apply`` refuses every later call: the node must stop.
* ``UnsupportedFormat``: a command, state or snapshot of a newer version. Nothing was
  written; for ``apply`` the node must stop (an older binary cannot follow).
* ``NodeStopped``: the state machine was closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import lmdb

from raftlog import commands
from raftlog.commands import MAX_INT, InvalidCommand, valid_log_name
from raftlog.errors import CorruptStorage, FatalStorageError, NodeStopped
from raftlog.state import store
from raftlog.state.apply import Decoded, execute, load_log, prune_results
from raftlog.state.snapshot import (
    CorruptSnapshot,
    SnapshotSource,
    data_length,
    parse_header,
    read_snapshot_header,
    recover_dirs,
    stage_data,
    swap_dirs,
    validate_staged,
    verify_snapshot_stream,
)
from raftlog.state.store import K_CLUSTER, K_LAST_APPLIED, Gate, Handles, u64
from raftlog.state.types import (
    Appended,
    ApplyResult,
    BarrierDone,
    ClusterMeta,
    ClusterMetaSet,
    Entry,
    LogDeleted,
    LogInfo,
    Rejected,
    Trimmed,
    result_from_dict,
)

__all__ = [
    "Appended",
    "ApplyResult",
    "BarrierDone",
    "ClusterMeta",
    "ClusterMetaSet",
    "Entry",
    "LogDeleted",
    "LogInfo",
    "Rejected",
    "SnapshotSource",
    "StateMachine",
    "Trimmed",
    "read_snapshot_header",
]

_log = logging.getLogger(__name__)


def _abort(txn: lmdb.Transaction[bytes]) -> None:
    with contextlib.suppress(lmdb.Error):
        txn.abort()


class StateMachine:
    """Named append-only logs of JSON entries, applied from the Raft log into LMDB."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["fsync", "os"] = "fsync",
        map_size: int = 1 << 30,
        max_map_size: int = 1 << 40,
        results_window: int = 100_000,
        _fault_injector: Callable[[str], None] | None = None,
    ) -> None:
        """Open (creating if missing) the state in directory ``path``.

        ``durability="fsync"`` syncs every apply to disk; ``"os"`` leaves flushing to the
        OS (a machine crash may lose the last applies; Raft replays them). Raises
        UnsupportedFormat for a state written by a newer raftlog. ``_fault_injector`` is
        a test hook called with "commit" just before each apply commits.
        """
        if durability not in ("fsync", "os"):
            raise ValueError(f"durability must be 'fsync' or 'os', got {durability!r}")
        if map_size <= 0 or max_map_size < map_size:
            raise ValueError("need 0 < map_size <= max_map_size")
        if results_window < 1:
            raise ValueError("results_window must be >= 1")
        self._path = Path(path).absolute()
        self._restore_dir = self._path.with_name(self._path.name + ".restore")
        self._old_dir = self._path.with_name(self._path.name + ".old")
        self._sync = durability == "fsync"
        self._map_size = map_size
        self._max_map_size = max_map_size
        self._results_window = results_window
        self._fault_injector = _fault_injector
        self._gate = Gate()
        self._failed: str | None = None
        # Set once a record failed its checksum (reads, apply, snapshots); stays set.
        self.corruption: CorruptStorage | None = None
        self._h: Handles | None = None
        self._last_applied = (0, 0)
        try:
            recover_dirs(self._path, self._restore_dir, self._old_dir)
            self._open()
        except CorruptStorage as exc:
            raise self._corrupt(exc) from exc
        except (lmdb.Error, OSError) as exc:
            # Node-local and not retried: the caller (the node) stops with exit 70.
            raise FatalStorageError(f"state at {self._path}: opening failed: {exc}") from exc

    # --- lifecycle --------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def map_size(self) -> int:
        """The current LMDB map size (grows when the map fills up)."""
        return self._map_size

    def _open(self) -> None:
        h = store.open_env(self._path, map_size=self._map_size, sync=self._sync)
        self._map_size = h.env.info()["map_size"]
        with h.env.begin() as txn:
            self._last_applied = store.unpack_last_applied(txn.get(K_LAST_APPLIED, db=h.meta))
        self._h = h

    def _handles(self) -> Handles:
        if self._h is None:
            raise NodeStopped(f"the state machine at {self._path} is closed")
        return self._h

    def close(self) -> None:
        """Close the environment (idempotent). Waits for every live transaction."""
        with self._gate.exclusive():
            h, self._h = self._h, None
            if h is None:
                return
            try:
                if not self._sync:
                    h.env.sync(True)
            except lmdb.Error as exc:
                raise FatalStorageError(f"flushing the state at {self._path}: {exc}") from exc
            finally:
                h.env.close()

    def __enter__(self) -> StateMachine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _corrupt(self, exc: CorruptStorage) -> CorruptStorage:
        """Name this state's file in a record-level CorruptStorage; remember it."""
        if exc.file != "data.mdb":
            return exc
        file = str(self._path / "data.mdb")
        error = CorruptStorage(f"{file}: {exc}", file=file)
        self.corruption = error
        return error

    def _fail(self, message: str) -> FatalStorageError:
        """Record a fail-stop and build the error to raise."""
        self._failed = message
        return FatalStorageError(
            f"state at {self._path}: {message}; last applied index stays "
            f"{self._last_applied[0]}; the node must stop"
        )

    # --- apply ------------------------------------------------------------------------

    def last_applied(self) -> tuple[int, int]:
        """(index, term) of the last applied entry; (0, 0) when empty. Any thread."""
        return self._last_applied

    def apply(self, index: int, term: int, command: bytes) -> ApplyResult:
        """Apply the committed entry at ``index``. Apply thread only; blocks on disk I/O.

        An index already applied is a replay: nothing changes and the stored result is
        returned (Rejected "replayed" when it fell out of the results window).
        """
        if index < 1 or term < 0:
            raise ValueError(f"bad Raft position index={index} term={term}")
        if self._failed is not None:
            raise FatalStorageError(f"state at {self._path} has fail-stopped: {self._failed}")
        if index <= self._last_applied[0]:
            return self._replayed(index)
        decoded: Decoded
        try:
            decoded = commands.decode(command)  # UnsupportedFormat propagates: fail-stop
        except InvalidCommand as exc:
            decoded = exc
        while (result := self._apply_once(index, term, decoded)) is None:
            pass  # the map was full and has grown: bounded, it doubles up to max_map_size
        self._last_applied = (index, term)
        return result

    def _replayed(self, index: int) -> ApplyResult:
        result = self.result_for(index)
        if result is None:
            return Rejected(
                "replayed",
                f"entry {index} was applied before this restart; its result is no longer kept",
                {},
                index,
            )
        return result

    def _apply_once(self, index: int, term: int, decoded: Decoded) -> ApplyResult | None:
        """One write transaction: data changes, result record and last_applied together.

        Returns None when the map was full and has been grown (the caller retries).
        """
        self._gate.acquire_shared()
        exclusive = False
        try:
            h = self._handles()
            try:
                txn = h.env.begin(write=True)
            except lmdb.Error as exc:
                raise self._fail(f"starting the write for index {index}: {exc!r}") from exc
            try:
                result = execute(txn, h, index, term, decoded)
                prune_results(txn, h, index, self._results_window)
                txn.put(u64(index), store.pack_result(index, result.to_dict()), db=h.results)
                txn.put(K_LAST_APPLIED, store.pack_last_applied(index, term), db=h.meta)
                if self._fault_injector is not None:
                    self._fault_injector("commit")
                txn.commit()
                return result
            except BaseException as exc:
                # py-lmdb's abort of a write txn waits until no operation runs on the
                # environment, which a steady stream of readers can postpone forever:
                # drain the readers first (growing the map needs that anyway).
                self._gate.upgrade()
                exclusive = True
                _abort(txn)
                if isinstance(exc, lmdb.MapFullError):
                    self._grow(h, index)
                    return None
                if isinstance(exc, lmdb.Error | OSError):
                    raise self._fail(f"applying index {index} failed: {exc!r}") from exc
                if isinstance(exc, CorruptStorage):
                    error = self._corrupt(exc)
                    self._failed = str(error)
                    raise error from exc
                if isinstance(exc, FatalStorageError):
                    self._failed = str(exc)
                raise
        finally:
            if exclusive:
                self._gate.release_exclusive()
            else:
                self._gate.release_shared()

    def _grow(self, h: Handles, index: int) -> None:
        """Double the map (up to max_map_size). Caller holds the gate exclusively."""
        current = h.env.info()["map_size"]
        new = min(current * 2, self._max_map_size)
        if new <= current:
            raise self._fail(
                f"the LMDB map is full at {current} bytes and max_map_size "
                f"({self._max_map_size}) allows no growth; index {index} was not applied"
            )
        try:
            h.env.set_mapsize(new)
        except lmdb.Error as exc:
            raise self._fail(f"growing the LMDB map to {new} bytes failed: {exc}") from exc
        self._map_size = new
        _log.info("state map at %s grown from %d to %d bytes", self._path, current, new)

    # --- reads (any thread) ---------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[tuple[lmdb.Transaction[bytes], Handles]]:
        """A read txn under a shared gate slot; lmdb errors become FatalStorageError."""
        with self._gate.shared():
            h = self._handles()
            txn = h.env.begin()
            try:
                yield txn, h
            except lmdb.Error as exc:
                raise FatalStorageError(f"reading the state at {self._path}: {exc}") from exc
            except CorruptStorage as exc:
                raise self._corrupt(exc) from exc
            finally:
                _abort(txn)

    def get_entry(self, log: str, offset: int) -> Entry | None:
        if not valid_log_name(log) or not 0 <= offset <= MAX_INT:
            return None
        with self._read() as (txn, h):
            key = store.entry_key(log, offset)
            raw = txn.get(key, db=h.entries)
            return None if raw is None else store.unpack_entry(key, raw)

    def read_range(self, log: str, start: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries from offset max(start, first_offset) on, in order."""
        if not valid_log_name(log) or limit <= 0 or start > MAX_INT:
            return []
        prefix = store.entry_prefix(log)
        out: list[Entry] = []
        with self._read() as (txn, h):
            info = load_log(txn, h, log)
            if info is None:
                return out
            cur = txn.cursor(db=h.entries)
            if not cur.set_range(prefix + u64(max(start, info.first_offset, 0))):
                return out
            for key, value in cur.iternext():
                if len(out) >= limit or not key.startswith(prefix):
                    break
                out.append(store.unpack_entry(key, value))
        return out

    def entry_with_info(self, log: str, offset: int) -> tuple[LogInfo | None, Entry | None]:
        """The log's info and its entry at ``offset``, read in one transaction (so they
        agree: an entry below ``first_offset`` is never returned with it)."""
        if not valid_log_name(log):
            return None, None
        with self._read() as (txn, h):
            info = load_log(txn, h, log)
            if info is None or not info.first_offset <= offset < info.next_offset:
                return info, None
            key = store.entry_key(log, offset)
            raw = txn.get(key, db=h.entries)
            return info, None if raw is None else store.unpack_entry(key, raw)

    def log_info(self, log: str) -> LogInfo | None:
        if not valid_log_name(log):
            return None
        with self._read() as (txn, h):
            return load_log(txn, h, log)

    def list_logs(self, after: str | None, limit: int) -> list[LogInfo]:
        """Up to ``limit`` logs in name order, strictly after ``after`` (None: from the start).

        Deleted logs are listed too (their record is kept, with count 0).
        """
        out: list[LogInfo] = []
        if limit <= 0:
            return out
        with self._read() as (txn, h):
            cur = txn.cursor(db=h.logs)
            if after is None:
                found = cur.first()
            else:
                floor = after.encode("utf-8", "surrogatepass")
                found = cur.set_range(floor)
                if found and cur.key() == floor:
                    found = cur.next()
            if not found:
                return out
            for key, value in cur.iternext():
                if len(out) >= limit:
                    break
                out.append(store.unpack_log(key.decode("utf-8"), value))
        return out

    def cluster_meta(self) -> ClusterMeta:
        with self._read() as (txn, h):
            return store.unpack_cluster(txn.get(K_CLUSTER, db=h.meta))

    def result_for(self, index: int) -> ApplyResult | None:
        """The stored result of ``index``, or None (never applied, or pruned)."""
        if not 1 <= index <= MAX_INT:
            return None
        with self._read() as (txn, h):
            raw = txn.get(u64(index), db=h.results)
            if raw is None:
                return None
            body = store.unpack_result(index, raw)
        try:
            return result_from_dict(body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FatalStorageError(f"corrupt result record for index {index}: {exc}") from exc

    def digest(self) -> tuple[int, str]:
        """(applied index, sha256 hex) of the logical content, read in one transaction.

        Covers logs, entries, dedup, the cluster meta and last_applied, walked in key
        order; not results (their window differs) nor format or map details. Replicas
        with equal content give equal digests whatever their LMDB files look like.
        """
        with self._read() as (txn, h):
            return store.content_digest(txn, h)

    # --- snapshots --------------------------------------------------------------------

    def begin_snapshot(self) -> SnapshotSource:
        """Freeze the current state for a snapshot; the caller must close the source.

        Opens the read transaction now, on the caller's thread. Until the source is
        closed, map growth (hence an apply that fills the map), restore and close wait.
        """
        self._gate.acquire_shared()
        try:
            h = self._handles()
            txn = h.env.begin()
            try:
                applied = store.unpack_last_applied(txn.get(K_LAST_APPLIED, db=h.meta))
                meta = store.unpack_cluster(txn.get(K_CLUSTER, db=h.meta))
            except CorruptStorage as exc:
                _abort(txn)
                raise self._corrupt(exc) from exc
            except BaseException:
                _abort(txn)
                raise
        except BaseException:
            self._gate.release_shared()
            raise
        now_ms = time.time_ns() // 1_000_000
        return SnapshotSource(
            h.env,
            txn,
            self._gate.release_shared,
            applied,
            meta.cluster_id,
            now_ms,
            dbs=store.db_map(h),
            on_corrupt=self._corrupt,
        )

    def snapshot(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Write a snapshot file atomically (tmp file, fsync, rename, fsync dir)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        try:
            with self.begin_snapshot() as source:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    source.write_to(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        store.fsync_dir(target.parent.absolute())
        return source.last_applied

    def restore(self, path: str | os.PathLike[str], offset: int = 0) -> tuple[int, int]:
        """Replace the whole state with the snapshot starting at byte ``offset`` of ``path``.

        Apply thread only; must not hold a snapshot source or read on this thread. The
        snapshot is staged and checked next to the state directory before anything is
        swapped; its checksum trailer is verified before anything is staged and its
        records before the swap (CorruptSnapshot, an UnsupportedFormat). Raises
        UnsupportedFormat for an unusable snapshot, OSError when ``path``
        cannot be read, FatalStorageError when local storage fails; in all these cases
        except a failed reopen after the swap, the old state is intact and open.
        """
        if offset < 0:
            raise ValueError("offset must be >= 0")
        self._handles()  # NodeStopped when closed, before any staging
        with open(path, "rb") as f:
            problem = verify_snapshot_stream(f, offset)  # UnsupportedFormat: unreadable
            if problem is not None:
                raise CorruptSnapshot(f"snapshot {path} at byte {offset}: {problem}")
            f.seek(offset)
            header, header_size = parse_header(f)
            available = os.fstat(f.fileno()).st_size - offset - header_size
            length = data_length(header, header_size, available)
            try:
                stage_data(f, self._restore_dir, length)
            except OSError as exc:
                msg = f"staging the snapshot into {self._restore_dir}: {exc}"
                raise FatalStorageError(msg) from exc
        try:
            validate_staged(self._restore_dir, header)
        except BaseException:
            shutil.rmtree(self._restore_dir, ignore_errors=True)
            raise
        with self._gate.exclusive():
            self._swap_in()
        _log.info("state at %s restored to %s", self._path, self._last_applied)
        return self._last_applied

    def _swap_in(self) -> None:
        """Swap the staged directory into place. Caller holds the gate exclusively."""
        h, self._h = self._handles(), None
        h.env.close()
        try:
            swap_dirs(self._path, self._restore_dir, self._old_dir)
        except OSError as exc:
            try:
                self._open()
            except Exception as reopen_exc:
                raise self._fail(f"reopening after a failed restore: {reopen_exc}") from exc
            raise FatalStorageError(
                f"restore into {self._path} failed while swapping directories ({exc}); "
                "the old state is kept"
            ) from exc
        try:
            store.fsync_dir(self._path.parent)
            shutil.rmtree(self._old_dir, ignore_errors=True)
            self._open()
        except Exception as exc:
            raise self._fail(f"opening the restored state failed: {exc}") from exc
