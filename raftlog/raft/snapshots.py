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

File layout: ``b"RLRAFT01" | u32 header length | msgpack header | state snapshot``.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from pysyncobj.config import SERIALIZER_STATE

from raftlog.errors import UnsupportedFormat
from raftlog.raft.storage import fsync_dir
from raftlog.state_machine import StateMachine

__all__ = ["FORMAT_VERSION", "MAGIC", "SnapshotStats", "SnapshotWriter", "read_header"]

log = logging.getLogger(__name__)

MAGIC = b"RLRAFT01"
FORMAT_VERSION = 1


@dataclass
class SnapshotStats:
    taken: int = 0
    failed: int = 0
    installed: int = 0
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
        self._on_fatal = on_fatal
        self._synchronous = synchronous  # tests and benchmarks compare both modes
        self._thread: threading.Thread | None = None
        self._outcome: int | None = None
        self._cancel = threading.Event()
        self.stats = SnapshotStats()

    # -- PySyncObj hooks (tick thread) ---------------------------------------------------

    def serialize(self, tmp_file: str, data: Any) -> None:
        started = time.monotonic()
        last, prev, cluster = data
        header = {
            "format": FORMAT_VERSION,
            "last": list(_entry(last)),
            "prev": list(_entry(prev)),
            "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
            "cluster_id": self._state.cluster_meta().cluster_id,
        }
        source = self._state.begin_snapshot()
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
        else:
            self._thread = threading.Thread(target=job.run, name="raftlog-snapshot", daemon=True)
            self._thread.start()
        self.stats.longest_tick_block_s = max(
            self.stats.longest_tick_block_s, time.monotonic() - started
        )

    def check(self) -> int:
        if self._outcome is None:
            if self._thread is None:
                return int(SERIALIZER_STATE.NOT_SERIALIZING)
            return int(SERIALIZER_STATE.SERIALIZING)
        outcome, self._outcome, self._thread = self._outcome, None, None
        return outcome

    def deserialize(self, file_name: str) -> tuple[Any, Any, Any]:
        """Load a snapshot at start-up or when a leader installs one."""
        self.cancel_running()
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
            return (tuple(header["last"]), tuple(header["prev"]), header["cluster"])
        except BaseException as exc:
            # PySyncObj would log this and carry on as if the snapshot had loaded.
            self._on_fatal(exc)
            raise

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


class _BuildJob:
    def __init__(self, writer: SnapshotWriter, header: dict[str, Any], source: Any, t0: float):
        self._w = writer
        self._header = header
        self._source = source
        self._t0 = t0

    def run(self) -> None:
        w = self._w
        try:
            encoded = msgpack.packb(self._header, use_bin_type=True)
            fd = os.open(w._building, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, MAGIC + struct.pack(">I", len(encoded)) + encoded)
                size = self._source.write_to(fd)  # fsyncs the fd
            finally:
                os.close(fd)
                self._source.close()
            if w._cancel.is_set():
                w._building.unlink(missing_ok=True)
                w._outcome = int(SERIALIZER_STATE.FAILED)
                return
            os.replace(w._building, w._dump)
            fsync_dir(w._dump.parent)
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
        except Exception:
            log.exception("snapshot failed; the journal is kept in full")
            w.stats.failed += 1
            w._outcome = int(SERIALIZER_STATE.FAILED)


def read_header(f: Any) -> tuple[dict[str, Any], int]:
    """Read and validate the raft header; returns it and the state snapshot's offset."""
    head = f.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[: len(MAGIC) - 2] != MAGIC[:-2]:
        raise UnsupportedFormat("not a raftlog snapshot (bad magic)")
    if head[: len(MAGIC)] != MAGIC:
        raise UnsupportedFormat(
            f"snapshot format {head[: len(MAGIC)]!r} is newer than this raftlog ({MAGIC!r})"
        )
    (length,) = struct.unpack(">I", head[len(MAGIC) :])
    header = msgpack.unpackb(f.read(length), raw=False)
    if not isinstance(header, dict) or header.get("format", 0) > FORMAT_VERSION:
        raise UnsupportedFormat("snapshot header has a format this raftlog does not know")
    return header, len(MAGIC) + 4 + length
