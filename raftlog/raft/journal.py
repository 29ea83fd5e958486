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

Records hold consecutive indexes with non-decreasing terms, from the file's first
record to its last (the physical log below is a log this node held). Opening fsyncs the
file: after a kill -9 it may hold writes that only reached the page cache, and the node
would otherwise vouch for them unsynced.

``raft.meta`` (written atomically: temp file, fsync, rename, directory fsync) is
msgpack ``{"v": 2, "body": msgpack {"term", "voted_for", "commit_index"}, "crc":
crc32(body)}``; version 1 (the fields at top level, no checksum) is still read and is
rewritten as version 2 at the next meta write.

Torn tail or corruption (at open). Only a crash can tear a record, and only one whose
write was not yet synced: kill -9 cannot undo a completed ``write()``, and a power loss
loses or tears only data no fsync covered. So a bad record (one that is cut short or
fails its CRC) is a *torn tail*, cut off with a WARNING, only when both hold:

- no valid record follows it. The length field may be the damaged part, so record
  boundaries are unknown: every later byte offset is tried as the start of a whole,
  CRC-valid record continuing the log (``_find_valid_record``);
- it lies past the commit index raft.meta records (``_persisted_commit``): that index
  only ever covers records that were synced (``_vouch_bound``), so a bad record at or
  below it (or the file's first record, when that index is at least 1) was on disk
  intact once and has been damaged since.

Anything else raises :class:`raftlog.errors.CorruptStorage` (``raftlog serve`` exits 65)
with the file, byte offset and indexes, and touches neither file: a bad record followed
by a valid one, a bad record at or below the saved commit index, two valid records whose
indexes do not rise by one or whose terms fall, a raft.meta that fails its CRC or does
not decode. A missing raft.meta next to records counts as commit index 0 (a node stopped
before its first flush leaves exactly that) with a WARNING. The rule cannot tell a torn
last record from a bit flip in a synced last record that raft.meta's lazily saved commit
index does not cover yet (both: a bad record, nothing after it); DESIGN.md discusses the
window and why no more is persisted.

Storage errors are fatal (fail-stop). The first OSError from either file (ENOSPC, EIO,
EDQUOT, EROFS, any) is turned into a :class:`FatalStorageError` naming the file and
the errno, the ``on_fatal`` callback runs, and the journal is *closed to writes*:
every later mutation and every :meth:`DurableJournal.flush` raises a
FatalStorageError without touching the disk. So:

- the in-memory entries never run ahead of a file left in an unknown state (a short
  write leaves half a record; appending after it would bury it mid-file, where the
  next open would find damage in the middle of the log and refuse to start, where
  the old rule cut everything behind it, acknowledged entries included);
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

import bisect
import contextlib
import errno
import logging
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
from pysyncobj.journal import Journal

from raftlog.errors import CorruptStorage, FatalStorageError, UnsupportedFormat
from raftlog.raft.storage import AppendFile, AtomicFile

__all__ = [
    "CORRUPTION_ADVICE",
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
_MIN_RECORD = _REC.size + _BODY.size  # an empty command
# 1: msgpack {"v", "term", "voted_for", "commit_index"} (read, never written any more).
# 2: msgpack {"v": 2, "body": msgpack {"term", "voted_for", "commit_index"},
#    "crc": crc32(body)}: still a msgpack map with "v", so an older raftlog refuses it
#    cleanly as a newer format.
META_VERSION = 2

CORRUPTION_ADVICE = (
    "This node's Raft data is damaged, so it refuses to start; the file was left as "
    "found. Keep the data dir for inspection (copy it before anything else; `raftlog "
    "check-data DIR` lists every problem). The other nodes keep serving while a "
    "majority of the cluster runs. To bring this node back, move the data dir aside "
    "and start it on an empty one: it then rejoins without a vote until it holds "
    "everything the leader had committed. See docs/OPERATIONS.md."
)

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


@dataclass(frozen=True)
class _Meta:
    term: int
    voted_for: str | None
    commit_index: int


def _encode_meta(term: int, voted_for: str | None, commit_index: int) -> bytes:
    body = msgpack.packb(
        {"term": term, "voted_for": voted_for, "commit_index": commit_index}, use_bin_type=True
    )
    return bytes(
        msgpack.packb({"v": META_VERSION, "body": body, "crc": zlib.crc32(body)}, use_bin_type=True)
    )


def _decode_meta(data: bytes, name: str) -> _Meta:
    """raft.meta of any known version; CorruptStorage when it fails its checksum or does
    not decode, UnsupportedFormat when it is of a newer version."""

    def corrupt(why: str) -> CorruptStorage:
        return CorruptStorage(
            f"raft meta {name} is damaged: {why} ({len(data)} bytes). It holds this "
            f"node's term, vote and commit index. {CORRUPTION_ADVICE}",
            file=name,
        )

    try:
        outer = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises many types for garbage input
        raise corrupt(f"it does not decode as msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(outer, dict):
        raise corrupt(f"it decodes to a {type(outer).__name__}, not a map")
    version = outer.get("v", 0)
    if not isinstance(version, int):
        raise corrupt(f"its version field is {version!r}")
    if version > META_VERSION:
        raise UnsupportedFormat("raft.meta has a format this raftlog does not know")
    fields: Any = outer
    if version >= 2:
        body, crc = outer.get("body"), outer.get("crc")
        if not isinstance(body, bytes) or not isinstance(crc, int):
            raise corrupt("its body or checksum field is missing")
        if zlib.crc32(body) != crc:
            raise corrupt("it fails its checksum (CRC32)")
        try:
            fields = msgpack.unpackb(body, raw=False)
        except Exception as exc:
            raise corrupt(f"its body does not decode ({type(exc).__name__})") from None
        if not isinstance(fields, dict):
            raise corrupt("its body is not a map")
    term, voted_for, commit = (fields.get(k) for k in ("term", "voted_for", "commit_index"))
    if not isinstance(term, int) or term < 0:
        raise corrupt(f"its term is {term!r}")
    if voted_for is not None and not isinstance(voted_for, str):
        raise corrupt(f"its vote is {voted_for!r}")
    if not isinstance(commit, int) or commit < 0:
        raise corrupt(f"its commit index is {commit!r}")
    return _Meta(term, voted_for, commit)


def _check_header(data: bytes) -> None:
    """UnsupportedFormat unless ``data`` starts with a header this code reads."""
    if not data.startswith(MAGIC[:6]):
        raise UnsupportedFormat("raft.journal is not a raftlog journal (bad magic)")
    if data[: len(MAGIC)] != MAGIC or len(data) < len(_HEADER):
        raise UnsupportedFormat(
            f"raft.journal has format {data[: len(MAGIC)]!r}; this raftlog understands {MAGIC!r}"
        )
    (version,) = struct.unpack_from(">I", data, len(MAGIC))
    if version > FORMAT_VERSION:
        raise UnsupportedFormat(
            f"raft.journal has format version {version}; this raftlog understands "
            f"up to {FORMAT_VERSION}"
        )


def _record_at(data: bytes, pos: int) -> tuple[Entry, int] | None:
    """The whole, CRC-valid record at ``pos`` and the offset after it, or None."""
    if pos + _REC.size > len(data):
        return None
    length, crc = _REC.unpack_from(data, pos)
    start = pos + _REC.size
    if length < _BODY.size or start + length > len(data):
        return None
    body = memoryview(data)[start : start + length]
    if zlib.crc32(body) != crc:
        return None
    index, term = _BODY.unpack_from(body)
    return (bytes(body[_BODY.size :]), index, term), start + length


def _why_bad(data: bytes, pos: int) -> str:
    """What is wrong with the (bad) record at ``pos``, for messages."""
    remaining = len(data) - pos
    if remaining < _REC.size:
        return f"is cut short inside its header ({remaining} of {_REC.size} bytes)"
    length, _ = _REC.unpack_from(data, pos)
    if length < _BODY.size:
        return f"has a length field of {length}, shorter than any record"
    if length > remaining - _REC.size:
        return f"has a length field of {length} but only {remaining - _REC.size} bytes follow"
    return "fails its checksum (CRC32)"


def _find_valid_record(data: bytes, start: int, after: int | None) -> tuple[int, int] | None:
    """(offset, index) of the first whole, CRC-valid record at an offset >= ``start``
    whose index exceeds ``after`` (any index when None), or None.

    The damage may have hit a length field, so record boundaries after it are unknown:
    every byte offset is a candidate. A record that continues the log after ``after``
    cannot hold an index above ``after + 1 + (bytes left) / smallest record``, so the
    candidates are first filtered on a length that fits and an index in that range,
    and only those pay for a CRC. When every index in the range has the same top four
    bytes (always, below 2**32 entries), a regular expression finds the offsets with
    those bytes at the index position and a non-zero length (zeroed runs, what a lost
    write often leaves, never match), so a tail of megabytes is scanned at C speed.
    """
    n = len(data)
    view = memoryview(data)
    low = 0 if after is None else after  # exclusive: indexes start at 1
    high = (1 << 64) - 1 if after is None else after + 2 + (n - start) // _MIN_RECORD

    def valid(q: int) -> int | None:
        if q + _MIN_RECORD > n:
            return None
        length, crc = _REC.unpack_from(data, q)
        if length < _BODY.size or q + _REC.size + length > n:
            return None
        (index,) = struct.unpack_from(">Q", data, q + _REC.size)
        if not low < index <= high:
            return None
        if zlib.crc32(view[q + _REC.size : q + _REC.size + length]) != crc:
            return None
        return int(index)

    candidates: Iterator[int]
    top = (low + 1) >> 32
    if after is not None and high >> 32 == top:
        pattern = re.compile(
            rb"(?=(?!\x00{4})[\x00-\xff]{8}" + re.escape(struct.pack(">I", top)) + rb")"
        )
        candidates = (m.start() for m in pattern.finditer(data, start))
    else:
        candidates = iter(range(start, n - _MIN_RECORD + 1))
    for q in candidates:
        index = valid(q)
        if index is not None:
            return q, index
    return None


def _last_consecutive(data: bytes, pos: int) -> int:
    """The last index of the run of valid, consecutive records starting at ``pos``."""
    record = _record_at(data, pos)
    assert record is not None
    (_, last, _), pos = record
    while (record := _record_at(data, pos)) is not None and record[0][1] == last + 1:
        last = record[0][1]
        pos = record[1]
    return last


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
        unsafe_cut_at_first_bad_record: bool = False,
    ) -> None:
        self._file = log_file
        # UNSAFE negative control for the fault suite (RAFTLOG_UNSAFE_TORN_TAIL_ANY): the
        # old rule, every bad record is a torn tail and everything from it on is cut.
        self._unsafe_cut_any = unsafe_cut_at_first_bad_record
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
        self._commit_index = 1  # PySyncObj's (in memory); 1 is its own default
        # The commit index raft.meta records (0 while it records none). Invariant: when
        # >= 1, every record from the file's first through this index is synced and
        # stays so until raft.meta says less (see _vouch_bound).
        self._persisted_commit = 0
        self._meta_dirty = False
        # version counts mutations; synced_version is the version the last flush covered.
        self.version = 0
        self.synced_version = 0
        self.stats = JournalStats()
        # Called before a compaction drops a prefix (the node syncs LMDB there: the state
        # machine commits unsynced and is trusted only within a boot). May raise
        # FatalStorageError; then nothing is dropped.
        self.before_compaction: Callable[[], None] | None = None
        self._load()

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        with self._io("reading", self._file.name):
            data = self._file.read_all()
        if data:
            _check_header(data)
        # raft.meta first: its commit index decides whether a bad record may be a torn tail.
        with self._io("reading", self._meta_file.name):
            raw_meta = self._meta_file.read()
        if raw_meta is not None:
            meta = _decode_meta(raw_meta, self._meta_file.name)
            self._term = meta.term
            self._voted_for = meta.voted_for
            self._commit_index = meta.commit_index
            self._persisted_commit = meta.commit_index
        if not data:
            self._refuse_if_short(None)
            with self._io("initialising", self._file.name):
                self._file.replace(_HEADER)
            return
        self._parse_records(data)  # raises CorruptStorage before touching the file
        self._refuse_if_short(self._entries[-1] if self._entries else None)
        if not self._entries:
            return
        if raw_meta is None:
            log.warning(
                "raft journal: %s is missing while %s holds indexes %d..%d; taking the "
                "commit index as 0 (a node stopped before its first flush leaves this; "
                "a lost raft.meta would also have lost the term and vote it recorded)",
                self._meta_file.name,
                self._file.name,
                self.first_index,
                self.last_index,
            )
        # A kill -9 leaves unsynced writes in the page cache, where this open reads
        # them back: make them durable before the node vouches for them.
        with self._io("syncing", self._file.name):
            self._file.sync()
        self.stats.fsyncs += 1

    def _parse_records(self, data: bytes) -> None:
        """Load every record; cut a torn tail; raise CorruptStorage for anything else bad.

        The rule (module docstring, "Torn tail or corruption"): a bad record is a torn
        tail only if no valid record follows it and it lies past the commit index
        raft.meta records; records must carry consecutive indexes and non-decreasing
        terms. Nothing is written unless a torn tail is cut.
        """
        name = self._file.name
        pos = len(_HEADER)
        last: Entry | None = None
        while (record := _record_at(data, pos)) is not None:
            entry, end = record
            if last is not None and (entry[1] != last[1] + 1 or entry[2] < last[2]):
                raise CorruptStorage(
                    f"raft journal {name} is damaged at byte offset {pos}: the record there "
                    f"holds index {entry[1]} (term {entry[2]}) right after index {last[1]} "
                    f"(term {last[2]}), but indexes rise by one and terms never fall. "
                    f"Last good index {last[1]}, persisted commit index "
                    f"{self._persisted_commit}. {CORRUPTION_ADVICE}",
                    file=name,
                    offset=pos,
                    last_good_index=last[1],
                    next_index=entry[1],
                    commit_index=self._persisted_commit,
                )
            self._entries.append(entry)
            self._offsets.append(pos)
            last = entry
            pos = end
        if pos != len(data) and not self._unsafe_cut_any:
            self._refuse_unless_torn(data, pos, last)
        self._end = pos
        self._synced_end = pos
        if pos != len(data):
            cut = f"index {last[1] + 1} onward" if last else "every record"
            log.warning(
                "raft journal %s: cutting a torn tail of %d bytes at byte offset %d (%s; "
                "the record there %s): it lies past the commit index raft.meta records "
                "(%d) and no valid record follows it, so it can only be the last write, "
                "cut short by a crash before it was synced, which this node never "
                "vouched for",
                name,
                len(data) - pos,
                pos,
                cut,
                _why_bad(data, pos),
                self._persisted_commit,
            )
            with self._io("cutting the torn tail of", name):
                self._file.truncate(pos)
                self._file.sync()

    def _refuse_if_short(self, last: Entry | None) -> None:
        """Raise CorruptStorage when the journal ends below the commit index raft.meta
        records: it once held those records, synced (_vouch_bound), and every way this
        code empties or shortens the file lowers raft.meta first. So the file was cut,
        replaced or deleted behind the node's back (a missing file reads as empty)."""
        commit = self._persisted_commit
        last_index = 0 if last is None else last[1]
        if commit < 1 or last_index >= commit or self._unsafe_cut_any:
            return
        name = self._file.name
        held = "no record at all" if last is None else f"records only through index {last_index}"
        raise CorruptStorage(
            f"raft journal {name} holds {held}, but raft.meta records commit index "
            f"{commit}, and it only ever records a commit index the journal holds synced: "
            f"the file lost committed records (cut short, replaced or deleted); indexes "
            f"{last_index + 1}..{commit} are missing. {CORRUPTION_ADVICE}",
            file=name,
            offset=None,
            last_good_index=None if last is None else last_index,
            commit_index=commit,
        )

    def _refuse_unless_torn(self, data: bytes, pos: int, last: Entry | None) -> None:
        """Raise CorruptStorage unless the bad record at ``pos`` may be a torn tail."""
        name = self._file.name
        commit = self._persisted_commit
        last_index = last[1] if last is not None else None
        what = "the first record" if last is None else f"the record after index {last[1]}"
        where = (
            f"raft journal {name} is damaged at byte offset {pos} (of {len(data)} bytes): "
            f"{what} {_why_bad(data, pos)}"
        )
        found = _find_valid_record(data, pos + 1, last_index)
        if found is not None:
            offset, index = found
            through = _last_consecutive(data, offset)
            lost = ""
            if last is not None and index == last[1] + 2:
                lost = f"; index {last[1] + 1} is unreadable"
            elif last is not None and index > last[1] + 2:
                lost = f"; indexes {last[1] + 1}..{index - 1} are unreadable"
            raise CorruptStorage(
                f"{where}, and a valid record follows at byte offset {offset} (index "
                f"{index}, intact through index {through}{lost}), so this is no torn "
                "write: the damage lies inside records this node wrote and may have "
                f"acknowledged. Last good index {last_index}, first index after the "
                f"damage {index}, persisted commit index {commit}. {CORRUPTION_ADVICE}",
                file=name,
                offset=pos,
                last_good_index=last_index,
                next_index=index,
                commit_index=commit,
            )
        # raft.meta's commit index only ever covers records that were synced, and every
        # record from the file's first through it stays synced (_vouch_bound): a record
        # there cannot have been torn by a crash.
        vouched = commit >= 1 if last is None else last[1] + 1 <= commit
        if vouched:
            which = "the file's first record" if last is None else f"index {last[1] + 1}"
            raise CorruptStorage(
                f"{where}; no valid record follows, but it would hold {which}, at or below "
                f"the commit index raft.meta records ({commit}), which only ever covers "
                "records already synced, so this is no torn write. Last good index "
                f"{last_index}, persisted commit index {commit}. {CORRUPTION_ADVICE}",
                file=name,
                offset=pos,
                last_good_index=last_index,
                commit_index=commit,
            )

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
        # The journal first, so the commit index raft.meta records may cover it.
        if self.version != self.synced_version:
            with self._io("syncing", self._file.name):
                self._file.sync()
            self.stats.fsyncs += 1
            self.synced_version = self.version
            self._synced_end = self._end
        if self._meta_dirty:
            self._write_meta()

    @property
    def durable_index(self) -> int:
        """The last index of the view that the last fsync covered (0 if none). Tick
        thread (tests read it from a send hook there)."""
        return self._durable_view_index()

    def _durable_view_index(self) -> int:
        """The last index of the view whose record the last fsync covered (0 if none)."""
        if self._synced_end >= self._end:
            synced = len(self._offsets)
        else:  # records whose successor starts at or before _synced_end
            synced = bisect.bisect_right(self._offsets, self._synced_end) - 1
        count = min(synced, len(self._entries))
        return self._entries[count - 1][1] if count else 0

    def _vouch_bound(self) -> int:
        """The commit index raft.meta may record now: PySyncObj's, capped at the synced
        part of the view.

        PySyncObj may count an entry committed before this node synced it (a single
        node commits its own entries at once), and the commit index is saved lazily, so
        without the cap raft.meta could claim a record a power loss then tears, and the
        next open would take that torn tail for corruption. With it, the invariant of
        ``_persisted_commit`` holds when meta is written; the writes that could break it
        later (a truncation into it, a rewrite that empties the file) lower raft.meta
        first (``_drop_shadow``, ``clear``, ``deleteEntriesTo``).
        """
        return min(self._commit_index, self._durable_view_index())

    def _write_meta(self, cap: int | None = None) -> None:
        """Write term, vote and the commit bound (at most ``cap``) atomically, durably."""
        commit = self._vouch_bound() if cap is None else min(self._vouch_bound(), cap)
        data = _encode_meta(self._term, self._voted_for, commit)
        with self._io("writing", self._meta_file.name):
            self._meta_file.write(data)
        self._persisted_commit = commit
        self._meta_dirty = False
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
        if self._persisted_commit > self._durable_view_index():
            # raft.meta covers records about to go (the view is empty, or Raft's rule that
            # only uncommitted entries conflict was broken): lower it first, or a torn
            # record written in their place would later read as corruption.
            self._write_meta()
        with self._io("truncating", self._file.name):
            self._file.truncate(end)
        self._end = end
        self._synced_end = min(self._synced_end, end)
        self._shadow = []
        del self._offsets[len(self._entries) :]
        self.stats.truncations += 1
        self._touch()

    def clear(self) -> None:
        if self._persisted_commit > 0:
            self._write_meta(cap=0)  # the file loses every record (see _vouch_bound)
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
        if self.before_compaction is not None:
            self.before_compaction()
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
        # The rewrite is atomic and durable: every record it keeps is synced. When it
        # keeps none, the next record written is the file's first: lower raft.meta
        # first (see _vouch_bound).
        if not kept and self._persisted_commit > 0:
            self._write_meta(cap=0)
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
        self._commit_index = raftCommitIndex

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
        # The commit index is a hint to PySyncObj (a restart re-learns it from the
        # leader) and the bound of what a torn tail may cut at the next open, so it is
        # saved lazily, at most once a second, never on the hot path, and only when the
        # bound has risen (a lower one is written only where the file shrinks under it).
        if (
            self.failed is None
            and not self._meta_dirty
            and self._vouch_bound() > self._persisted_commit
        ):
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
