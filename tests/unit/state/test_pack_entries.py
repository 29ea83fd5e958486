"""``store.pack_entries`` (the batched record builder of an append) against the
per-entry ``entry_key`` + ``pack_entry`` it replaces: byte-identical records for any
batch, and an applied Append stores exactly those records (each verified on read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog.commands import MAX_INT, MAX_KEY_BYTES, Append, AppendEntry, encode
from raftlog.state.machine import StateMachine
from raftlog.state.store import (
    entry_key,
    entry_prefix,
    entry_size,
    pack_entries,
    pack_entry,
    unpack_entry,
)

pytestmark = pytest.mark.unit

# msgpack picks its integer and length encodings by size: cover every boundary.
_EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, MAX_INT]
ints = st.one_of(st.sampled_from(_EDGES), st.integers(0, MAX_INT))
values = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.integers(1, 70_000).map(lambda n: b"x" * n),  # bin8, bin16, bin32 headers
)
keys = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(max_size=300).filter(lambda k: len(k.encode()) <= MAX_KEY_BYTES),
)
logs = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


def _reference(
    log: str, start: int, entries: list[tuple[bytes, str | None]], ts: int, index: int, term: int
) -> list[tuple[bytes, bytes]]:
    out = []
    for i, (value, key) in enumerate(entries):
        record_key = entry_key(log, start + i)
        out.append((record_key, pack_entry(record_key, value, key, ts, index, term)))
    return out


@settings(max_examples=300, deadline=None)
@given(
    log=logs,
    start=st.one_of(st.sampled_from(_EDGES[:-1]), st.integers(0, 1 << 40)),
    entries=st.lists(st.tuples(values, keys), min_size=1, max_size=20),
    ts=ints,
    index=ints,
    term=ints,
)
def test_pack_entries_is_byte_identical_to_pack_entry(
    log: str, start: int, entries: list[tuple[bytes, str | None]], ts: int, index: int, term: int
) -> None:
    got = pack_entries(
        entry_prefix(log), start, [v for v, _ in entries], [k for _, k in entries], ts, index, term
    )
    assert got == _reference(log, start, entries, ts, index, term)
    for (record_key, raw), (value, key) in zip(got, entries, strict=True):
        entry = unpack_entry(record_key, raw)  # the seal verifies
        assert (entry.value_json, entry.key, entry.timestamp_ms) == (value, key, ts)
        assert (entry.index, entry.term) == (index, term)


def test_applied_append_stores_the_reference_records(tmp_path: Path) -> None:
    entries = [(b'"a"', None), (b"[1,2]", "k\u00e9y"), (b"x" * 300, None), (b"{}", "")]
    with StateMachine(tmp_path / "s") as sm:
        sm.apply(1, 3, encode(Append("audit", (AppendEntry(b"1"),), timestamp_ms=5)))
        cmd = Append("audit", tuple(AppendEntry(v, k) for v, k in entries), timestamp_ms=7)
        sm.apply(2, 3, encode(cmd))
        h = sm._handles()
        with h.env.begin() as txn:
            stored = [
                (k, v) for k, v in txn.cursor(db=h.entries) if k.startswith(entry_prefix("audit"))
            ]
        assert stored[1:] == _reference("audit", 1, entries, 7, 2, 3)
        info = sm.log_info("audit")
        assert info is not None
        assert info.bytes == 1 + sum(entry_size(v, k) for v, k in entries)
        assert (info.next_offset, info.count) == (5, 5)
        assert [e.value_json for e in sm.read_range("audit", 0, 10)] == [b"1"] + [
            v for v, _ in entries
        ]
