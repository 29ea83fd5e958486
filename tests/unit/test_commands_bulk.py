"""The batched construction of append entries (``raftlog.bulk``,
``commands.append_entries`` and the fast path of ``decode``) against one-by-one
construction: the same entries for every valid batch, the same error (field and
problem) for every invalid one."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog import bulk
from raftlog.commands import (
    MAX_KEY_BYTES,
    Append,
    AppendEntry,
    InvalidCommand,
    append_entries,
    decode,
    encode,
)
from raftlog.service.types import NewEntry

pytestmark = pytest.mark.unit


class _Bytes(bytes):
    """A bytes subclass: the constructor accepts it, the fast path leaves it to it."""


ints = st.integers(-(1 << 63), (1 << 64) - 1)  # what msgpack carries
good_values = st.binary(min_size=1, max_size=40)
any_values = st.one_of(
    good_values,
    st.just(b""),
    st.builds(_Bytes, good_values),
    st.text(max_size=3),
    ints,
    st.none(),
)
good_keys = st.one_of(st.none(), st.text(max_size=20))
any_keys = st.one_of(
    good_keys,
    st.just("k" * (MAX_KEY_BYTES + 1)),
    st.just("\u00e9" * (MAX_KEY_BYTES // 2 + 1)),  # short in characters, long in bytes
    st.just("\ud800"),  # a lone surrogate: not UTF-8
    ints,
    st.binary(max_size=3),
)


def _one_by_one(values: list[Any], keys: list[Any]) -> tuple[AppendEntry, ...] | str:
    try:
        return tuple(AppendEntry(v, k) for v, k in zip(values, keys, strict=True))
    except InvalidCommand as exc:
        return f"{exc.field}: {exc.problem}"


def _outcome(values: list[Any], keys: list[Any]) -> tuple[AppendEntry, ...] | str:
    try:
        return append_entries(values, keys)
    except InvalidCommand as exc:
        return f"{exc.field}: {exc.problem}"


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.one_of(
        st.lists(st.tuples(good_values, good_keys), max_size=30),
        st.lists(st.tuples(any_values, any_keys), max_size=30),
    )
)
def test_append_entries_equals_one_by_one(pairs: list[tuple[Any, Any]]) -> None:
    values, keys = [v for v, _ in pairs], [k for _, k in pairs]
    got, want = _outcome(values, keys), _one_by_one(values, keys)
    assert got == want
    if isinstance(got, tuple):
        assert [type(e.value_json) for e in got] == [type(v) for v in values]


def _reference_decode_entries(raw: object) -> tuple[AppendEntry, ...] | str:
    """The loop ``_decode_entries`` ran before the fast path (its exact messages)."""
    if not isinstance(raw, list):
        return f"entries: must be an array, got {type(raw).__name__}"
    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != 2:
            return f"entries[{i}]: must be a [value_json, key] pair"
        try:
            entries.append(AppendEntry(item[0], item[1]))
        except InvalidCommand as exc:
            return f"entries[{i}].{exc.field}: {exc.problem}"
    return tuple(entries)


wire_keys = any_keys.filter(lambda k: k != "\ud800")  # msgpack cannot carry it
wire_items = st.one_of(
    st.tuples(any_values, wire_keys).map(list),
    st.tuples(good_values, good_keys).map(list),
    st.lists(good_values, max_size=3),  # wrong arity
    st.dictionaries(st.text(max_size=2), ints, max_size=2),
    st.binary(min_size=2, max_size=2),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(
    raw=st.one_of(
        st.lists(st.tuples(good_values, good_keys).map(list), max_size=30),
        st.lists(wire_items, max_size=30),
    )
)
def test_decode_entries_equals_the_per_entry_loop(raw: list[Any]) -> None:
    envelope = {"v": 1, "k": "append", "log": "audit", "entries": raw, "timestamp_ms": 1}
    data = msgpack.packb(envelope, use_bin_type=True)
    want = _reference_decode_entries(msgpack.unpackb(data, raw=False)["entries"])
    try:
        _, cmd = decode(data)
    except InvalidCommand as exc:
        got: object = f"{exc.field}: {exc.problem}"
        if want == ():
            assert got == "entries: must hold at least one entry"
            return
    else:
        assert isinstance(cmd, Append)
        got = cmd.entries
        assert decode(encode(cmd))[1] == cmd
    assert got == want


def test_append_refuses_a_non_entry_at_its_index() -> None:
    with pytest.raises(InvalidCommand) as info:
        Append("audit", (AppendEntry(b"1"), NewEntry(b"2"), "x"), timestamp_ms=1)  # type: ignore[arg-type]
    assert (info.value.field, info.value.problem) == ("entries[1]", "must be an AppendEntry")


def test_bulk_build_equals_construction() -> None:
    built = bulk.build(AppendEntry, value_json=[b"1", b"22"], key=[None, "k"])
    made = [AppendEntry(b"1"), AppendEntry(b"22", "k")]
    assert built == made
    assert [hash(e) for e in built] == [hash(e) for e in made]
    assert [repr(e) for e in built] == [repr(e) for e in made]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built[0].key = "x"  # type: ignore[misc]
    assert bulk.build(NewEntry, value_json=[], key=[]) == []


def test_bulk_build_refuses_wrong_columns() -> None:
    with pytest.raises(ValueError, match="exactly the columns"):
        bulk.build(AppendEntry, value_json=[b"1"])
    with pytest.raises(ValueError, match="exactly the columns"):
        bulk.build(AppendEntry, value_json=[b"1"], key=[None], extra=[1])
    with pytest.raises(ValueError, match="differ in length"):
        bulk.build(AppendEntry, value_json=[b"1"], key=[None, None])

    @dataclasses.dataclass
    class NoSlots:
        a: int

    with pytest.raises(ValueError, match="not a slot"):
        bulk.build(NoSlots, a=[1])


def test_columns_behave_as_the_tuple_of_their_records() -> None:
    cols = bulk.Columns(AppendEntry, value_json=[b"1", b"22", b"3"], key=[None, "k", None])
    made = (AppendEntry(b"1"), AppendEntry(b"22", "k"), AppendEntry(b"3"))
    assert cols == made and made == cols
    assert cols == bulk.Columns(AppendEntry, value_json=(b"1", b"22", b"3"), key=(None, "k", None))
    assert cols != made[:2] and cols != list(made)
    assert hash(cols) == hash(made) and repr(cols) == repr(made)
    assert len(cols) == 3 and list(cols) == list(made) and cols.items() == made
    assert cols[1] == made[1] and cols[-1] == made[-1] and cols[1:] == made[1:]
    assert made[1] in cols and cols.index(made[2]) == 2
    with pytest.raises(IndexError):
        cols[3]
    assert cols.column("value_json") == (b"1", b"22", b"3")
    assert bulk.columns_of(cols, "key") == [(None, "k", None)]
    assert bulk.columns_of(made, "key") == [[None, "k", None]]
    with pytest.raises(ValueError, match="differ in length"):
        bulk.Columns(AppendEntry, value_json=[b"1"], key=[])


def test_an_append_of_columns_equals_and_encodes_as_one_of_records() -> None:
    values, keys = [b'"a"', b"[1]", b"{}"], [None, "k\u00e9", ""]
    made = Append("audit", tuple(map(AppendEntry, values, keys)), timestamp_ms=9)
    cols = Append("audit", append_entries(values, keys), timestamp_ms=9)
    assert isinstance(cols.entries, bulk.Columns)
    assert cols == made and encode(cols) == encode(made)
    _, decoded = decode(encode(made))
    assert isinstance(decoded, Append) and isinstance(decoded.entries, bulk.Columns)
    assert decoded == made
    with pytest.raises(InvalidCommand, match="must be a tuple of AppendEntry"):
        Append("audit", bulk.Columns(NewEntry, value_json=[b"1"], key=[None]), timestamp_ms=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="at least one entry"):
        Append("audit", bulk.Columns(AppendEntry, value_json=[], key=[]), timestamp_ms=1)
