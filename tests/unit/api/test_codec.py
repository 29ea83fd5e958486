"""api/codec.py: orjson's answers are used only where they equal the standard library's,
and a body with a repeated key is never taken by the fast path."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.codec import dumps, encode_value, parse_unique
from api.validation import parse_append
from raftlog.errors import InvalidRequest
from tests.unit.api.support import TEST_LIMITS

pytestmark = pytest.mark.unit

# Keys that collide once unescaped, carry colons, or are empty: the fast path's hard cases.
_KEY_TEXTS = ['"a"', '"\\u0061"', '"a:"', '"a\\u003a"', '":"', '""', '"b"', '"\\u003a"', '"é"']


def _unique_or_raise(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise KeyError("repeated")
    return obj


def _has_repeated_key(text: str) -> bool:
    try:
        json.loads(text, object_pairs_hook=_unique_or_raise)
    except KeyError:
        return True
    return False


_scalar_texts = st.sampled_from(
    ['"x"', '"x:y"', '":"', '"\\u003a"', "1", "-0", "1.5", "1e400", "null", "true", "[]", "{}"]
)


def _object_text(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(st.sampled_from(_KEY_TEXTS), children)
    return st.lists(pair, max_size=4).map(
        lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
    )


_json_texts = st.recursive(
    _scalar_texts,
    lambda children: (
        _object_text(children)
        | st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_texts, st.sampled_from(["", " ", "\n"]))
def test_a_repeated_key_is_never_proven_unique(text: str, pad: str) -> None:
    raw = (pad + text.replace(",", "," + pad) + pad).encode("utf-8")
    parsed = parse_unique(raw)
    if _has_repeated_key(raw.decode()):
        assert parsed is None, raw
    elif parsed is not None:  # when it answers, it answers as json does
        assert parsed.doc == json.loads(raw)


@pytest.mark.parametrize(
    "body",
    [
        b'{"value":1,"value":2}',
        b'{"value":{"a":1,"a":2}}',
        b'{"value":1,"\\u0076alue":2}',
        b'{"value":[{"k:":1,"k:":2}]}',
        b'{"entries":[{"value":{"x":{"y":[{"z":1,"z":1}]}}}]}',
        b'{"value":"a:b","value":"c"}',
    ],
)
def test_repeated_keys_are_refused_by_parse_append(body: bytes) -> None:
    assert parse_unique(body) is None
    with pytest.raises(InvalidRequest, match="repeats the key"):
        parse_append("l", body, TEST_LIMITS)


def _json_values() -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )
    return st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids),
        max_leaves=15,
    )


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types (1 is not 1.0), floats bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=200, deadline=None)
@given(_json_values(), st.booleans())
def test_parsed_documents_and_encoded_values_equal_the_standard_librarys(
    value: Any, ascii_only: bool
) -> None:
    try:
        raw = json.dumps({"value": value}, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in generated text
        return
    parsed = parse_unique(raw)
    expected = json.loads(raw)
    if parsed is None:
        return
    assert _same(parsed.doc, expected)
    stdlib = json.dumps(expected["value"], separators=(",", ":"), ensure_ascii=False)
    assert encode_value(parsed.doc["value"], parsed) == stdlib.encode("utf-8")


def test_the_common_bodies_take_the_fast_path() -> None:
    for body in (
        b'{"value":"' + b"x" * 100 + b'"}',
        b'{"value":{"user":"u-17","n":3,"ok":true,"tags":["a","b"]},"key":"k"}',
        b'{"entries":[' + b",".join([b'{"value":1}'] * 100) + b"]}",
        b'{"value":{"at":"12:30","url":"http://h:1/"}}',
    ):
        assert parse_unique(body) is not None, body


@pytest.mark.parametrize(
    "body",
    [
        b'{"value":1.25}',  # a float: json spells some differently
        b'{"value":1e16}',
        b'{"value":123456789012345678901234567890}',  # orjson would make it a float
        b'{"value":-9223372036854775809}',
        b'{"value":"12:30","key":"\\u003a"}',  # an escaped colon
        b'{"value":1}\xff',
        b'{"value":NaN}',
    ],
)
def test_what_orjson_cannot_answer_goes_to_the_checking_parser(body: bytes) -> None:
    assert parse_unique(body) is None


def test_big_integers_are_stored_exactly() -> None:
    request = parse_append("l", b'{"value":123456789012345678901234567890}', TEST_LIMITS)
    assert request.entries[0].value_json == b"123456789012345678901234567890"


def test_deep_documents_are_left_to_the_checking_parser() -> None:
    deep = b'{"value":' + b"[" * 300 + b"]" * 300 + b"}"
    assert parse_unique(deep) is None
    shallow = b'{"value":' + b"[" * 200 + b"]" * 200 + b"}"
    assert parse_unique(shallow) is not None
    for body in (deep, shallow):
        assert parse_append("l", body, TEST_LIMITS).entries[0].value_json.startswith(b"[[")


class _Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "obj",
    [
        {"log": "audit", "offset": 1, "key": None, "ok": True, "nodes": [{"id": "é\n\x00\u2028"}]},
        {"limit": 2**70},
        {"lag": 1.5, "big": 1e16, "small": 1e-7},
        ("a", 1),
    ],
)
def test_dumps_writes_what_json_writes(obj: Any) -> None:
    assert dumps(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("obj", [{"c": _Color.RED}, {"p": _Point(1)}, {1: "int key"}])
def test_dumps_refuses_or_converts_like_json(obj: Any) -> None:
    try:
        expected: bytes | type[Exception] = json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except TypeError:
        expected = TypeError
    if expected is TypeError:
        with pytest.raises(TypeError):
            dumps(obj)
    else:
        assert dumps(obj) == expected


def test_dumps_keeps_the_lone_surrogate_error() -> None:
    with pytest.raises(UnicodeEncodeError):
        dumps({"message": "\ud800"})
