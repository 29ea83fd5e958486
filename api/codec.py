"""JSON on the request path: orjson where it is proven to give the standard library's
answer, the standard library everywhere else.

Parsing a request body (``parse_unique``). orjson is several times faster than ``json``
but keeps the last of repeated keys in silence, and the API must refuse a body with a
repeated key at any depth (``api.validation``). So orjson's result is only used when it
*proves* that no object of the text repeated a key, by counting colons:

* in valid JSON, a ``:`` outside strings separates one key from its value, so the text
  holds ``raw.count(b":") = P + C`` colons: ``P`` key-value pairs and ``C`` colons inside
  strings (keys included);
* orjson's compact re-encoding of the parsed document writes one ``:`` per key it kept,
  ``K = P - D`` (``D``: pairs lost to repeated keys), plus the ``S`` colons of the strings
  it kept: no more than ``C`` (a lost pair takes its colons along) when no ``\u003a``
  escape in the text made a colon the count did not see.

So, without such an escape, equal counts give ``D + (C - S) = 0``, both terms
non-negative: no key was repeated. Otherwise the checking parser decides (slower, never
wrong). Loading, re-encoding, counting and the two pattern searches all run in C.

The checking parser also decides, with its exact behaviour and messages, whatever orjson
refuses (invalid JSON, NaN, a lone surrogate, a BOM), a document nested 255 deep or more
(orjson does not re-encode it; ``json`` applies its own limit as before) and a document
with a float: orjson spells some floats differently (``1e16`` for ``1e+16``), and beyond
64 bits it parses integers as floats where ``json`` keeps them exact. So the fast path
serves bodies of strings, integers, booleans, null, arrays and objects: the usual ones.

Encoding. orjson writes exactly what ``json.dumps(obj, separators=(",", ":"),
ensure_ascii=False)`` writes for strings, integers, booleans, null, lists and dicts with
string keys (tests compare them), but spells some floats differently: ``encode_value``
uses it only for a ``Parsed`` document (no floats), so a stored value is byte for byte
what it was; ``dumps`` only for plain documents (``_plain``).

Pure functions; no I/O, safe from any thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import orjson

__all__ = [
    "FAST_MAX_DEPTH",
    "NOT_PROVEN",
    "Parsed",
    "dumps",
    "encode_value",
    "encode_values",
    "parse_unique",
]

FAST_MAX_DEPTH: Final = 64  # for _plain (response bodies)
# \u003a (or \u003A) is an escaped colon, which the count would not see; searching for
# the wider "\u003" (also "\\u003" after an escaped backslash) is one scan, and a
# match is only a detour through the checking parser.
_COLON_ESCAPE: Final = b"\\u003"
# orjson writes every float with a digit before "." or "e"; mapped to "0." or "0e" they
# are found by two scans (the same text inside a string is again only a detour).
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789E", b"000000000e")


class Parsed:
    """A body parsed by orjson and proven free of repeated keys and of floats."""

    __slots__ = ("doc",)

    def __init__(self, doc: Any) -> None:
        self.doc = doc


NOT_PROVEN: Final = None


def parse_unique(raw: bytes) -> Parsed | None:
    """The document of ``raw`` when orjson parses it and the count above proves that no
    key was repeated and it holds no float; ``None`` (``NOT_PROVEN``) when the checking
    parser must decide. Every step runs in C: no walk over the document in Python."""
    if _COLON_ESCAPE in raw:
        return NOT_PROVEN
    try:
        doc = orjson.loads(raw)
        compact = orjson.dumps(doc)  # K + S colons: one per key, and those in strings
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # invalid, or too deep
        return NOT_PROVEN
    if raw.count(b":") != compact.count(b":"):
        return NOT_PROVEN
    zeroed = compact.translate(_DIGITS_TO_ZERO)
    if b"0." in zeroed or b"0e" in zeroed:  # a float, or an integer orjson made one
        return NOT_PROVEN
    return Parsed(doc)


def encode_value(value: Any, parsed: Parsed | None) -> bytes:
    """``value``'s compact UTF-8 JSON. orjson when ``value`` comes from a ``Parsed`` (no
    floats, nothing orjson writes differently); otherwise ``json``, whose errors the
    caller turns into messages (UnicodeEncodeError for a lone surrogate, RecursionError,
    ValueError for a non-finite float)."""
    if parsed is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def encode_values(values: Iterable[Any]) -> list[bytes] | None:
    """``[encode_value(v, parsed) for v in values]`` for values taken from one
    ``Parsed`` document, in one C loop; None when orjson refuses one (it cannot for a
    document it parsed and wrote back whole; the caller then encodes one by one, with
    that path's errors)."""
    try:
        return list(map(orjson.dumps, values))
    except orjson.JSONEncodeError:
        return None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a response body: orjson for a document of plain JSON types
    (``_plain``), else ``json``, which encodes or refuses (TypeError, ValueError,
    UnicodeEncodeError) exactly as it always did: floats, subclasses, dataclasses, enums,
    integers past 64 bits, lone surrogates."""
    if _plain(obj):
        try:
            return orjson.dumps(obj)
        except TypeError:  # orjson.JSONEncodeError: a big integer, a lone surrogate
            pass
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_PLAIN_LEAVES: Final = frozenset({str, int, bool, type(None)})


def _plain(obj: Any) -> bool:
    """Only str, int, bool, None, list, tuple and dict with str keys, exactly those
    types (no subclasses, no floats), nested at most FAST_MAX_DEPTH deep."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind in _PLAIN_LEAVES:
            continue
        if depth > FAST_MAX_DEPTH:
            return False
        if kind is dict:
            if any(type(name) is not str for name in node):
                return False
            stack.extend((value, depth + 1) for value in node.values())
        elif kind is list or kind is tuple:
            stack.extend((item, depth + 1) for item in node)
        else:
            return False
    return True
