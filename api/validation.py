"""Request validation per the contract. Everything here raises ``raftlog.errors`` only.

Parameters are parsed by hand from the raw query string, not by FastAPI, so that the rules
are exact (``"1.5"``, ``"1e3"``, ``"-1"``, ``" 1"`` and ``"1_000"`` are not offsets) and every
message names the parameter and its allowed values.

The API is strict: each route declares the parameters it accepts once, as a
``RouteParams``. ``RouteParams.query(request)`` refuses (400) any other query parameter
and any parameter given more than once, and returns the only mapping the parsers below
read; ``RouteParams.openapi(limits)`` documents exactly the same parameters, with the
node's configured limits (the OpenAPI text itself is ``api.openapi``). A JSON body
with a repeated object key, at any depth, is refused too (``parse_append``). Nothing is
ever "last one wins": a typo such as ``expected_ofset`` must never turn a conditional
append into an unconditional one.

Problems are ``InvalidRequestField`` (400, ``field`` names the parameter, ``"log"``,
``"offset"`` or a body path like ``"body.entries[3].value"``) or one of the 413s
(``RequestTooLarge``, ``BatchTooLarge``, ``EntryTooLarge``).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request

from api.codec import Parsed, encode_value, encode_values, parse_unique
from raftlog import bulk
from raftlog.commands import LOG_NAME_RE, MAX_INT, valid_log_name
from raftlog.errors import (
    BatchTooLarge,
    EntryTooLarge,
    InvalidRequest,
    InvalidRequestField,
    RequestTooLarge,
)
from raftlog.service.types import (
    ACK_LEVELS,
    CONSISTENCY_LEVELS,
    Ack,
    AppendRequest,
    Consistency,
    Limits,
    NewEntry,
    ReadOptions,
)

__all__ = [
    "DEFAULT_LOGS_LIMIT",
    "DEFAULT_RANGE_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "IDEMPOTENCY_HEADER",
    "MAX_LOGS_LIMIT",
    "MAX_TIMEOUT_S",
    "PARAM_WHERE",
    "READ_PARAMS",
    "RouteParams",
    "accepts",
    "append_params",
    "choice",
    "flag",
    "int_in_range",
    "log_name",
    "logs_page_params",
    "non_negative_int",
    "offset_path",
    "parse_append",
    "range_params",
    "read_body",
    "read_options",
    "redirect_requested",
    "reject_idempotency_key",
    "route_params",
    "seconds",
    "timeout",
]

T = TypeVar("T", bound=str)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 300.0
DEFAULT_RANGE_LIMIT = 100
DEFAULT_LOGS_LIMIT = 100
MAX_LOGS_LIMIT = 1000
IDEMPOTENCY_HEADER = "Idempotency-Key"

_INT_RE = re.compile(r"[0-9]{1,19}")
_DECIMAL_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class _LogNameConvertor(Convertor[str]):
    """Matches any segment, the empty one included, so a bad or empty log name gets a
    400 naming ``log`` instead of a 404 for an unknown route."""

    regex = "[^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("logname", _LogNameConvertor())


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def _bad(field: str, message: str) -> NoReturn:
    raise InvalidRequestField(field, message)


# -- path ------------------------------------------------------------------------------------


def log_name(raw: str, field: str = "log") -> str:
    if raw == "":
        _bad(field, f"{field} must not be empty; a log name matches {LOG_NAME_RE.pattern}")
    if not valid_log_name(raw):
        _bad(
            field,
            f"{field} {_shown(raw)} is not a valid log name: 1 to 128 characters of "
            f"A-Z a-z 0-9 . _ -, starting with a letter or digit ({LOG_NAME_RE.pattern})",
        )
    return raw


def offset_path(raw: str) -> int:
    value = _parse_int(raw)
    if value is None:
        _bad("offset", f"path parameter 'offset' must be a non-negative integer, got {_shown(raw)}")
    return value


# -- query -----------------------------------------------------------------------------------


def _parse_int(raw: str) -> int | None:
    if _INT_RE.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if value <= MAX_INT else None


def non_negative_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    value = _parse_int(raw)
    if value is None:
        _bad(
            name,
            f"query parameter {name!r} must be a non-negative integer (at most {MAX_INT}), "
            f"got {_shown(raw)}",
        )
    return value


def int_in_range(params: Mapping[str, str], name: str, lo: int, hi: int, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    value = _parse_int(raw)
    if value is None or not lo <= value <= hi:
        _bad(
            name,
            f"query parameter {name!r} must be an integer between {lo} and {hi}, got {_shown(raw)}",
        )
    return value


def seconds(
    params: Mapping[str, str], name: str, default: float, hi: float, *, allow_zero: bool
) -> float:
    raw = params.get(name)
    if raw is None:
        return default
    value = float(raw) if _DECIMAL_RE.fullmatch(raw) else math.nan
    low_ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= hi):
        rule = f"from 0 to {hi:g}" if allow_zero else f"greater than 0 and at most {hi:g}"
        _bad(
            name, f"query parameter {name!r} must be a number of seconds {rule}, got {_shown(raw)}"
        )
    return value


def choice(params: Mapping[str, str], name: str, allowed: tuple[T, ...], default: T) -> T:
    raw = params.get(name)
    if raw is None:
        return default
    for option in allowed:
        if raw == option:
            return option
    _bad(name, f"query parameter {name!r} must be one of {', '.join(allowed)}; got {_shown(raw)}")


def flag(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    _bad(name, f"query parameter {name!r} must be true or false, got {_shown(raw)}")


def timeout(params: Mapping[str, str]) -> float:
    return seconds(params, "timeout", DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, allow_zero=False)


def redirect_requested(params: Mapping[str, str]) -> bool:
    """``redirect`` as a flag; anything unparsable counts as false (used after validation)."""
    return params.get("redirect", "").lower() in _TRUE


def read_options(params: Mapping[str, str]) -> ReadOptions:
    consistency: Consistency = choice(params, "consistency", CONSISTENCY_LEVELS, "quorum")
    min_index = non_negative_int(params, "min_index")
    max_lag = non_negative_int(params, "max_lag")
    max_staleness_ms = non_negative_int(params, "max_staleness_ms")
    read_timeout = timeout(params)
    flag(params, "redirect")
    return ReadOptions(consistency, min_index, max_lag, max_staleness_ms, read_timeout)


def range_params(params: Mapping[str, str], limits: Limits) -> tuple[int, int, float]:
    """(from, limit, wait_s) of a range read."""
    start = non_negative_int(params, "from")
    limit = int_in_range(params, "limit", 1, limits.max_range_limit, DEFAULT_RANGE_LIMIT)
    wait_s = seconds(params, "wait", 0.0, limits.max_wait_s, allow_zero=True)
    return (0 if start is None else start), limit, wait_s


def logs_page_params(params: Mapping[str, str]) -> tuple[str | None, int]:
    """(after, limit) of the log listing."""
    after = params.get("after") or None
    if after is not None:
        log_name(after, "after")
    return after, int_in_range(params, "limit", 1, MAX_LOGS_LIMIT, DEFAULT_LOGS_LIMIT)


def append_params(params: Mapping[str, str]) -> tuple[Ack, int | None, float, bool]:
    """(ack, expected_offset, timeout, redirect) of an append."""
    ack: Ack = choice(params, "ack", ACK_LEVELS, "quorum")
    expected_offset = non_negative_int(params, "expected_offset")
    append_timeout = timeout(params)
    redirect = flag(params, "redirect")
    if ack == "leader" and expected_offset is not None:
        _bad(
            "expected_offset",
            "query parameter 'expected_offset' cannot be combined with "
            "ack=leader: offsets are assigned at commit",
        )
    return ack, expected_offset, append_timeout, redirect


def reject_idempotency_key(request: Request) -> None:
    if IDEMPOTENCY_HEADER in request.headers:
        _bad(
            IDEMPOTENCY_HEADER,
            "Idempotency-Key is not supported by this server yet; nothing was written",
        )


# -- body ------------------------------------------------------------------------------------


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused (413) as soon as it is known to exceed ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            _bad("Content-Length", f"header 'Content-Length' is not a number: {_shown(declared)}")
        if int(declared) > max_bytes:
            _too_large(max_bytes, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            _too_large(max_bytes, None)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, declared: int | None) -> NoReturn:
    size = "" if declared is None else f" ({declared} bytes)"
    raise RequestTooLarge(
        f"the request body{size} is larger than max_request_bytes ({limit}); nothing was written",
        limit=limit,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


class _RepeatedKey(ValueError):
    """A JSON object of the body has the same key twice (raised while parsing)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey
    return obj


