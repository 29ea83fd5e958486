"""The replicated state machine of raftlog, stored in LMDB.

Imports neither PySyncObj nor any web framework: the Raft layer feeds it committed
commands, the API layer reads from it.

Durability comes from the Raft journal, not from LMDB (DESIGN.md, "Apply: durability
from the journal"). ``apply`` writes each entry into an open *batch*, one LMDB write
transaction holding many entries; the batch is committed, without syncing, when it
reaches ``batch_max_entries`` entries, ``batch_max_bytes`` bytes of commands or
``batch_max_age_s`` seconds, and whenever the owner calls :meth:`StateMachine.commit`
(the node does at the end of every apply run of a tick). Nothing of a batch is visible
to other threads (reads, ``digest``, ``last_applied``) before it commits. LMDB is
synced (:meth:`StateMachine.sync`) before a snapshot view is frozen and at a clean
close. A dirty marker (``marker.py``) records which boot may hold unsynced commits: a
state left by another boot is not trusted and is discarded at open
(:attr:`StateMachine.discarded` says why; the owner rebuilds it).

Threads:

* ``apply``, ``commit``, ``sync``, ``abort_batch`` and ``restore``: only the Raft apply
  thread (the one that opened the batch), ``apply`` in increasing index order.
* reads, ``digest``, ``begin_snapshot``, ``snapshot``, ``last_applied``: any thread;
  they see committed state only. On the apply thread, ``digest`` and ``begin_snapshot``
  commit the open batch first.
* ``close``: any thread; waits for live transactions (including open snapshot sources
  and a batch another thread holds open); on the apply thread it commits the batch.

What a failure means:

* ``Rejected`` results are deterministic: every replica records the same one at the
  same index, and ``last_applied`` advances as for any other result.
* ``FatalStorageError``: this node's storage failed (map full and cannot grow, ENOSPC,
  EIO, a corrupt record, a failed batch commit or sync). Nothing of the open batch was
  written and ``last_applied`` stays at the last committed batch; ``apply`` refuses
  every later call: the node must stop (a restart replays the batch from the journal).
* ``UnsupportedFormat``: a command, state or snapshot of a newer version. Nothing of
  that entry was written (the batch before it is committed); for ``apply`` the node
  must stop (an older binary cannot follow).
* ``NodeStopped``: the state machine was closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import lmdb

from raftlog import commands
from raftlog.commands import MAX_INT, InvalidCommand, valid_log_name
from raftlog.errors import CorruptStorage, FatalStorageError, NodeStopped, UnsupportedFormat
from raftlog.state import marker, store
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


def _decode_result(index: int, raw: bytes) -> ApplyResult:
    body = store.unpack_result(index, raw)
    try:
        return result_from_dict(body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FatalStorageError(f"corrupt result record for index {index}: {exc}") from exc


@dataclass
class _Batch:
    """The open batch: one LMDB write transaction holding many applied entries.

    ``entries`` are kept (decoded) so the batch can be written again after a map growth
    aborted its transaction; ``results`` answer a replay of an index it holds. The
    transaction holds a shared gate slot from its start to its commit or abort."""

    staged: tuple[int, int] = (0, 0)  # last entry applied, committed or not
    entries: list[tuple[int, int, Decoded]] = field(default_factory=list)
    results: dict[int, ApplyResult] = field(default_factory=dict)
    size: int = 0  # bytes of commands
    opened_at: float = 0.0
    txn: lmdb.Transaction[bytes] | None = None
    handles: Handles | None = None
    owner: int | None = None  # thread that opened the transaction

    def add(self, index: int, term: int, decoded: Decoded, size: int, result: ApplyResult) -> None:
        self.entries.append((index, term, decoded))
        self.results[index] = result
        self.size += size
        self.staged = (index, term)


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
        batch_max_entries: int = 1,
        batch_max_bytes: int = 8 << 20,
        batch_max_age_s: float = 0.05,
        boot_id: marker.BootId = marker.read_boot_id,
        _fault_injector: Callable[[str], None] | None = None,
    ) -> None:
        """Open (creating if missing) the state in directory ``path``.

        Both ``durability`` modes commit LMDB without syncing (the Raft journal is
        what is durable; ``"os"`` is about the journal). The batch bounds say when
        ``apply`` commits on its own; the default (1 entry) commits every apply.
        ``boot_id`` reads the kernel's boot id (injectable for tests): a state whose
        dirty marker names another boot is discarded and reopened empty
        (:attr:`discarded`). Raises UnsupportedFormat for a state written by a newer
        raftlog. ``_fault_injector`` is a test hook called with "commit" just before
        each batch commits.
        """
        if durability not in ("fsync", "os"):
            raise ValueError(f"durability must be 'fsync' or 'os', got {durability!r}")
        if map_size <= 0 or max_map_size < map_size:
            raise ValueError("need 0 < map_size <= max_map_size")
        if results_window < 1:
            raise ValueError("results_window must be >= 1")
        if batch_max_entries < 1 or batch_max_bytes < 1 or batch_max_age_s < 0:
            raise ValueError("need batch_max_entries >= 1, batch_max_bytes >= 1, age >= 0")
        self._path = Path(path).absolute()
        self._restore_dir = self._path.with_name(self._path.name + ".restore")
        self._old_dir = self._path.with_name(self._path.name + ".old")
        self._untrusted_dir = self._path.with_name(self._path.name + ".untrusted")
        self._map_size = map_size
        self._max_map_size = max_map_size
        self._results_window = results_window
        self._batch_max_entries = batch_max_entries
        self._batch_max_bytes = batch_max_bytes
        self._batch_max_age_s = batch_max_age_s
        self._boot_id = boot_id() or None
        self._fault_injector = _fault_injector
        self._gate = Gate()
        self._failed: str | None = None
        # Set once a record failed its checksum (reads, apply, snapshots); stays set.
        self.corruption: CorruptStorage | None = None
        # Why the state found at open was discarded (a dirty marker of another boot);
        # None when it was trusted. The owner rebuilds the state (snapshot + journal).
        self.discarded: str | None = None
        self._h: Handles | None = None
        self._last_applied = (0, 0)  # committed: what other threads may see
        self._batch = _Batch()
        try:
            recover_dirs(self._path, self._restore_dir, self._old_dir)
            self._discard_if_untrusted()
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

    def _discard_if_untrusted(self) -> None:
        """Move a state another boot left unsynced out of the way (marker.py); it is
        deleted, never opened: it may be damaged. Crash-safe: the rename is atomic and
        the ``.untrusted`` directory is never taken back."""
        if self._untrusted_dir.exists():
            shutil.rmtree(self._untrusted_dir)
        if not self._path.exists():
            return
        recorded = marker.read(self._path)
        if recorded is None or (self._boot_id is not None and recorded == self._boot_id):
            return
        self.discarded = (
            f"the state at {self._path} holds commits that were not synced during "
            f"boot {recorded or '(unreadable marker)'}, and this is boot "
            f"{self._boot_id or '(unknown)'}: the machine restarted since, so the "
            "state may have lost or damaged pages and is not trusted"
        )
        os.replace(self._path, self._untrusted_dir)
        store.fsync_dir(self._path.parent)
        shutil.rmtree(self._untrusted_dir)
        _log.info("discarded the state at %s: %s", self._path, self.discarded)

    def _open(self) -> None:
        """Open the environment; the dirty marker is written first (every commit from
        here on is unsynced)."""
        self._path.mkdir(parents=True, exist_ok=True)
        if marker.read(self._path) != self._boot_id or self._boot_id is None:
            marker.write(self._path, self._boot_id)
        h = store.open_env(self._path, map_size=self._map_size, sync=False)
        self._map_size = h.env.info()["map_size"]
        with h.env.begin() as txn:
            self._last_applied = store.unpack_last_applied(txn.get(K_LAST_APPLIED, db=h.meta))
        self._batch = _Batch(staged=self._last_applied)
        self._h = h

    def _handles(self) -> Handles:
        if self._h is None:
            raise NodeStopped(f"the state machine at {self._path} is closed")
        return self._h

    def close(self, *, clean: bool = True) -> None:
        """Close the environment (idempotent). Waits for every live transaction.

        Clean (the default): the open batch is committed (when this thread holds it and
        nothing failed), LMDB synced and the dirty marker removed. ``clean=False`` is
        what kill -9 leaves (tests): the open batch is dropped, nothing is synced and
        the marker stays.
        """
        if self._batch.txn is not None and self._batch.owner == threading.get_ident():
            if clean and self._failed is None:
                self.commit()
            else:
                self.abort_batch()
        with self._gate.exclusive():
            h, self._h = self._h, None
            if h is None:
                return
            try:
                if clean:
                    h.env.sync(True)
                    marker.clear(self._path)
            except (lmdb.Error, OSError) as exc:
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
        """(index, term) of the last *committed* entry; (0, 0) when empty. Any thread."""
        return self._last_applied

    def batch_size(self) -> int:
        """Entries applied into the open batch, not committed yet (0: none open)."""
        return len(self._batch.entries)

    def apply(self, index: int, term: int, command: bytes) -> ApplyResult:
        """Apply the committed entry at ``index`` into the open batch. Apply thread only;
        blocks on disk I/O. The entry becomes visible when the batch commits: here, when
        a bound is reached (``last_applied()`` then covers it), or at ``commit()``.

        An index already applied is a replay: nothing changes and the stored result is
        returned (Rejected "replayed" when it fell out of the results window).
        """
        if index < 1 or term < 0:
            raise ValueError(f"bad Raft position index={index} term={term}")
        if self._failed is not None:
            raise FatalStorageError(f"state at {self._path} has fail-stopped: {self._failed}")
        batch = self._batch
        if index <= batch.staged[0]:
            return self._replayed(index)
        decoded: Decoded
        try:
            decoded = commands.decode(command)
        except InvalidCommand as exc:
            decoded = exc
        except UnsupportedFormat:
            self.commit()  # what came before is applied; this entry is not: fail-stop
            raise
        while True:
            txn, h = self._batch_txn()
            try:
                result = self._write(txn, h, index, term, decoded)
                break
            except BaseException as exc:
                self._drop_batch_txn(exc, index)  # returns after growing a full map
        batch.add(index, term, decoded, len(command), result)
        if (
            len(batch.entries) >= self._batch_max_entries
            or batch.size >= self._batch_max_bytes
            or time.monotonic() - batch.opened_at >= self._batch_max_age_s
        ):
            self.commit()
        return result

    def commit(self) -> tuple[int, int]:
        """Commit the open batch without syncing; its entries become visible. Returns
        ``last_applied()``. Apply thread only; FatalStorageError when the commit fails
        (nothing of the batch is written; the node must stop)."""
        batch = self._batch
        if not batch.entries:
            return self._last_applied
        if self._failed is not None:
            raise FatalStorageError(f"state at {self._path} has fail-stopped: {self._failed}")
        while True:
            txn, _h = self._batch_txn()
            try:
                if self._fault_injector is not None:
                    self._fault_injector("commit")
                txn.commit()
                break
            except BaseException as exc:
                self._drop_batch_txn(exc, batch.entries[-1][0], committing=True)
        batch.txn = None
        self._gate.release_shared()
        self._last_applied = batch.staged
        self._batch = _Batch(staged=batch.staged)
        return self._last_applied

    def sync(self) -> None:
        """Commit the open batch, then flush LMDB to disk (``env.sync(True)``): before a
        snapshot is taken and before the journal is compacted. Apply thread for the
        commit; FatalStorageError when the disk refuses (the node must stop)."""
        self.commit()
        with self._gate.shared():
            h = self._handles()
            try:
                h.env.sync(True)
            except lmdb.Error as exc:
                raise self._fail(f"syncing LMDB to disk failed: {exc!r}") from exc

    def abort_batch(self) -> None:
        """Drop the open batch unwritten (kill -9 in tests; a tick thread ending without
        a clean stop). Apply thread only; idempotent."""
        batch = self._batch
        if batch.txn is not None:
            _abort(batch.txn)
            batch.txn = None
            self._gate.release_shared()
        self._batch = _Batch(staged=self._last_applied)

    def _batch_txn(self) -> tuple[lmdb.Transaction[bytes], Handles]:
        """The open batch's write transaction, begun when none is open. After a map
        growth dropped it, the batch's entries are written again (deterministic: the
        same results)."""
        batch = self._batch
        while batch.txn is None:
            self._gate.acquire_shared()
            try:
                h = self._handles()
                txn = h.env.begin(write=True)
            except lmdb.Error as exc:
                self._gate.release_shared()
                raise self._fail(f"starting a write transaction: {exc!r}") from exc
            except BaseException:
                self._gate.release_shared()
                raise
            batch.txn, batch.handles, batch.owner = txn, h, threading.get_ident()
            if not batch.entries:
                batch.opened_at = time.monotonic()
            try:
                for i, t, decoded in batch.entries:
                    batch.results[i] = self._write(txn, h, i, t, decoded)
            except BaseException as exc:
                self._drop_batch_txn(exc, batch.entries[-1][0])
        assert batch.handles is not None
        return batch.txn, batch.handles

    def _write(
        self, txn: lmdb.Transaction[bytes], h: Handles, index: int, term: int, decoded: Decoded
    ) -> ApplyResult:
        """One entry's data changes, result record and last_applied, in ``txn``."""
        result = execute(txn, h, index, term, decoded)
        prune_results(txn, h, index, self._results_window)
        txn.put(u64(index), store.pack_result(index, result.to_dict()), db=h.results)
        txn.put(K_LAST_APPLIED, store.pack_last_applied(index, term), db=h.meta)
        return result

    def _drop_batch_txn(self, exc: BaseException, index: int, *, committing: bool = False) -> None:
        """Abort the batch's transaction after ``exc``. Returns when the map was full and
        has grown (the caller writes the batch again); otherwise the batch is dropped
        and the error raised (FatalStorageError / CorruptStorage: fail-stop)."""
        batch = self._batch
        txn, h = batch.txn, batch.handles
        batch.txn = None
        # py-lmdb's abort of a write txn waits until no operation runs on the
        # environment, which a steady stream of readers can postpone forever:
        # drain the readers first (growing the map needs that anyway).
        self._gate.upgrade()
        try:
            if txn is not None:
                _abort(txn)
            first = batch.entries[0][0] if batch.entries else index
            if isinstance(exc, lmdb.MapFullError) and h is not None:
                try:
                    self._grow(h, index)
                except BaseException:
                    self._batch = _Batch(staged=self._last_applied)
                    raise
                return
            # The batch's earlier entries are gone with it, and PySyncObj counts them
            # applied: whatever the error, this node must stop (a restart replays them).
            self._batch = _Batch(staged=self._last_applied)
            what = (
                f"committing index {first} to index {index}"
                if committing
                else f"applying index {index}"
                + (f" (batch from index {first})" if first != index else "")
            )
            if isinstance(exc, lmdb.Error | OSError):
                raise self._fail(f"{what} failed: {exc!r}") from exc
            if isinstance(exc, CorruptStorage):
                error = self._corrupt(exc)
                self._failed = str(error)
                raise error from exc
            self._failed = f"{what} failed: {exc!r}"
            raise exc
        finally:
            self._gate.release_exclusive()

    def _replayed(self, index: int) -> ApplyResult:
        batch = self._batch
        if index in batch.results:
            return batch.results[index]
        if batch.txn is not None and batch.handles is not None:
            # Read through the batch's own transaction: this thread holds a gate slot.
            raw = batch.txn.get(u64(index), db=batch.handles.results)
            result = None if raw is None else _decode_result(index, raw)
        else:
            result = self.result_for(index)
        if result is None:
            return Rejected(
                "replayed",
                f"entry {index} was applied before this restart; its result is no longer kept",
                {},
                index,
            )
        return result

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
        self._commit_if_owner()
        with self._read() as (txn, h):
            return store.content_digest(txn, h)

    # --- snapshots --------------------------------------------------------------------

    def _commit_if_owner(self) -> None:
        """Commit the open batch when the calling thread holds it (the apply thread);
        other threads see the committed state and leave the batch alone."""
        if self._batch.txn is not None and self._batch.owner == threading.get_ident():
            self.commit()

    def begin_snapshot(self) -> SnapshotSource:
        """Freeze the current state for a snapshot; the caller must close the source.

        On the apply thread the open batch is committed first; LMDB is then synced
        (a snapshot is taken from synced state, and the journal is compacted only
        behind a snapshot). Opens the read transaction now, on the caller's thread.
        Until the source is closed, map growth (hence an apply that fills the map),
        restore and close wait.
        """
        self._commit_if_owner()
        with self._gate.shared():
            try:
                self._handles().env.sync(True)
            except lmdb.Error as exc:
                raise self._fail(f"syncing LMDB before a snapshot failed: {exc!r}") from exc
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

        Apply thread only; must not hold a snapshot source or read on this thread; the
        open batch is committed first. The restored state is synced (staged with fsync)
        and gets a fresh dirty marker when it reopens. The
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
        self._commit_if_owner()  # what was applied stays applied if the swap fails
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
