"""The versioned command envelope: what raftlog replicates through Raft.

Wire format: one msgpack map ``{"v": <envelope version>, "k": <kind>, ...fields}``,
packed with ``use_bin_type=True`` (never pickle). Every field of a kind is listed in
``_KINDS``; an unknown field, a missing required field, a wrong type (a bool is not an
int) or an out-of-range value makes the whole command invalid.

Contracts:

* ``decode`` never raises anything but ``InvalidCommand`` (the bytes are garbage or
  break a rule; the message names the field) or ``UnsupportedFormat`` (the envelope
  version is newer than this code: a newer node wrote it, so this node must stop
  rather than guess).
* The dataclasses validate themselves on construction, so a command that exists in
  memory is always encodable and decodes back to an equal value.
* Everything here is pure; any thread may call it.
* ``AppendEntry.value_json`` is the compact UTF-8 JSON text checked by the API layer.
  This layer only checks that it is non-empty bytes: parsing JSON on every apply
  would be expensive, and the value is opaque to the state machine.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypeAlias, TypeGuard, Union

import msgpack

from raftlog import bulk
from raftlog.errors import UnsupportedFormat

__all__ = [
    "COMMAND_VERSION",
    "GROUP_VERSION",
    "LOG_NAME_RE",
    "MAX_CLUSTER_NAME_BYTES",
    "MAX_IDEMPOTENCY_KEY_LEN",
    "MAX_INT",
    "MAX_KEY_BYTES",
    "MAX_NONCE",
    "ONE_ENTRY_PAGE_OVERHEAD_BYTES",
    "Append",
    "AppendEntry",
    "AppendGroup",
    "Barrier",
    "Command",
    "DeleteLog",
    "Entries",
    "InvalidCommand",
    "SetClusterMeta",
    "Trim",
    "append_entries",
    "decode",
    "encode",
    "min_version",
    "valid_log_name",
]

# The newest envelope version this code writes and understands. The state machine
# reads it at call time (tests patch it to simulate an upgrade).
COMMAND_VERSION = 2
# The envelope version that introduced ``AppendGroup``. ``encode`` writes every other
# kind as version 1, so a node of version 1 still reads them; it stops (UnsupportedFormat)
# at the first group, which it could not apply like the others.
GROUP_VERSION = 2

LOG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_KEY_BYTES = 1024

# What a page of one entry adds at most to the entry's value: the page and entry
# framing, a key of MAX_KEY_BYTES that escapes to 6 bytes per byte (control
# characters: \u0000), and 19-digit integers. Rounded up; a page of one entry of
# ``max_entry_bytes`` always fits in ``max_entry_bytes + ONE_ENTRY_PAGE_OVERHEAD_BYTES``
# (raftlog.config requires max_response_bytes to be at least that).
ONE_ENTRY_PAGE_OVERHEAD_BYTES = 8192
MAX_IDEMPOTENCY_KEY_LEN = 128
MAX_CLUSTER_NAME_BYTES = 256
MAX_INT = (1 << 63) - 1  # offsets, timestamps, versions: they must fit signed 64 bits
MAX_NONCE = (1 << 64) - 1


class InvalidCommand(ValueError):
    """A command that breaks a rule. ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid command: field {field!r}: {problem}")
        self.field = field
        self.problem = problem


def valid_log_name(name: object) -> bool:
    """True when ``name`` is a str matching ``LOG_NAME_RE`` (no trailing newline)."""
    return isinstance(name, str) and LOG_NAME_RE.fullmatch(name) is not None


