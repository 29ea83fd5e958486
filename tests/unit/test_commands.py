"""The command envelope: round trips, and nothing but InvalidCommand/UnsupportedFormat
out of decode for any bytes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog import commands
from raftlog.commands import (
    COMMAND_VERSION,
    GROUP_VERSION,
    Append,
    AppendEntry,
    AppendGroup,
    Barrier,
    Command,
    DeleteLog,
    InvalidCommand,
    SetClusterMeta,
    Trim,
    decode,
    encode,
    min_version,
    valid_log_name,
)
from raftlog.errors import UnsupportedFormat

pytestmark = pytest.mark.unit

CID = "0b6f3c2e-8d51-4f0e-9a57-3f7c1b2d4e60"

# --- strategies --------------------------------------------------------------------

log_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
keys = st.none() | st.text(max_size=40).filter(lambda s: len(s.encode("utf-8")) <= 1024)
idem_keys = st.none() | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=128
)
entries = st.builds(AppendEntry, value_json=st.binary(min_size=1, max_size=64), key=keys)
appends = st.builds(
    Append,
    log=log_names,
    entries=st.lists(entries, min_size=1, max_size=8).map(tuple),
    timestamp_ms=st.integers(0, commands.MAX_INT),
    idempotency_key=idem_keys,
    expected_offset=st.none() | st.integers(0, commands.MAX_INT),
)
groups = st.builds(AppendGroup, st.lists(appends, min_size=1, max_size=5).map(tuple))

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=10,
)
FIELD_NAMES = sorted(
    {"v", "k", "log", "entries", "timestamp_ms", "idempotency_key", "expected_offset"}
    | {"nonce", "before", "cluster_id", "name", "enable_version", "extra", "appends"}
)
envelope_like = st.builds(
    lambda fields, v, k: {**fields, "v": v, "k": k},
    st.dictionaries(st.sampled_from(FIELD_NAMES), msgpack_values, max_size=6),
    st.integers(-2, 3) | msgpack_values,
    st.sampled_from(
        ["append", "append_group", "barrier", "trim", "delete_log", "cluster_meta", "x"]
    ),
)


def _decode_is_safe(data: bytes) -> None:
    try:
        version, cmd = decode(data)
    except (InvalidCommand, UnsupportedFormat):
        return
    # Whatever decodes must re-encode to something that decodes to the same command.
    assert decode(encode(cmd, version)) == (version, cmd)


# --- round trips ---------------------------------------------------------------------


@given(appends)
@settings(max_examples=150, deadline=None)
def test_append_round_trip(cmd: Append) -> None:
    # Written as version 1, so a node of version 1 still reads every plain append.
    assert decode(encode(cmd)) == (1, cmd)


@given(groups)
@settings(max_examples=100, deadline=None)
def test_group_round_trip(cmd: AppendGroup) -> None:
    assert decode(encode(cmd)) == (GROUP_VERSION, cmd)


@pytest.mark.parametrize(
    "cmd",
    [
        Barrier(0),
        Barrier(2**64 - 1),
        Trim("log-1", 0),
        Trim("a.b_c", 12345),
        DeleteLog("Z"),
        SetClusterMeta(),
        SetClusterMeta(cluster_id=CID),
        SetClusterMeta(name="prod eu"),
        SetClusterMeta(enable_version=1),
        SetClusterMeta(cluster_id=CID, name="n", enable_version=1),
        Append("x", (AppendEntry(b"1"),), 0),
        Append("x", (AppendEntry(b'"v"', "k" * 1024),), 5, "idem key ~", 0),
    ],
)
def test_round_trip_each_kind(cmd: Command) -> None:
    data = encode(cmd)
    assert decode(data) == (1, cmd)
    assert decode(encode(cmd, COMMAND_VERSION)) == (COMMAND_VERSION, cmd)


def test_envelope_shape() -> None:
    raw = msgpack.unpackb(encode(Trim("a", 3)), raw=False)
    assert raw == {"v": 1, "k": "trim", "log": "a", "before": 3}
    raw = msgpack.unpackb(encode(Append("a", (AppendEntry(b"1"),), 7)), raw=False)
    assert raw == {"v": 1, "k": "append", "log": "a", "entries": [[b"1", None]], "timestamp_ms": 7}


def test_group_envelope_shape_is_plain_append_maps() -> None:
    group = AppendGroup(
        (Append("a", (AppendEntry(b"1"),), 7), Append("b", (AppendEntry(b"2", "k"),), 8, "i", 3))
    )
    raw = msgpack.unpackb(encode(group), raw=False)
    assert raw == {
        "v": GROUP_VERSION,
        "k": "append_group",
        "appends": [
            {"log": "a", "entries": [[b"1", None]], "timestamp_ms": 7},
            {
                "log": "b",
                "entries": [[b"2", "k"]],
                "timestamp_ms": 8,
                "idempotency_key": "i",
                "expected_offset": 3,
            },
        ],
    }
    assert min_version(group) == GROUP_VERSION == 2
    assert min_version(Barrier(1)) == 1


def test_a_group_needs_its_version() -> None:
    group = AppendGroup((Append("a", (AppendEntry(b"1"),), 7),))
    with pytest.raises(ValueError):
        encode(group, version=1)
    # A version-1 node reads the kind as unknown, so a version-1 envelope of it is
    # invalid here too: every replica refuses it alike.
    raw = msgpack.unpackb(encode(group), raw=False)
    with pytest.raises(InvalidCommand) as info:
        decode(msgpack.packb({**raw, "v": 1}, use_bin_type=True))
    assert info.value.field == "k"


def test_an_older_node_stops_at_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(AppendGroup((Append("a", (AppendEntry(b"1"),), 7),)))
    monkeypatch.setattr(commands, "COMMAND_VERSION", 1)
    with pytest.raises(UnsupportedFormat):
        decode(data)
    # ...while every other kind, written as version 1, still reads.
    assert decode(encode(Append("a", (AppendEntry(b"1"),), 7)))[0] == 1


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: AppendGroup(()), "appends"),
        (lambda: AppendGroup([Append("a", (AppendEntry(b"1"),), 0)]), "appends"),
        (lambda: AppendGroup((Barrier(1),)), "appends[0]"),
    ],
)
def test_invalid_groups_are_refused_on_construction(make: Callable[[], object], field: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        make()
    assert info.value.field == field


GOOD_MEMBER = {"log": "a", "entries": [[b"1", None]], "timestamp_ms": 1}


@pytest.mark.parametrize(
    ("appends", "field"),
    [
        ([], "appends"),
        ("x", "appends"),
        ([GOOD_MEMBER, 5], "appends[1]"),
        ([GOOD_MEMBER, {**GOOD_MEMBER, "log": "-bad"}], "appends[1].log"),
        ([{**GOOD_MEMBER, "entries": [[b"", None]]}], "appends[0].entries[0].value_json"),
        ([{**GOOD_MEMBER, "v": 1}], "appends[0].v"),
        ([{**GOOD_MEMBER, "k": "append"}], "appends[0].k"),
        ([{**GOOD_MEMBER, "extra": 1}], "appends[0].extra"),
        ([{"log": "a", "entries": [[b"1", None]]}], "appends[0].timestamp_ms"),
    ],
)
def test_invalid_group_envelopes_name_the_member(appends: Any, field: str) -> None:
    data = msgpack.packb(
        {"v": GROUP_VERSION, "k": "append_group", "appends": appends}, use_bin_type=True
    )
    with pytest.raises(InvalidCommand) as info:
        decode(data)
    assert info.value.field == field


@given(groups, st.integers(0, 200), st.binary(min_size=1, max_size=3))
@settings(max_examples=150, deadline=None)
def test_corrupted_groups_never_escape(cmd: AppendGroup, at: int, junk: bytes) -> None:
    data = bytearray(encode(cmd))
    pos = at % len(data)
    data[pos : pos + len(junk)] = junk
    _decode_is_safe(bytes(data))


def test_encode_refuses_unknown_versions() -> None:
    with pytest.raises(ValueError):
        encode(Barrier(1), version=COMMAND_VERSION + 1)
    with pytest.raises(ValueError):
        encode(Barrier(1), version=0)


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("A0._-", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-a", False),
        (".a", False),
        ("a/b", False),
        ("a b", False),
        ("a\n", False),
        ("é", False),
        ("a\x00", False),
        (None, False),
    ],
)
def test_valid_log_name(name: Any, ok: bool) -> None:
    assert valid_log_name(name) is ok


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: AppendEntry(b""), "value_json"),
        (lambda: AppendEntry("x"), "value_json"),  # type: ignore[arg-type]
        (lambda: AppendEntry(b"1", "k" * 1025), "key"),
        (lambda: Append("a", (), 0), "entries"),
        (lambda: Append("a", [AppendEntry(b"1")], 0), "entries"),  # type: ignore[arg-type]
        (lambda: Append("a", (AppendEntry(b"1"),), -1), "timestamp_ms"),
        (lambda: Append("a", (AppendEntry(b"1"),), True), "timestamp_ms"),
        (lambda: Append("a", (AppendEntry(b"1"),), 0, "\x7f"), "idempotency_key"),
        (lambda: Append("a", (AppendEntry(b"1"),), 0, None, -1), "expected_offset"),
        (lambda: Trim("a b", 0), "log"),
        (lambda: Barrier(-1), "nonce"),
        (lambda: SetClusterMeta(cluster_id="not-a-uuid"), "cluster_id"),
        (lambda: SetClusterMeta(cluster_id=CID.upper()), "cluster_id"),
        (lambda: SetClusterMeta(name=""), "name"),
        (lambda: SetClusterMeta(enable_version=0), "enable_version"),
    ],
)
def test_construction_validates(build: Callable[[], object], field: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        build()
    assert info.value.field == field
    assert repr(field) in str(info.value)


def _append_map(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "v": 1,
        "k": "append",
        "log": "a",
        "entries": [[b"1", None], [b"2", "k"]],
        "timestamp_ms": 5,
    }
    m.update(changes)
    return m


def _drop(m: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != field}


BAD_ENVELOPES: list[tuple[str, Any, str]] = [
    ("not a map", [1, 2], "command"),
    ("missing v", _drop(_append_map(), "v"), "v"),
    ("v is a string", _append_map(v="1"), "v"),
    ("v is a bool", _append_map(v=True), "v"),
    ("v is zero", _append_map(v=0), "v"),
    ("missing k", _drop(_append_map(), "k"), "k"),
    ("k not a string", _append_map(k=1), "k"),
    ("unknown kind", _append_map(k="explode"), "k"),
    ("unknown field", _append_map(extra=1), "extra"),
    ("bytes field name", {**_append_map(), b"raw": 1}, "b'raw'"),
    ("missing log", _drop(_append_map(), "log"), "log"),
    ("bad log name", _append_map(log="../etc"), "log"),
    ("log too long", _append_map(log="a" * 129), "log"),
    ("log not a string", _append_map(log=b"a"), "log"),
    ("missing entries", _drop(_append_map(), "entries"), "entries"),
    ("entries not a list", _append_map(entries={"a": 1}), "entries"),
    ("no entries", _append_map(entries=[]), "entries"),
    ("entry not a pair", _append_map(entries=[[b"1"]]), "entries[0]"),
    (
        "entry value empty",
        _append_map(entries=[[b"1", None], [b"", None]]),
        "entries[1].value_json",
    ),
    ("entry value is str", _append_map(entries=[["1", None]]), "entries[0].value_json"),
    ("entry key too long", _append_map(entries=[[b"1", "é" * 513]]), "entries[0].key"),
    ("entry key not str", _append_map(entries=[[b"1", 7]]), "entries[0].key"),
    ("missing timestamp", _drop(_append_map(), "timestamp_ms"), "timestamp_ms"),
    ("negative timestamp", _append_map(timestamp_ms=-1), "timestamp_ms"),
    ("float timestamp", _append_map(timestamp_ms=1.0), "timestamp_ms"),
    ("bool timestamp", _append_map(timestamp_ms=False), "timestamp_ms"),
    ("huge timestamp", _append_map(timestamp_ms=2**64 - 1), "timestamp_ms"),
    ("empty idempotency key", _append_map(idempotency_key=""), "idempotency_key"),
    ("long idempotency key", _append_map(idempotency_key="k" * 129), "idempotency_key"),
    ("non-ascii idempotency key", _append_map(idempotency_key="ké"), "idempotency_key"),
    ("control idempotency key", _append_map(idempotency_key="a\tb"), "idempotency_key"),
    ("negative expected_offset", _append_map(expected_offset=-1), "expected_offset"),
    ("bool expected_offset", _append_map(expected_offset=True), "expected_offset"),
    ("barrier nonce missing", {"v": 1, "k": "barrier"}, "nonce"),
    ("barrier nonce str", {"v": 1, "k": "barrier", "nonce": "1"}, "nonce"),
    ("barrier extra field", {"v": 1, "k": "barrier", "nonce": 1, "log": "a"}, "log"),
    ("trim before missing", {"v": 1, "k": "trim", "log": "a"}, "before"),
    ("trim before negative", {"v": 1, "k": "trim", "log": "a", "before": -5}, "before"),
    ("trim bad log", {"v": 1, "k": "trim", "log": "", "before": 0}, "log"),
    ("delete_log missing log", {"v": 1, "k": "delete_log"}, "log"),
    ("delete_log bad log", {"v": 1, "k": "delete_log", "log": "a b"}, "log"),
    ("cluster_id not uuid", {"v": 1, "k": "cluster_meta", "cluster_id": "x"}, "cluster_id"),
    ("cluster_id int", {"v": 1, "k": "cluster_meta", "cluster_id": 5}, "cluster_id"),
    ("name empty", {"v": 1, "k": "cluster_meta", "name": ""}, "name"),
    ("name too long", {"v": 1, "k": "cluster_meta", "name": "n" * 257}, "name"),
    ("enable_version zero", {"v": 1, "k": "cluster_meta", "enable_version": 0}, "enable_version"),
    (
        "enable_version bool",
        {"v": 1, "k": "cluster_meta", "enable_version": True},
        "enable_version",
    ),
]


@pytest.mark.parametrize(
    ("case", "envelope", "field"), BAD_ENVELOPES, ids=[c[0] for c in BAD_ENVELOPES]
)
def test_bad_field_is_named(case: str, envelope: Any, field: str) -> None:
    data = msgpack.packb(envelope, use_bin_type=True)
    with pytest.raises(InvalidCommand) as info:
        decode(data)
    assert info.value.field == field, case
    assert repr(field) in str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x91", msgpack.packb({"v": 1}) + b"\x00", b"\xa2\xff\xfe", "str", None],
)
def test_garbage_is_invalid(data: Any) -> None:
    with pytest.raises(InvalidCommand):
        decode(data)


@pytest.mark.parametrize("version", [COMMAND_VERSION + 1, 2**40])
def test_newer_version_is_unsupported(version: int) -> None:
    # A newer node may use kinds and fields unknown here: the version is checked first.
    data = msgpack.packb({"v": version, "k": "teleport", "where": "mars"}, use_bin_type=True)
    with pytest.raises(UnsupportedFormat) as info:
        decode(data)
    assert str(version) in str(info.value)
    assert str(COMMAND_VERSION) in str(info.value)


def test_version_check_reads_current_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "COMMAND_VERSION", 3)
    assert decode(encode(Barrier(3), version=3)) == (3, Barrier(3))


def test_uuid4_cluster_ids_are_accepted() -> None:
    cid = str(uuid.uuid4())
    assert decode(encode(SetClusterMeta(cluster_id=cid)))[1] == SetClusterMeta(cluster_id=cid)


# --- fuzzing -------------------------------------------------------------------------


@given(st.binary(max_size=200))
@settings(max_examples=400, deadline=None)
def test_random_bytes_never_escape(data: bytes) -> None:
    _decode_is_safe(data)


@given(msgpack_values)
@settings(max_examples=200, deadline=None)
def test_random_msgpack_never_escapes(value: Any) -> None:
    _decode_is_safe(msgpack.packb(value, use_bin_type=True))


@given(envelope_like)
@settings(max_examples=250, deadline=None)
def test_random_envelopes_never_escape(value: dict[str, Any]) -> None:
    _decode_is_safe(msgpack.packb(value, use_bin_type=True))


@given(appends, st.integers(0, 60), st.binary(min_size=1, max_size=3))
@settings(max_examples=200, deadline=None)
def test_corrupted_appends_never_escape(cmd: Append, at: int, junk: bytes) -> None:
    data = bytearray(encode(cmd))
    pos = at % len(data)
    data[pos : pos + len(junk)] = junk
    _decode_is_safe(bytes(data))
