"""A durable Raft journal for PySyncObj: entries, term, vote and commit index on disk.

PySyncObj's own FileJournal never fsyncs (its issue #84). This one writes every
change to the OS at once but makes it durable only in :meth:`DurableJournal.flush`,
which the transport calls before any message leaves the node and the node calls
before applying an entry. So one fsync covers every entry added since the last
(group commit), and no vote, append response or shipped entry ever vouches for
data that a power loss could take back.

Threading: every method runs on the Raft tick thread (PySyncObj calls the
``Journal`` interface there; :meth:`flush` is called from the transport and the
apply path on the same thread). Counters are read by other threads for status only.

File format (``raft.journal``)::

    b"RLJRNL01" u32 format-version
    record*:  u32 length | u32 crc32(body) | body = u64 index | u64 term | command

A torn or corrupt tail (a crash mid-write) ends the journal there and is cut off
on open. Opening also fsyncs the file: after a kill -9 it may hold writes that only
reached the page cache, and the node would otherwise vouch for them unsynced.
``raft.meta`` holds msgpack {"term", "voted_for", "commit_index"}.

Storage errors are fatal (fail-stop). The first OSError from either file (ENOSPC, EIO,
EDQUOT, EROFS, any) is turned into a :class:`FatalStorageError` naming the file and
the errno, the ``on_fatal`` callback runs, and the journal is *closed to writes*:
every later mutation and every :meth:`DurableJournal.flush` raises a
FatalStorageError without touching the disk. So:

- the in-memory entries never run ahead of a file left in an unknown state (a short
  write leaves half a record; appending after it would bury it mid-file, where the
  next open would cut everything behind it, acknowledged entries included);
- a failed fsync is never retried (after a failed fsync the kernel may have dropped
  the dirty pages and marked them clean: a second fsync that succeeds proves nothing);
- nothing that vouches for the failed write can leave the node, because the transport
  flushes before every vouching message and that flush raises.

Reads (``__getitem__``, ``len``, ``term_at``) keep working on the in-memory view.

Lazy truncation (keep what matches). PySyncObj's follower, on every append_entries
whose ``prevLogIdx`` is not its last entry (a resend after a reconnect, a heartbeat
racing the entries the tick shipped, a batch the leader split), calls
``deleteEntriesFrom(prevLogIdx + 1)`` and then ``add``s the leader's entries again,
even when they are identical to the ones it deleted, even when they are committed and
applied. A journal that truncated its file at once would leave acknowledged, committed
entries missing from the disk until they were re-appended and synced (and for good
when the batch was shorter than what the follower had), and a crash in that window plus
the loss of the leader could lose an acknowledged write. So the journal keeps two logs:

- the *view* (``_entries``), the log PySyncObj sees through ``len``, ``[]``,
  ``term_at``, ``first_index``, ``last_index``. PySyncObj computes a follower's commit
  index from the view's last entry, so while it handles an append the view must not
  hold entries the leader has not confirmed; RaftCore sets them aside for that moment
  and takes them back afterwards with :meth:`reclaim` (core.py);
- the *physical* log (the file; ``_offsets``, ``_end``), which is the view followed by a
  *shadow tail* (``_shadow``, stored last-first): entries logically deleted but still
  on disk.

``deleteEntriesFrom`` only moves entries from the view to the shadow tail. ``add`` of an
entry identical (index, term and command) to the first shadow entry moves it back and
writes nothing; any other ``add`` first truncates the file to the end of the view,
dropping the whole shadow tail, then appends. Why the file is always a log this node
legitimately holds:

- invariant: the view is a prefix of the physical log, and the physical log is one the
  view was at some earlier moment (deleting from the view or re-using an identical
  entry does not change the file; a physical truncation makes file and view equal
  before the append);
- a physical truncation removes only entries at and after the first position where the
  current leader's log (or, on a leader, its own new entry in a newer term) differs from
  ours: by Raft's log matching such entries are not committed. Every other entry
  PySyncObj deleted stays on disk, which is what Raft's follower rule asks for (delete
  only from the first *conflicting* entry);
- after a restart the journal loads the whole physical log as its view (the shadow tail
  becomes ordinary entries): a log the node held, holding every entry it acknowledged.
  Raft allows a follower to hold such extra entries; its commit index (``raft.meta``)
  never exceeds the view it was computed from, a prefix of the loaded log.

``dirty``/``flush`` keep meaning "everything in the view is durable": re-using a shadow
entry whose bytes are not known to be synced (``_synced_end``, the length of the file
prefix the last fsync covered and no truncation has touched since) counts as a change,
so the next flush fsyncs it. Moving entries to the shadow needs no fsync: no message
vouches for an entry's absence.

``clear`` (a snapshot replaces the log) drops the shadow tail with the view; the
compaction rewrite (``deleteEntriesTo``) keeps it after the view, since it rewrites the
file anyway and the shadow tail may hold committed entries. Opening a journal has no
shadow tail.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
from pysyncobj.journal import Journal

from raftlog.errors import FatalStorageError, UnsupportedFormat
from raftlog.raft.storage import AppendFile, AtomicFile

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "META_VERSION",
    "DurableJournal",
    "Entry",
    "JournalStats",
    "describe_os_error",
]

log = logging.getLogger(__name__)

MAGIC = b"RLJRNL01"
FORMAT_VERSION = 1
_HEADER = MAGIC + struct.pack(">I", FORMAT_VERSION)
_REC = struct.Struct(">II")  # length, crc
_BODY = struct.Struct(">QQ")  # index, term
META_VERSION = 1

Entry = tuple[bytes, int, int]  # (command, raft index, raft term) as PySyncObj expects


@dataclass
class JournalStats:
    fsyncs: int = 0
    entries_added: int = 0  # records written to the file
    entries_reused: int = 0  # adds that matched a record still on disk: nothing written
    truncations: int = 0  # physical truncations of the file (conflicting entries)
    meta_writes: int = 0


def describe_os_error(exc: OSError) -> str:
    """``ENOSPC (No space left on device)``: the symbolic errno and its text."""
    code = exc.errno
    name = errno.errorcode.get(code, f"errno {code}") if code is not None else "no errno"
    return f"{name} ({exc.strerror or exc})"


class DurableJournal(Journal):  # type: ignore[misc]
    """PySyncObj ``Journal`` with explicit, batched durability (see module docstring).

    ``on_fatal`` is called (on the calling thread, once) with the FatalStorageError of
    the first storage failure, before it is raised: PySyncObj swallows exceptions in a
    few places (loading a snapshot), and the node must stop even then.
    """

    def __init__(
        self,
        log_file: AppendFile,
        meta_file: AtomicFile,
        *,
        on_fatal: Callable[[FatalStorageError], None] | None = None,
    ) -> None:
        self._file = log_file
        self._meta_file = meta_file
        self._on_fatal = on_fatal
        # The first storage failure; once set the journal refuses every write and flush.
        self.failed: FatalStorageError | None = None
        self._entries: list[Entry] = []  # the view: the log PySyncObj sees
        # Entries deleted from the view but still in the file, last one first (so the
        # next one to match is _shadow[-1]). The file holds _entries + reversed(_shadow).
        self._shadow: list[Entry] = []
        self._offsets: list[int] = []  # byte offset of each record in the file (view+shadow)
        self._end = len(_HEADER)  # file size
        self._synced_end = len(_HEADER)  # file prefix the last fsync covered, untouched since
        self._term = 0
        self._voted_for: str | None = None
        self._commit_index = 1
        self._meta_dirty = False
        self._commit_dirty = False
        # version counts mutations; synced_version is the version the last flush covered.
        self.version = 0
        self.synced_version = 0
        self.stats = JournalStats()
        self._load()

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        with self._io("reading", self._file.name):
            data = self._file.read_all()
        if not data:
            with self._io("initialising", self._file.name):
                self._file.replace(_HEADER)
        elif not data.startswith(MAGIC[:6]):
            raise UnsupportedFormat("raft.journal is not a raftlog journal (bad magic)")
        elif data[: len(MAGIC)] != MAGIC or len(data) < len(_HEADER):
            raise UnsupportedFormat(
                f"raft.journal has format {data[: len(MAGIC)]!r}; "
                f"this raftlog understands {MAGIC!r}"
            )
        else:
            (version,) = struct.unpack_from(">I", data, len(MAGIC))
            if version > FORMAT_VERSION:
                raise UnsupportedFormat(
                    f"raft.journal has format version {version}; this raftlog understands "
                    f"up to {FORMAT_VERSION}"
                )
            self._parse_records(data)
            if self._entries:
                # A kill -9 leaves unsynced writes in the page cache, where this open
                # reads them back: make them durable before the node vouches for them.
                with self._io("syncing", self._file.name):
                    self._file.sync()
                self.stats.fsyncs += 1
        with self._io("reading", self._meta_file.name):
            meta = self._meta_file.read()
        if meta is not None:
            decoded = msgpack.unpackb(meta, raw=False)
            if not isinstance(decoded, dict) or decoded.get("v", 0) > META_VERSION:
                raise UnsupportedFormat("raft.meta has a format this raftlog does not know")
            self._term = int(decoded["term"])
            self._voted_for = decoded["voted_for"]
            self._commit_index = int(decoded["commit_index"])

    def _parse_records(self, data: bytes) -> None:
        pos = len(_HEADER)
        while pos + _REC.size <= len(data):
            length, crc = _REC.unpack_from(data, pos)
            body_start = pos + _REC.size
            body = data[body_start : body_start + length]
            if length < _BODY.size or len(body) != length or zlib.crc32(body) != crc:
                break
            index, term = _BODY.unpack_from(body)
            self._entries.append((bytes(body[_BODY.size :]), index, term))
            self._offsets.append(pos)
            pos = body_start + length
        self._end = pos
        self._synced_end = pos
        if pos != len(data):
            log.warning(
                "raft.journal: cutting a torn tail of %d bytes after %d entries",
                len(data) - pos,
                len(self._entries),
            )
            with self._io("cutting the torn tail of", self._file.name):
                self._file.truncate(pos)
                self._file.sync()

    # -- storage failures ------------------------------------------------------------------

    @contextlib.contextmanager
    def _io(self, what: str, name: str) -> Iterator[None]:
        """Run one storage operation: refused once failed; its OSError is fatal."""
        self._refuse_if_failed()
        try:
            yield
        except OSError as exc:
            error = FatalStorageError(
                f"raft journal: {what} {name} failed: {describe_os_error(exc)}; "
                "the journal takes no more writes"
            )
            self.failed = error
            if self._on_fatal is not None:
                self._on_fatal(error)
            raise error from exc

    def _refuse_if_failed(self) -> None:
        if self.failed is not None:
            raise FatalStorageError(f"refused after an earlier failure: {self.failed}")

    # -- durability ------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self.version != self.synced_version or self._meta_dirty

    def flush(self) -> None:
        """Make every change so far durable. Cheap when nothing changed.

        Raises FatalStorageError if this or any earlier storage operation failed: a
        caller about to vouch for the journal's contents must not go on.
        """
        self._refuse_if_failed()
        if self._meta_dirty:
            self._write_meta()
        if self.version != self.synced_version:
            with self._io("syncing", self._file.name):
                self._file.sync()
            self.stats.fsyncs += 1
            self.synced_version = self.version
            self._synced_end = self._end

    def _write_meta(self) -> None:
        data = msgpack.packb(
            {
                "v": META_VERSION,
                "term": self._term,
                "voted_for": self._voted_for,
                "commit_index": self._commit_index,
            },
            use_bin_type=True,
        )
        with self._io("writing", self._meta_file.name):
            self._meta_file.write(data)
        self._meta_dirty = False
        self._commit_dirty = False
        self.stats.meta_writes += 1

    def _touch(self) -> None:
        self.version += 1

    # -- pysyncobj.journal.Journal ---------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._refuse_if_failed()
        entry = (bytes(command), idx, term)
        if self._shadow:
            if self._shadow[-1] == entry:
                self._reuse_shadow_entry()
                return
            self._drop_shadow()
        command = entry[0]
        body = _BODY.pack(idx, term) + command
        record = _REC.pack(len(body), zlib.crc32(body)) + body
        with self._io("appending to", self._file.name):
            self._file.append(record)
        self._entries.append(entry)
        self._offsets.append(self._end)
        self._end += len(record)
        self.stats.entries_added += 1
        self._touch()

    def reclaim(self, entries: list[Entry]) -> int:
        """Take ``entries`` back from the shadow tail into the view, in order, for as long
        as each is exactly the next shadow entry; returns how many were taken. No I/O:
        they are still in the file. Used by RaftCore to hand a follower's unconfirmed
        tail back after PySyncObj handled an append (core.py). Tick thread only."""
        taken = 0
        for command, idx, term in entries:
            if not self._shadow or self._shadow[-1] != (bytes(command), idx, term):
                break
            self._reuse_shadow_entry()
            taken += 1
        return taken

    def _reuse_shadow_entry(self) -> None:
        """The next entry added is the one on disk after the view: take it back."""
        self._entries.append(self._shadow.pop())
        pos = len(self._entries)
        record_end = self._offsets[pos] if pos < len(self._offsets) else self._end
        if record_end > self._synced_end:
            self._touch()  # written but not yet covered by an fsync: the next flush syncs
        self.stats.entries_reused += 1

    def _drop_shadow(self) -> None:
        """Truncate the file to the view: the shadow tail conflicts with what comes next."""
        end = self._offsets[len(self._entries)]
        with self._io("truncating", self._file.name):
            self._file.truncate(end)
        self._end = end
        self._synced_end = min(self._synced_end, end)
        self._shadow = []
        del self._offsets[len(self._entries) :]
        self.stats.truncations += 1
        self._touch()

    def clear(self) -> None:
        with self._io("clearing", self._file.name):
            self._file.replace(_HEADER)
        self._entries = []
        self._shadow = []
        self._offsets = []
        self._end = len(_HEADER)
        self._synced_end = self._end
        self._touch()
        self.synced_version = self.version  # replace() is durable on return

    def deleteEntriesFrom(self, entry_from: int) -> None:  # noqa: N802 (PySyncObj's name)
        """Drop entries from position ``entryFrom`` on, from the view only (lazy).

        They stay in the file as the shadow tail until an ``add`` that does not match
        them (see the module docstring).
        """
        self._refuse_if_failed()
        if entry_from >= len(self._entries):
            return
        entry_from = max(entry_from, 0)
        self._shadow.extend(reversed(self._entries[entry_from:]))
        del self._entries[entry_from:]

    def deleteEntriesTo(self, entry_to: int) -> None:  # noqa: N802
        """Drop entries before position ``entryTo`` (after a snapshot covers them).

        The rewrite keeps the shadow tail after the view (positions count in the
        physical log, of which the view is a prefix).
        """
        physical = self._entries + self._shadow[::-1]
        kept = physical[entry_to:]
        view_len = max(len(self._entries) - entry_to, 0)
        chunks = [_HEADER]
        offsets = []
        end = len(_HEADER)
        for command, idx, term in kept:
            body = _BODY.pack(idx, term) + command
            record = _REC.pack(len(body), zlib.crc32(body)) + body
            chunks.append(record)
            offsets.append(end)
            end += len(record)
        # The rewrite is atomic and durable; the flush below makes any pending
        # meta durable too, so the new file never claims more than the old one did.
        with self._io("compacting", self._file.name):
            self._file.replace(b"".join(chunks))
        self._entries = kept[:view_len]
        self._shadow = kept[view_len:][::-1]
        self._offsets = offsets
        self._end = end
        self._synced_end = end
        self._touch()
        self.synced_version = self.version

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        if self.failed is not None:  # closed as it is: no flush, no new error to report
            with contextlib.suppress(OSError):
                self._file.close()
            return
        try:
            self.flush()
        finally:
            self._file.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802,N803
        if raftCommitIndex != self._commit_index:
            self._commit_index = raftCommitIndex
            self._commit_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return self._commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802,N803
        # Durable before any message leaves: the transport flushes before sending, so a
        # vote granted in this term can never be forgotten and granted again.
        self._term = term
        self._voted_for = votedForNodeId
        self._meta_dirty = True
        self._touch()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return self._term

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return self._voted_for

    def onOneSecondTimer(self) -> None:  # noqa: N802
        # The commit index is a hint (a restart re-learns it from the leader), so it is
        # saved lazily, at most once a second, never on the hot path.
        if self._commit_dirty and not self._meta_dirty and self.failed is None:
            self._write_meta()

    # -- introspection ---------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._entries[0][1] if self._entries else 0

    @property
    def last_index(self) -> int:
        return self._entries[-1][1] if self._entries else 0

    @property
    def size_bytes(self) -> int:
        """Size of the file, shadow tail included."""
        return self._end

    @property
    def shadow_len(self) -> int:
        """Entries logically deleted but still in the file (see the module docstring)."""
        return len(self._shadow)

    def term_at(self, index: int) -> int | None:
        if not self._entries:
            return None
        pos = index - self._entries[0][1]
        if 0 <= pos < len(self._entries) and self._entries[pos][1] == index:
            return self._entries[pos][2]
        return None