# --- field checks (shared by construction and decoding) ----------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(field: str, value: object, lo: int, hi: int = MAX_INT) -> None:
    if not _is_int(value):
        raise InvalidCommand(field, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidCommand(field, f"must be between {lo} and {hi}, got {value}")


def _check_opt_int(field: str, value: object, lo: int) -> None:
    if value is not None:
        _check_int(field, value, lo)


def _check_log(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidCommand(field, f"must be a string, got {type(value).__name__}")
    if not valid_log_name(value):
        raise InvalidCommand(field, f"{value!r} does not match {LOG_NAME_RE.pattern}")


def _utf8_len(field: str, value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidCommand(field, "is not encodable as UTF-8") from None


def _check_opt_str(field: str, value: object, min_bytes: int, max_bytes: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidCommand(field, f"must be a string or nil, got {type(value).__name__}")
    size = _utf8_len(field, value)
    if not min_bytes <= size <= max_bytes:
        raise InvalidCommand(field, f"must be {min_bytes} to {max_bytes} UTF-8 bytes, got {size}")


def _check_idempotency_key(field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidCommand(field, f"must be a string or nil, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LEN:
        raise InvalidCommand(field, f"must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters")
    if any(not 0x20 <= ord(ch) <= 0x7E for ch in value):
        raise InvalidCommand(field, "must be printable ASCII (0x20-0x7e)")


def _check_cluster_id(field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidCommand(field, f"must be a string or nil, got {type(value).__name__}")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise InvalidCommand(field, f"{value!r} is not a UUID") from None
    if canonical != value:
        raise InvalidCommand(field, f"must be a canonical lowercase UUID like {canonical!r}")


# --- commands ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendEntry:
    """One entry of an append: its value as compact JSON bytes and an optional key."""

    value_json: bytes
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value_json, bytes):
            raise InvalidCommand(
                "value_json", f"must be bytes, got {type(self.value_json).__name__}"
            )
        if not self.value_json:
            raise InvalidCommand("value_json", "must not be empty")
        _check_opt_str("key", self.key, 0, MAX_KEY_BYTES)


# The entries of an Append: a tuple of AppendEntry, or the same held as columns (a
# batch built or decoded in bulk: ``append_entries``, ``decode``). Both compare equal.
Entries: TypeAlias = Union[tuple[AppendEntry, ...], "bulk.Columns[AppendEntry]"]


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``entries`` (at least one) to ``log``, creating the log if needed."""

    log: str
    entries: Entries
    timestamp_ms: int
    idempotency_key: str | None = None
    expected_offset: int | None = None

    def __post_init__(self) -> None:
        _check_log("log", self.log)
        columns = isinstance(self.entries, bulk.Columns) and self.entries.cls is AppendEntry
        if not columns and not isinstance(self.entries, tuple):
            raise InvalidCommand("entries", "must be a tuple of AppendEntry")
        if not self.entries:
            raise InvalidCommand("entries", "must hold at least one entry")
        if not columns and not all(map(isinstance, self.entries, repeat(AppendEntry))):
            for i, entry in enumerate(self.entries):
                if not isinstance(entry, AppendEntry):
                    raise InvalidCommand(f"entries[{i}]", "must be an AppendEntry")
        _check_int("timestamp_ms", self.timestamp_ms, 0)
        _check_idempotency_key("idempotency_key", self.idempotency_key)
        _check_opt_int("expected_offset", self.expected_offset, 0)


def _valid_key(key: object) -> bool:
    """What ``AppendEntry.__post_init__`` accepts as a key: None, or a str of at most
    MAX_KEY_BYTES UTF-8 bytes."""
    if key is None:
        return True
    if not isinstance(key, str):
        return False
    try:
        return len(key.encode("utf-8")) <= MAX_KEY_BYTES
    except UnicodeEncodeError:
        return False


def _entries_fast(
    values: Sequence[object], keys: Sequence[object]
) -> bulk.Columns[AppendEntry] | None:
    """The AppendEntry of each (value, key), held as columns (``raftlog.bulk.Columns``),
    when every pair passes the constructor's checks, decided by C loops over the
    columns; None when any pair might not (the caller then constructs them one by one,
    which raises the exact error). Exactly bytes values (a bytes subclass, which the
    constructor accepts, takes the slow path)."""
    n = len(values)
    if len(keys) != n:
        return None
    if n == 0 or set(map(type, values)) != {bytes} or not all(values):  # bytes: non-empty
        return None
    if keys.count(None) != n and not all(map(_valid_key, keys)):
        return None
    return bulk.Columns(AppendEntry, value_json=values, key=keys)


def append_entries(values: Sequence[bytes], keys: Sequence[str | None]) -> Entries:
    """``tuple(map(AppendEntry, values, keys))`` (equal lengths), with the same checks
    and errors; for a valid batch held as columns (``_entries_fast``), at a fraction of
    the cost."""
    fast = _entries_fast(values, keys)
    if fast is not None:
        return fast
    return tuple(AppendEntry(v, k) for v, k in zip(values, keys, strict=True))


@dataclass(frozen=True, slots=True)
class Barrier:
    """A no-op: once applied, everything proposed before it has been applied."""

    nonce: int

    def __post_init__(self) -> None:
        _check_int("nonce", self.nonce, 0, MAX_NONCE)


@dataclass(frozen=True, slots=True)
class Trim:
    """Delete the entries of ``log`` whose offset is below ``before``."""

    log: str
    before: int

    def __post_init__(self) -> None:
        _check_log("log", self.log)
        _check_int("before", self.before, 0)


@dataclass(frozen=True, slots=True)
class DeleteLog:
    """Delete every entry of ``log``; its offsets are never reused."""

    log: str

    def __post_init__(self) -> None:
        _check_log("log", self.log)


@dataclass(frozen=True, slots=True)
class SetClusterMeta:
    """Set the cluster identity (once) and/or name, and/or enable a newer version."""

    cluster_id: str | None = None
    name: str | None = None
    enable_version: int | None = None

    def __post_init__(self) -> None:
        _check_cluster_id("cluster_id", self.cluster_id)
        _check_opt_str("name", self.name, 1, MAX_CLUSTER_NAME_BYTES)
        _check_opt_int("enable_version", self.enable_version, 1)


@dataclass(frozen=True, slots=True)
class AppendGroup:
    """Coalesced appends: each member is applied in order as if it were its own entry,
    with its own result (its own offsets, its own ``offset_mismatch``; later its own
    idempotency outcome: each member carries its own ``idempotency_key``). Members do not
    share atomicity: one refused member leaves the others applied. Needs envelope
    version ``GROUP_VERSION``."""

    appends: tuple[Append, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.appends, tuple):
            raise InvalidCommand("appends", "must be a tuple of Append")
        if not self.appends:
            raise InvalidCommand("appends", "must hold at least one append")
        for i, member in enumerate(self.appends):
            if not isinstance(member, Append):
                raise InvalidCommand(f"appends[{i}]", "must be an Append")


Command: TypeAlias = Append | AppendGroup | Barrier | Trim | DeleteLog | SetClusterMeta

# The lowest envelope version that can carry each kind (1 unless listed).
_MIN_VERSION: dict[str, int] = {"append_group": GROUP_VERSION}


# --- encoding --------------------------------------------------------------------------


def _append_fields(cmd: Append) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "log": cmd.log,
        # A tuple packs as an array: the same bytes as [value_json, key] lists.
        "entries": list(zip(*bulk.columns_of(cmd.entries, "value_json", "key"), strict=True)),
        "timestamp_ms": cmd.timestamp_ms,
    }
    if cmd.idempotency_key is not None:
        fields["idempotency_key"] = cmd.idempotency_key
    if cmd.expected_offset is not None:
        fields["expected_offset"] = cmd.expected_offset
    return fields


def _fields_of(cmd: Command) -> tuple[str, dict[str, Any]]:
    """The kind and the wire fields of ``cmd``; optional fields that are None are left out."""
    if isinstance(cmd, Append):
        return "append", _append_fields(cmd)
    if isinstance(cmd, AppendGroup):
        # Each member is the map of a plain append without "v" and "k".
        return "append_group", {"appends": [_append_fields(a) for a in cmd.appends]}
    if isinstance(cmd, Barrier):
        return "barrier", {"nonce": cmd.nonce}
    if isinstance(cmd, Trim):
        return "trim", {"log": cmd.log, "before": cmd.before}
    if isinstance(cmd, DeleteLog):
        return "delete_log", {"log": cmd.log}
    if isinstance(cmd, SetClusterMeta):
        meta = {
            "cluster_id": cmd.cluster_id,
            "name": cmd.name,
            "enable_version": cmd.enable_version,
        }
        return "cluster_meta", {k: v for k, v in meta.items() if v is not None}
    raise TypeError(f"not a raftlog command: {type(cmd).__name__}")


def min_version(cmd: Command) -> int:
    """The lowest envelope version that can carry ``cmd`` (what ``encode`` writes)."""
    return _MIN_VERSION.get(_fields_of(cmd)[0], 1)


def encode(cmd: Command, version: int | None = None) -> bytes:
    """The envelope bytes of ``cmd`` written as ``version`` (default: the lowest version
    that carries its kind, so older nodes read every kind they know).

    Raises ValueError when ``version`` is not between that lowest version and
    COMMAND_VERSION (this code never writes what it could not read back), TypeError when
    ``cmd`` is not a command.
    """
    kind, fields = _fields_of(cmd)
    lowest = _MIN_VERSION.get(kind, 1)
    if version is None:
        version = lowest
    if not _is_int(version) or not lowest <= version <= COMMAND_VERSION:
        raise ValueError(
            f"envelope version of {kind!r} must be {lowest}..{COMMAND_VERSION}, got {version!r}"
        )
    envelope: dict[str, Any] = {"v": version, "k": kind, **fields}
    packed: bytes = msgpack.packb(envelope, use_bin_type=True)
    return packed


# --- decoding ---------------------------------------------------------------------------

_MISSING = object()


def _required(m: dict[Any, Any], field: str) -> Any:
    value = m.get(field, _MISSING)
    if value is _MISSING:
        raise InvalidCommand(field, "is missing")
    return value


def _decode_entries(raw: object) -> Entries:
    if not isinstance(raw, list):
        raise InvalidCommand("entries", f"must be an array, got {type(raw).__name__}")
    if raw and set(map(type, raw)) == {list} and set(map(len, raw)) == {2}:
        values, keys = zip(*raw, strict=True)  # every pair: [value_json, key]
        fast = _entries_fast(values, keys)
        if fast is not None:
            return fast
    entries = []  # one by one: the first bad pair names its index
    for i, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != 2:
            raise InvalidCommand(f"entries[{i}]", "must be a [value_json, key] pair")
        try:
            entries.append(AppendEntry(item[0], item[1]))
        except InvalidCommand as exc:
            raise InvalidCommand(f"entries[{i}].{exc.field}", exc.problem) from None
    return tuple(entries)


def _decode_append(m: dict[Any, Any]) -> Append:
    # Order matters only for which problem is reported first: the log, then entries.
    log = _required(m, "log")
    _check_log("log", log)
    return Append(
        log=log,
        entries=_decode_entries(_required(m, "entries")),
        timestamp_ms=_required(m, "timestamp_ms"),
        idempotency_key=m.get("idempotency_key"),
        expected_offset=m.get("expected_offset"),
    )


def _decode_group_member(i: int, raw: object) -> Append:
    if not isinstance(raw, dict):
        raise InvalidCommand(f"appends[{i}]", f"must be a map, got {type(raw).__name__}")
    allowed = _KINDS["append"][0]
    try:
        for name in raw:
            if name not in allowed:
                shown = name if isinstance(name, str) else repr(name)
                raise InvalidCommand(shown, "is not a field of an append")
        return _decode_append(raw)
    except InvalidCommand as exc:
        raise InvalidCommand(f"appends[{i}].{exc.field}", exc.problem) from None


def _decode_append_group(m: dict[Any, Any]) -> AppendGroup:
    raw = _required(m, "appends")
    if not isinstance(raw, list):
        raise InvalidCommand("appends", f"must be an array, got {type(raw).__name__}")
    return AppendGroup(tuple(_decode_group_member(i, item) for i, item in enumerate(raw)))


def _decode_barrier(m: dict[Any, Any]) -> Barrier:
    return Barrier(nonce=_required(m, "nonce"))


def _decode_trim(m: dict[Any, Any]) -> Trim:
    return Trim(log=_required(m, "log"), before=_required(m, "before"))


def _decode_delete_log(m: dict[Any, Any]) -> DeleteLog:
    return DeleteLog(log=_required(m, "log"))


def _decode_cluster_meta(m: dict[Any, Any]) -> SetClusterMeta:
    return SetClusterMeta(
        cluster_id=m.get("cluster_id"), name=m.get("name"), enable_version=m.get("enable_version")
    )


# kind -> (allowed fields besides "v" and "k", decoder)
_KINDS: dict[str, tuple[frozenset[str], Callable[[dict[Any, Any]], Command]]] = {
    "append": (
        frozenset({"log", "entries", "timestamp_ms", "idempotency_key", "expected_offset"}),
        _decode_append,
    ),
    "append_group": (frozenset({"appends"}), _decode_append_group),
    "barrier": (frozenset({"nonce"}), _decode_barrier),
    "trim": (frozenset({"log", "before"}), _decode_trim),
    "delete_log": (frozenset({"log"}), _decode_delete_log),
    "cluster_meta": (frozenset({"cluster_id", "name", "enable_version"}), _decode_cluster_meta),
}


def decode(data: bytes) -> tuple[int, Command]:
    """Parse envelope bytes into (envelope version, command).

    Raises UnsupportedFormat when "v" is an integer above COMMAND_VERSION (checked
    before anything else: a newer node may use kinds and fields unknown here), and
    InvalidCommand for every other problem. No other exception escapes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidCommand("command", f"must be bytes, got {type(data).__name__}")
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types; all mean garbage here
        raise InvalidCommand("command", f"is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise InvalidCommand("command", f"must be a msgpack map, got {type(obj).__name__}")

    version = _required(obj, "v")
    if not _is_int(version):
        raise InvalidCommand("v", f"must be an integer, got {type(version).__name__}")
    if version > COMMAND_VERSION:
        raise UnsupportedFormat(
            f"command envelope version {version} is newer than version {COMMAND_VERSION}, "
            "the newest this raftlog understands: a newer node wrote it; upgrade this node"
        )
    if version < 1:
        raise InvalidCommand("v", f"must be >= 1, got {version}")

    kind = _required(obj, "k")
    if not isinstance(kind, str):
        raise InvalidCommand("k", f"must be a string, got {type(kind).__name__}")
    spec = _KINDS.get(kind)
    if spec is None:
        raise InvalidCommand("k", f"unknown kind {kind!r}")
    allowed, decoder = spec
    if version < _MIN_VERSION.get(kind, 1):
        # A version-1 node reads this kind as unknown (InvalidCommand): so does this one.
        raise InvalidCommand("k", f"kind {kind!r} needs envelope version {_MIN_VERSION[kind]}")
    for name in obj:
        if name not in allowed and name not in ("v", "k"):
            shown = name if isinstance(name, str) else repr(name)
            raise InvalidCommand(shown, f"is not a field of kind {kind!r}")
    return version, decoder(obj)
