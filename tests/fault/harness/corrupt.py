"""Storage damage for the fault suite: one flipped byte in a node's files, a lost data dir.

Every helper works on a stopped node's files (or, for :func:`flip_in_snapshot_body`, a
snapshot no process is writing) and returns a :class:`Flip` saying exactly what changed,
so a scenario can print it and a failure names the byte. A flip is ``byte ^ mask``; the
default mask 0x01 turns an ASCII letter into another printable character, so a damaged
value still decodes (msgpack, JSON) and can only be caught by a checksum.

Files (raftlog/raft/node.py, journal.py, snapshots.py, raftlog/state/store.py):

* ``<data>/raft.journal``: ``b"RLJRNL01" u32 version`` then records
  ``u32 length | u32 crc32(body) | body = u64 index | u64 term | command`` (big-endian);
* ``<data>/state/data.mdb``: LMDB; an entry's value is stored as its JSON text inside a
  msgpack record, so the value's bytes appear verbatim in a leaf page;
* ``<data>/raft.snapshot`` (raftlog/raft/dump_format.py, raftlog/state/snapshot.py):
  ``b"RLRAFT02" u32 len | msgpack header | u32 CRC32C`` then the state snapshot
  ``b"RLSNAP01" u32 len | msgpack header`` then a compacted LMDB copy, then its trailer
  ``b"RLSNAPCK" u64 length | u32 CRC32C``. Format 1 (``RLRAFT01``: no header CRC, no
  trailer) is still understood here. A flip in the LMDB copy leaves both headers
  readable: only the trailer's CRC (and the record CRCs inside the copy) can tell.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "JOURNAL_HEADER_BYTES",
    "Flip",
    "delete_data_dir",
    "flip_byte",
    "flip_in_journal_record",
    "flip_in_snapshot_body",
    "flip_stored_value",
    "snapshot_body_offset",
    "snapshot_body_span",
    "snapshot_last_index",
]

JOURNAL_HEADER_BYTES = 12  # b"RLJRNL01" + u32 format version
_REC = struct.Struct(">II")  # length, crc32(body)
_BODY = struct.Struct(">QQ")  # index, term
RAFT_SNAPSHOT_MAGIC = b"RLRAFT02"
RAFT_SNAPSHOT_MAGIC_V1 = b"RLRAFT01"
STATE_SNAPSHOT_MAGIC = b"RLSNAP01"
SNAPSHOT_TRAILER_BYTES = 20  # b"RLSNAPCK" u64 length u32 CRC32C (format 2)


@dataclass(frozen=True)
class Flip:
    path: Path
    offset: int
    before: int
    after: int
    what: str = ""
    record_offset: int | None = None  # journal: where the damaged record starts

    def __str__(self) -> str:
        return (
            f"{self.path.name} byte {self.offset}: 0x{self.before:02x} -> 0x{self.after:02x}"
            f"{f' ({self.what})' if self.what else ''}"
        )


def flip_byte(
    path: Path, offset: int, mask: int = 0x01, what: str = "", record_offset: int | None = None
) -> Flip:
    """XOR the byte at ``offset`` of ``path`` with ``mask``, in place, and fsync."""
    if not 0 < mask < 256:
        raise ValueError(f"mask must be 1..255, not {mask}")
    size = path.stat().st_size
    if not 0 <= offset < size:
        raise ValueError(f"offset {offset} outside {path} ({size} bytes)")
    fd = os.open(path, os.O_RDWR)
    try:
        before = os.pread(fd, 1, offset)[0]
        after = before ^ mask
        os.pwrite(fd, bytes([after]), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Flip(path, offset, before, after, what, record_offset)


# -- raft.journal ------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalRecord:
    offset: int  # of the record's length field
    length: int  # of the body
    index: int
    term: int


def journal_records(path: Path) -> list[JournalRecord]:
    """The whole, well-formed records of ``path``, in file order (stops at the first bad one)."""
    data = path.read_bytes()
    pos = JOURNAL_HEADER_BYTES
    out: list[JournalRecord] = []
    while pos + _REC.size + _BODY.size <= len(data):
        length, _crc = _REC.unpack_from(data, pos)
        if length < _BODY.size or pos + _REC.size + length > len(data):
            break
        index, term = _BODY.unpack_from(data, pos + _REC.size)
        out.append(JournalRecord(pos, length, index, term))
        pos += _REC.size + length
    return out


def flip_in_journal_record(path: Path, fraction: float = 1 / 3, mask: int = 0x01) -> Flip:
    """Flip one byte inside the command of the record found ``fraction`` into the file.

    The record is a whole one with at least one whole record after it (so the damage is
    in the middle of the log, never a tail), and the byte is in its command, past the
    length, CRC, index and term: only the CRC can tell.
    """
    records = journal_records(path)
    if len(records) < 3:
        raise ValueError(f"{path} holds {len(records)} records; need at least 3")
    target = int(path.stat().st_size * fraction)
    rec = next((r for r in records[:-1] if r.offset + _REC.size + r.length > target), None)
    if rec is None or rec is records[-1]:
        rec = records[len(records) // 3]
    command_at = rec.offset + _REC.size + _BODY.size
    command_len = rec.length - _BODY.size
    if command_len <= 0:
        raise ValueError(f"record of index {rec.index} in {path} has an empty command")
    offset = command_at + command_len // 2
    return flip_byte(
        path,
        offset,
        mask,
        f"command of the record of index {rec.index}, term {rec.term}, "
        f"record at byte {rec.offset}, {len(records)} records",
        record_offset=rec.offset,
    )


# -- LMDB ------------------------------------------------------------------------------------


def flip_stored_value(path: Path, needle: bytes, mask: int = 0x01) -> list[Flip]:
    """Flip the middle byte of every copy of ``needle`` (a stored value's bytes) in ``path``.

    LMDB writes copy-on-write, so an older page may still hold a stale copy next to the
    live one; damaging every copy makes sure the live one is hit. Raises if none is found.
    """
    data = path.read_bytes()
    flips: list[Flip] = []
    at = data.find(needle)
    while at >= 0:
        flips.append(flip_byte(path, at + len(needle) // 2, mask, f"inside {needle!r}"))
        at = data.find(needle, at + len(needle))
    if not flips:
        raise ValueError(f"{needle!r} not found in {path}")
    return flips


# -- snapshots ------------------------------------------------------------------------------


def snapshot_body_span(path: Path) -> tuple[int, int]:
    """Where the compacted LMDB copy starts and ends in a raft snapshot file: after both
    headers (and the raft header's CRC), before the state snapshot's trailer."""
    data = path.read_bytes()
    magic = data[: len(RAFT_SNAPSHOT_MAGIC)]
    if magic not in (RAFT_SNAPSHOT_MAGIC, RAFT_SNAPSHOT_MAGIC_V1):
        raise ValueError(f"{path} is not a raft snapshot (magic {magic!r})")
    v2 = magic == RAFT_SNAPSHOT_MAGIC
    (raft_len,) = struct.unpack_from(">I", data, len(magic))
    state_at = len(magic) + 4 + raft_len + (4 if v2 else 0)
    if data[state_at : state_at + len(STATE_SNAPSHOT_MAGIC)] != STATE_SNAPSHOT_MAGIC:
        raise ValueError(f"{path}: no state snapshot at byte {state_at}")
    state_len: int = struct.unpack_from(">I", data, state_at + len(STATE_SNAPSHOT_MAGIC))[0]
    start = int(state_at + len(STATE_SNAPSHOT_MAGIC) + 4 + state_len)
    end = len(data) - (SNAPSHOT_TRAILER_BYTES if v2 else 0)
    if v2 and data[end : end + 8] != b"RLSNAPCK":
        raise ValueError(f"{path}: no state snapshot trailer at byte {end}")
    return start, end


def snapshot_body_offset(path: Path) -> int:
    """Where the compacted LMDB copy starts in a raft snapshot file (after both headers)."""
    return snapshot_body_span(path)[0]


def snapshot_last_index(path: Path) -> int:
    """The Raft index a snapshot file covers (its raft header's ``last`` entry)."""
    from raftlog.raft.snapshots import read_header

    with open(path, "rb") as f:
        header, _ = read_header(f)
    return int(header["last"][1])


def flip_in_snapshot_body(path: Path, needle: bytes, mask: int = 0x01) -> Flip:
    """Flip the middle byte of ``needle`` (a stored value) in the snapshot's LMDB copy.

    Only the body is touched: the headers still parse, so only a checksum over the
    body can tell. A compacted copy holds each live value once.
    """
    start, end = snapshot_body_span(path)
    at = path.read_bytes().find(needle, start, end)
    if at < 0:
        raise ValueError(f"{needle!r} not found in the body of {path} (bytes {start}..{end})")
    return flip_byte(
        path, at + len(needle) // 2, mask, f"inside {needle!r}, body bytes {start}..{end}"
    )


# -- data dir ----------------------------------------------------------------------------


def delete_data_dir(path: Path) -> int:
    """Remove a (stopped) node's whole data dir; returns how many files it held."""
    files = sum(1 for p in path.rglob("*") if p.is_file())
    shutil.rmtree(path)
    return files