class _Marked(dict[str, Any]):
    """An object of the second, diagnostic parse, knowing its repeated keys."""

    repeated: list[str]


def _marking(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _Marked(pairs)
    seen: set[str] = set()
    obj.repeated = []
    for name, _ in pairs:
        if name in seen and name not in obj.repeated:
            obj.repeated.append(name)
        seen.add(name)
    return obj


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _member(path: str, name: str) -> str:
    return f"{path}.{name}" if _IDENT_RE.fullmatch(name) else f"{path}[{json.dumps(name)}]"


def _first_repeated(node: Any, path: str) -> tuple[str, list[str]] | None:
    """(path of the object, its repeated keys) for the first such object, in document
    order (iterative: the body may be nested deeply)."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _Marked):
            if item.repeated:
                return where, item.repeated
            stack.extend((v, _member(where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def _repeated_key_error(text: str) -> NoReturn:
    try:  # the whole text this time: it may still be invalid after the repeated key
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_marking)
    except RecursionError:
        _bad("body", "request body is nested too deeply")
    except ValueError as exc:
        _bad("body", f"request body is not valid JSON: {exc}")
    found = _first_repeated(doc, "body")
    where, keys = found if found is not None else ("body", [])
    shown = ", ".join(repr(k) for k in keys)
    plural = "s" if len(keys) > 1 else ""
    raise InvalidRequest(
        f"request body repeats the key{plural} {shown} in the object at {where}; a JSON "
        "object must not have the same key twice; nothing was written",
        field=_member(where, keys[0]) if keys else where,
        keys=keys,
    )


def _parse_json(raw: bytes) -> tuple[Any, Parsed | None]:
    """The body as JSON: UTF-8, finite numbers, and no object with a repeated key (at any
    depth, inside values too: "the last one wins" would silently drop data). With the
    ``Parsed`` of ``api.codec`` when its fast path proved all that (else None: the
    checking parser below decided)."""
    if not raw.strip():
        _bad(
            "body",
            'request body is empty; send a JSON object like {"value": ...} or '
            '{"entries": [{"value": ...}]}',
        )
    parsed = parse_unique(raw)
    if parsed is not None:
        return parsed.doc, parsed
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        _bad("body", "request body is not valid UTF-8")
    except RecursionError:
        _bad("body", "request body is nested too deeply")
    except _RepeatedKey:
        _repeated_key_error(text)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer too long to parse
        _bad("body", f"request body is not valid JSON: {exc}")
    return doc, None


def _encode_value(value: Any, field: str, parsed: Parsed | None) -> bytes:
    """The value's compact UTF-8 JSON encoding (what is stored and measured)."""
    try:
        return encode_value(value, parsed)
    except UnicodeEncodeError:
        _bad(field, f"{field} holds an unpaired UTF-16 surrogate escape; it is not valid UTF-8")
    except RecursionError:
        _bad(field, f"{field} is nested too deeply")
    except ValueError:  # 1e400 parses as inf
        _bad(field, f"{field} holds a number out of the floating-point range")


def _key(item: dict[str, Any], field: str, limits: Limits) -> str | None:
    key = item.get("key")
    if key is None:
        return None
    if not isinstance(key, str):
        _bad(field, f"{field} must be a string or null, got {_json_type(key)}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        _bad(field, f"{field} holds an unpaired UTF-16 surrogate escape; it is not valid UTF-8")
    if size > limits.max_key_bytes:
        _bad(field, f"{field} is {size} UTF-8 bytes; at most {limits.max_key_bytes} are allowed")
    return key


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


_ENTRY_FIELDS = ("value", "key")


def _entry(item: Any, path: str, index: int, limits: Limits, parsed: Parsed | None) -> NewEntry:
    if not isinstance(item, dict):
        _bad(path, f'{path} must be an object like {{"value": ...}}, got {_json_type(item)}')
    for name in item:
        if name not in _ENTRY_FIELDS:
            _bad(f"{path}.{name}", f"{path}.{name} is not a known field (allowed: value, key)")
    if "value" not in item:
        _bad(f"{path}.value", f"{path}.value is missing")
    value_json = _encode_value(item["value"], f"{path}.value", parsed)
    if len(value_json) > limits.max_entry_bytes:
        raise EntryTooLarge(
            f"{path}.value (entry {index}) is {len(value_json)} bytes as compact JSON; "
            f"max_entry_bytes is {limits.max_entry_bytes}; nothing was written",
            field=f"{path}.value",
            index=index,
            size=len(value_json),
            limit=limits.max_entry_bytes,
        )
    return NewEntry(value_json, _key(item, f"{path}.key", limits))


_ENTRY_FIELD_SET = frozenset(_ENTRY_FIELDS)
_VALUE_OF = operator.itemgetter("value")


def _valid_key(key: object, max_bytes: int) -> bool:
    """What ``_key`` accepts without an error: None, or a str of at most ``max_bytes``
    UTF-8 bytes."""
    if key is None:
        return True
    if not isinstance(key, str):
        return False
    try:
        return len(key.encode("utf-8")) <= max_bytes
    except UnicodeEncodeError:
        return False


def _batch_fast(items: list[Any], limits: Limits) -> bulk.Columns[NewEntry] | None:
    """The entries of a batch ``items`` (a non-empty list within max_batch_entries,
    from a ``Parsed`` document) when every one of them passes ``_entry``'s checks and
    together they fit max_batch_bytes, decided and built by C loops over the whole batch
    (``map``) and held as columns (``raftlog.bulk.Columns``) instead of one Python call
    chain and one object per entry. None when any check might fail: the caller then
    runs the per-entry loop, which raises the exact error of the first bad entry. Equal,
    entry for entry, to that loop's result (a property test compares them)."""
    if set(map(type, items)) != {dict}:
        return None
    if not all(map(_ENTRY_FIELD_SET.issuperset, items)):  # an unknown field
        return None
    if not all(map(dict.__contains__, items, repeat("value"))):  # value missing
        return None
    values = encode_values(map(_VALUE_OF, items))
    if values is None:
        return None
    sizes = list(map(len, values))
    if max(sizes) > limits.max_entry_bytes or sum(sizes) > limits.max_batch_bytes:
        return None
    keys = list(map(dict.get, items, repeat("key")))
    if keys.count(None) != len(keys) and not all(
        map(_valid_key, keys, repeat(limits.max_key_bytes))
    ):
        return None
    return bulk.Columns(NewEntry, value_json=values, key=keys)


def parse_append(
    log: str,
    raw: bytes,
    limits: Limits,
    *,
    ack: Ack = "quorum",
    expected_offset: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AppendRequest:
    """The AppendRequest of a body ``{"value", "key"?}`` or ``{"entries": [...]}``."""
    doc, parsed = _parse_json(raw)
    if not isinstance(doc, dict):
        _bad("body", f"request body must be a JSON object, got {_json_type(doc)}")
    if "value" in doc and "entries" in doc:
        _bad(
            "body",
            "request body must hold either 'value' (one entry) or 'entries' (a batch), not both",
        )
    if "entries" in doc:
        for name in doc:
            if name != "entries":
                _bad(
                    f"body.{name}",
                    f"body.{name} is not a known field of a batch (allowed: entries)",
                )
        items = doc["entries"]
        if not isinstance(items, list):
            _bad(
                "body.entries",
                f"body.entries must be an array of entry objects, got {_json_type(items)}",
            )
        if not items:
            _bad("body.entries", "body.entries must hold at least one entry")
        if len(items) > limits.max_batch_entries:
            raise BatchTooLarge(
                f"body.entries holds {len(items)} entries; max_batch_entries is "
                f"{limits.max_batch_entries}; nothing was written",
                field="body.entries",
                count=len(items),
                limit=limits.max_batch_entries,
            )
        fast = None if parsed is None else _batch_fast(items, limits)
        if fast is not None:
            return AppendRequest(log, fast, ack, expected_offset, timeout_s)
        entries: list[NewEntry] = []
        total = 0
        for i, item in enumerate(items):
            entry = _entry(item, f"body.entries[{i}]", i, limits, parsed)
            total += len(entry.value_json)
            if total > limits.max_batch_bytes:
                raise BatchTooLarge(
                    f"the values of body.entries[0..{i}] already add up to {total} bytes; "
                    f"max_batch_bytes is {limits.max_batch_bytes}; nothing was written",
                    field="body.entries",
                    size=total,
                    limit=limits.max_batch_bytes,
                )
            entries.append(entry)
        new_entries = tuple(entries)
    else:
        for name in doc:
            if name not in _ENTRY_FIELDS:
                _bad(
                    f"body.{name}",
                    f"body.{name} is not a known field (allowed: value, key; "
                    "or entries for a batch)",
                )
        if "value" not in doc:
            _bad("body.value", "body.value is missing (or send a batch in body.entries)")
        entry = _entry(doc, "body", 0, limits, parsed)
        if len(entry.value_json) > limits.max_batch_bytes:
            raise BatchTooLarge(
                f"body.value is {len(entry.value_json)} bytes; max_batch_bytes is "
                f"{limits.max_batch_bytes}; nothing was written",
                field="body.value",
                size=len(entry.value_json),
                limit=limits.max_batch_bytes,
            )
        new_entries = (entry,)
    return AppendRequest(log, new_entries, ack, expected_offset, timeout_s)


# -- the parameters of each route: the strict check and OpenAPI ----------------------------


# declaration key -> (wire name, where): every parameter a route may declare. The strict
# check reads this; ``api.openapi.param_docs`` documents exactly these keys (checked when
# that module is imported).
PARAM_WHERE: dict[str, tuple[str, str]] = {
    "log": ("log", "path"),
    "offset": ("offset", "path"),
    "ack": ("ack", "query"),
    "expected_offset": ("expected_offset", "query"),
    "timeout": ("timeout", "query"),
    "redirect": ("redirect", "query"),
    "consistency": ("consistency", "query"),
    "min_index": ("min_index", "query"),
    "max_lag": ("max_lag", "query"),
    "max_staleness_ms": ("max_staleness_ms", "query"),
    "from": ("from", "query"),
    "limit": ("limit", "query"),
    "wait": ("wait", "query"),
    "after": ("after", "query"),
    "logs_limit": ("limit", "query"),
}

READ_PARAMS = ("consistency", "min_index", "max_lag", "max_staleness_ms", "timeout", "redirect")

_ROUTE_PARAMS_ATTR = "__raftlog_route_params__"


@functools.cache
def _query_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(PARAM_WHERE[n][0] for n in names if PARAM_WHERE[n][1] == "query")


@dataclass(frozen=True, slots=True)
class RouteParams:
    """The parameters one route accepts (keys of ``PARAM_WHERE``, path and query ones), and
    optionally its request body's OpenAPI, declared once per route.

    ``query(request)`` is the strict check and returns what the parsers read;
    ``openapi_extra(limits)`` is the route's OpenAPI (``api.openapi`` renders it with the
    node's limits). Both read ``names``, so the docs and the check cannot disagree.
    ``writes``: the route may write, so a refusal says "nothing was written"."""

    names: tuple[str, ...] = ()
    writes: bool = False
    body: Callable[[Limits], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in PARAM_WHERE]
        if unknown:
            raise ValueError(f"undocumented parameter(s) {unknown}")

    @property
    def query_names(self) -> tuple[str, ...]:
        """The wire names of the query parameters, in declaration order."""
        return _query_names(self.names)

    def query(self, request: Request) -> dict[str, str]:
        """The query parameters, each given at most once and each one this route accepts;
        otherwise 400 ``invalid_request`` naming every offending parameter (refused before
        anything else is looked at, so nothing was written)."""
        raw: bytes = request.scope.get("query_string", b"")
        if not raw:
            return {}
        allowed = self.query_names
        out: dict[str, str] = {}
        unknown: list[str] = []
        repeated: list[str] = []
        # Parsed exactly as Starlette's QueryParams does, without building one.
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if name not in allowed:
                if name not in unknown:
                    unknown.append(name)
            elif name in out:
                if name not in repeated:
                    repeated.append(name)
            else:
                out[name] = value
        if not unknown and not repeated:
            return out
        problems: list[str] = []
        if unknown:
            hints = [
                f" (did you mean {match[0]!r}?)"
                if (match := difflib.get_close_matches(name, allowed, n=1, cutoff=0.75))
                else ""
                for name in unknown
            ]
            named = ", ".join(f"{name!r}{hint}" for name, hint in zip(unknown, hints, strict=True))
            accepted = ", ".join(allowed) if allowed else "no query parameters"
            problems.append(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} {named}; "
                f"this route accepts {accepted}"
            )
        if repeated:
            named = ", ".join(repr(name) for name in repeated)
            problems.append(
                f"query parameter{'s' if len(repeated) > 1 else ''} {named} given more than "
                "once; give each at most once"
            )
        tail = "; nothing was written" if self.writes else ""
        offending = unknown + repeated
        raise InvalidRequest(
            "; ".join(problems) + tail,
            field=offending[0],
            parameters=offending,
        )

    def openapi(self, limits: Limits) -> list[dict[str, Any]]:
        """The OpenAPI parameter objects of ``names``, with ``limits``."""
        parameters: list[dict[str, Any]] = self.openapi_extra(limits)["parameters"]
        return parameters

    def openapi_extra(self, limits: Limits) -> dict[str, Any]:
        """The route's OpenAPI (parameters and body), with ``limits``: see ``api.openapi``."""
        from api.openapi import route_openapi  # api.openapi imports this module

        return route_openapi(self, limits)


def accepts(params: RouteParams) -> Callable[[F], F]:
    """Marks an endpoint with its ``RouteParams`` (read back by ``route_params``)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ROUTE_PARAMS_ATTR, params)
        return endpoint

    return mark


def route_params(endpoint: Callable[..., Any]) -> RouteParams | None:
    """The ``RouteParams`` an endpoint was declared with (``accepts``), if any."""
    found = getattr(endpoint, _ROUTE_PARAMS_ATTR, None)
    return found if isinstance(found, RouteParams) else None
