"""Raft snapshots that carry a copy of the LMDB state, written off the tick thread.

PySyncObj calls the serializer on its tick thread and, with a custom serializer,
renames the file it produced over ``fullDumpFile`` as soon as it returns. Copying a
GB of LMDB there would stop heartbeats for seconds. So:

1. :meth:`SnapshotWriter.serialize` (tick thread) opens an LMDB read transaction
   (a consistent view, free under MVCC), hands PySyncObj a hard link of the current
   snapshot (so its rename changes nothing) and starts a thread.
2. The thread writes ``raft header + state snapshot`` to ``<dump>.building``, fsyncs
   it, renames it over the dump and fsyncs the directory.
3. :meth:`SnapshotWriter.check` (tick thread, PySyncObj's ``serializeChecker``) says
   SERIALIZING until then, and SUCCESS once; only then does PySyncObj drop the journal
   prefix the snapshot covers. A crash at any point leaves the previous snapshot and
   the uncompacted journal, which together still hold everything.

While serializing, PySyncObj sends no snapshot to followers (its transmission waits).

The view may be *ahead* of the Raft index the snapshot claims (entries replayed after
a restart were applied before): that is safe because apply skips indices at or
below the state's own ``last_applied`` and still returns their recorded results.

File layout (``dump_format.py``): ``b"RLRAFT02" | u32 header length | msgpack header |
u32 CRC32C | state snapshot`` (which ends with its own checksum trailer).

Checksums (issue 9): a dump is verified in full before it is used, whatever its
origin, and a failure never touches local state:

* at start-up (the node's own dump): a damaged dump is ``CorruptStorage`` naming the
  file, a fail-stop (``raftlog serve`` exits 65), the files left as found;
* on install (a dump a leader sent): PySyncObj has already renamed the received file
  over ``raft.snapshot``. A damaged one is moved aside to ``raft.snapshot.refused``,
  the node's previous dump is put back from ``raft.snapshot.kept`` (a hard link to
  the last dump this node wrote, installed or loaded), the error is logged and
  raised to PySyncObj, which keeps its log and state as they were and answers the
  leader with the node's own last index: the leader sends the snapshot again. A
  storage error of this node while installing (reading the received file, moving it
  aside, putting the previous dump back, linking ``raft.snapshot.kept``, restoring the
  state) is no fault of the dump: the node fail-stops with ``FatalStorageError``
  (exit 70). Writing the received chunks is ``snapshot_receive.py``, same rule;
* on the leader, while it ships its dump (``transport.py`` feeds the chunks to a
  ``DumpVerifier``): a mismatch is found before the last chunk leaves, so the follower
  never completes the transfer, and the leader fail-stops with ``CorruptStorage``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pysyncobj.config import SERIALIZER_STATE

from raftlog import checksum
from raftlog.errors import CorruptStorage, FatalStorageError, UnsupportedFormat
from raftlog.raft.dump_format import (
    FORMAT_VERSION,
    MAGIC,
    encode_dump_header,
    read_dump_header,
    verify_dump_stream,
)
from raftlog.raft.journal import describe_os_error
from raftlog.raft.storage import fsync_dir
from raftlog.state.machine import StateMachine
from raftlog.state.snapshot import CorruptSnapshot

__all__ = ["FORMAT_VERSION", "MAGIC", "SnapshotStats", "SnapshotWriter", "read_header"]

log = logging.getLogger(__name__)

read_header = read_dump_header


@dataclass
class SnapshotStats:
    taken: int = 0
    failed: int = 0
    installed: int = 0
    refused: int = 0
    last_index: int = 0
    last_seconds: float = 0.0
    last_bytes: int = 0
    longest_tick_block_s: float = 0.0


def _entry(value: Any) -> tuple[bytes, int, int]:
    command, index, term = value
    return (bytes(command), int(index), int(term))


class SnapshotWriter:
    """PySyncObj serializer/checker/deserializer trio for one node (tick thread)."""

    def __init__(
        self,
        state: StateMachine,
        dump_path: Path,
        on_fatal: Callable[[BaseException], None],
        *,
        synchronous: bool = False,
    ) -> None:
        self._state = state
        self._dump = dump_path
        self._building = dump_path.with_name(dump_path.name + ".building")
        self._kept = dump_path.with_name(dump_path.name + ".kept")
        self._refused = dump_path.with_name(dump_path.name + ".refused")
        self._startup_load = False  # set by remove_placeholder when a dump exists
        self._on_fatal = on_fatal
        self._synchronous = synchronous  # tests and benchmarks compare both modes
        self._thread: threading.Thread | None = None
        self._outcome: int | None = None
        self._cancel = threading.Event()
        self.stats = SnapshotStats()

    # -- PySyncObj hooks (tick thread) ---------------------------------------------------

    def serialize(self, tmp_file: str, data: Any) -> None:
        """PySyncObj's serializer. ``begin_snapshot`` commits the open LMDB batch and
        syncs LMDB before it freezes the view, so the view holds every entry PySyncObj
        counts applied (``last``), and the journal is compacted behind a synced state."""
        try:
            self._serialize(tmp_file, data)
        except BaseException:
            # PySyncObj swallows the exception and then waits for check() to end the
            # attempt: without FAILED here its serializer stayed busy for good.
            self._outcome = int(SERIALIZER_STATE.FAILED)
            raise

    def _serialize(self, tmp_file: str, data: Any) -> None:
        started = time.monotonic()
        last, prev, cluster = data
        source = self._state.begin_snapshot()
        if source.last_applied[0] < int(last[1]):
            source.close()
            raise FatalStorageError(
                f"snapshot refused: PySyncObj applied through index {last[1]} but the "
                f"committed state holds only {source.last_applied[0]}"
            )
        header = {
            "format": FORMAT_VERSION,
            "last": list(_entry(last)),
            "prev": list(_entry(prev)),
            "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
            "cluster_id": source.cluster_id,
        }
        tmp = Path(tmp_file)
        tmp.unlink(missing_ok=True)
        if self._dump.exists():
            os.link(self._dump, tmp)  # PySyncObj renames this over the dump: a no-op
        else:
            tmp.write_bytes(b"")  # placeholder; removed at start-up if a crash leaves it
        self._outcome = None
        self._cancel.clear()
        job = _BuildJob(self, header, source, started)
        if self._synchronous:
            job.run()
            if self._dump.exists():  # PySyncObj renames tmp over the dump just written
                tmp.unlink(missing_ok=True)
                os.link(self._dump, tmp)
        else:
            self._thread = threading.Thread(target=job.run, name="raftlog-snapshot", daemon=True)
            self._thread.start()
        self.stats.longest_tick_block_s = max(
            self.stats.longest_tick_block_s, time.monotonic() - started
        )

    def idle(self) -> bool:
        """No build running and no outcome waiting for PySyncObj to collect it."""
        return self._thread is None and self._outcome is None

    def check(self) -> int:
        if self._outcome is None:
            if self._thread is None:
                return int(SERIALIZER_STATE.NOT_SERIALIZING)
            return int(SERIALIZER_STATE.SERIALIZING)
        outcome, self._outcome, self._thread = self._outcome, None, None
        return outcome

    def deserialize(self, file_name: str) -> tuple[Any, Any, Any]:
        """Load a snapshot at start-up or when a leader installs one (module docstring)."""
        self.cancel_running()
        startup, self._startup_load = self._startup_load, False
        try:
            problem = self._verify(file_name)
        except OSError as exc:
            if not startup:
                # This node's disk failed reading what it just received: a storage error
                # of its own, not a bad dump from the leader.
                self._storage_failed(f"reading the received snapshot {file_name}", exc)
            problem = f"reading it failed: {exc}"
        if problem is not None:
            if startup:
                error = CorruptStorage(
                    f"{file_name} (this node's own snapshot) is damaged: {problem}; "
                    "the files are left as found",
                    file=file_name,
                )
                self._on_fatal(error)
                raise error
            self._refuse(file_name, problem)
            raise CorruptSnapshot(f"refused snapshot {file_name}: {problem}")
        try:
            with open(file_name, "rb") as f:
                header, offset = read_header(f)
            local_cid = self._state.cluster_meta().cluster_id
            if header["cluster_id"] and local_cid and header["cluster_id"] != local_cid:
                raise UnsupportedFormat(
                    f"snapshot {file_name} belongs to cluster {header['cluster_id']}, "
                    f"this node to {local_cid}"
                )
            snap_index = header["last"][1]
            local_index, _ = self._state.last_applied()
            if local_index < snap_index:
                self._state.restore(file_name, offset=offset)
                self.stats.installed += 1
                log.info("snapshot: state restored to index %d", snap_index)
            else:
                log.info(
                    "snapshot at index %d: local state is already at %d, keeping it",
                    snap_index,
                    local_index,
                )
            self._keep(required=True)
            return (tuple(header["last"]), tuple(header["prev"]), header["cluster"])
        except BaseException as exc:
            # PySyncObj would log this and carry on as if the snapshot had loaded.
            self._on_fatal(exc)
            raise

    def _verify(self, file_name: str) -> str | None:
        if not checksum.verification_enabled():
            return None
        with open(file_name, "rb") as f:
            try:
                return verify_dump_stream(f)
            except UnsupportedFormat as exc:
                return str(exc)

    def _refuse(self, file_name: str, problem: str) -> None:
        """A received dump failed its checks: move it aside, put our own dump back."""
        self.stats.refused += 1
        dump = Path(file_name)
        try:
            os.replace(dump, self._refused)
            if self._kept.exists():
                tmp = dump.with_name(dump.name + ".restore")
                tmp.unlink(missing_ok=True)
                os.link(self._kept, tmp)
                os.replace(tmp, dump)
            fsync_dir(dump.parent)
        except OSError as exc:
            self._storage_failed("putting the previous snapshot back", exc)
        log.error(
            "snapshot received from the leader REFUSED, nothing installed, local state "
            "kept (moved to %s; the leader will send it again): %s",
            self._refused,
            problem,
        )

    def _keep(self, *, required: bool = False) -> None:
        """Make raft.snapshot.kept a hard link to the current (verified) dump.

        ``required`` (installing a received dump): an OSError is a fail-stop
        (FatalStorageError); otherwise (after building our own) it is logged."""
        try:
            tmp = self._kept.with_name(self._kept.name + ".tmp")
            tmp.unlink(missing_ok=True)
            os.link(self._dump, tmp)
            os.replace(tmp, self._kept)
        except OSError as exc:
            if required:
                self._storage_failed(f"linking {self._kept}", exc)
            log.exception("snapshot: linking %s failed", self._kept)

    def _storage_failed(self, what: str, exc: OSError) -> NoReturn:
        """Installing a received dump hit a storage error: fail-stop (exit 70)."""
        error = FatalStorageError(
            f"snapshot install: {what} failed: {describe_os_error(exc)}; "
            "this node stops (a restart after the disk is repaired resumes)"
        )
        self._on_fatal(error)
        raise error from exc

    # -- helpers -------------------------------------------------------------------------

    def cancel_running(self) -> None:
        thread = self._thread
        if thread is not None:
            self._cancel.set()
            thread.join()
            self._thread = None
            self._outcome = None

    def remove_placeholder(self) -> None:
        """Called before start-up: drop an empty dump a crash left behind."""
        if self._dump.exists() and self._dump.stat().st_size == 0:
            self._dump.unlink()
        self._building.unlink(missing_ok=True)
        self._startup_load = self._dump.exists()


class _BuildJob:
    def __init__(self, writer: SnapshotWriter, header: dict[str, Any], source: Any, t0: float):
        self._w = writer
        self._header = header
        self._source = source
        self._t0 = t0

    def run(self) -> None:
        w = self._w
        try:
            fd = os.open(w._building, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                head = encode_dump_header(self._header)
                os.write(fd, head)
                size = len(head) + self._source.write_to(fd)  # verifies records, fsyncs
            finally:
                os.close(fd)
                self._source.close()
            if w._cancel.is_set():
                w._building.unlink(missing_ok=True)
                w._outcome = int(SERIALIZER_STATE.FAILED)
                return
            os.replace(w._building, w._dump)
            fsync_dir(w._dump.parent)
            w._keep()
            w.stats.taken += 1
            w.stats.last_index = self._header["last"][1]
            w.stats.last_seconds = time.monotonic() - self._t0
            w.stats.last_bytes = size
            log.info(
                "snapshot at index %d: %d bytes in %.2f s",
                w.stats.last_index,
                size,
                w.stats.last_seconds,
            )
            w._outcome = int(SERIALIZER_STATE.SUCCESS)
        except CorruptStorage as exc:
            # A record of the state failed its check: never ship it; stop (exit 65).
            w._building.unlink(missing_ok=True)
            w._outcome = int(SERIALIZER_STATE.FAILED)
            w._on_fatal(exc)
        except Exception:
            log.exception("snapshot failed; the journal is kept in full")
            w.stats.failed += 1
            w._outcome = int(SERIALIZER_STATE.FAILED)
