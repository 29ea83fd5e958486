"""The batched fast path of ``parse_append`` (``api.validation._batch_fast``) against
the per-entry loop it skips: for any batch body and limits, the same AppendRequest, or
the same error (type, message and details)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import validation
from raftlog.errors import RaftlogError
from raftlog.service.types import Limits

pytestmark = pytest.mark.unit

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.text(max_size=30)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.one_of(st.none(), st.text(max_size=12), st.integers(0, 5), st.just("\u00e9" * 9))
good_items = st.builds(lambda v: {"value": v}, json_values)
keyed_items = st.builds(lambda v, k: {"value": v, "key": k}, json_values, keys)
odd_items = st.one_of(
    st.dictionaries(st.sampled_from(["value", "key", "other", "Value"]), json_values, max_size=3),
    json_values,
)
limits = st.builds(
    Limits,
    max_entry_bytes=st.sampled_from([1 << 20, 40, 8]),
    max_batch_bytes=st.sampled_from([8 << 20, 200, 30]),
    max_key_bytes=st.sampled_from([1024, 10, 0]),
)


def _outcome(body: bytes, lim: Limits) -> object:
    try:
        return validation.parse_append("audit", body, lim)
    except RaftlogError as exc:
        return (type(exc), exc.message, exc.details)


@settings(max_examples=400, deadline=None)
@given(
    items=st.one_of(
        st.lists(good_items, min_size=1, max_size=20),
        st.lists(st.one_of(good_items, keyed_items), min_size=1, max_size=20),
        st.lists(st.one_of(good_items, keyed_items, odd_items), min_size=1, max_size=10),
    ),
    lim=limits,
)
def test_fast_path_equals_the_per_entry_loop(items: list[Any], lim: Limits) -> None:
    body = json.dumps({"entries": items}, ensure_ascii=False).encode()
    got = _outcome(body, lim)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(validation, "_batch_fast", lambda items, limits: None)
        want = _outcome(body, lim)
    assert got == want


def test_a_valid_batch_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = validation._batch_fast

    def spy(items: list[Any], limits: Limits) -> object:
        found = real(items, limits)
        calls.append(found)
        return found

    monkeypatch.setattr(validation, "_batch_fast", spy)
    body = json.dumps({"entries": [{"value": "x" * 100}] * 100}).encode()
    request = validation.parse_append("audit", body, Limits())
    assert len(request.entries) == 100 and calls and calls[0] is not None
    assert request.entries[0].value_json == json.dumps("x" * 100).encode()
