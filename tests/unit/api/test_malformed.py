"""Malformed requests: each gets its exact status and code, a message naming the field, and
nothing reaches the service (the fake's state and call log are unchanged)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from raftlog.service.fake import FakeLogService
from tests.unit.api.support import TEST_LIMITS, assert_error, assert_node_headers, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

ENTRIES = "/v1/logs/audit/entries"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str
    names: str  # must appear in the message
    field: str | None = None  # the envelope's "field", when the problem has one
    body: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _post(
    id: str,
    body: bytes,
    status: int,
    code: str,
    names: str,
    fld: str | None,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> Case:
    return Case(id, "POST", ENTRIES + query, status, code, names, fld, body, headers or {})


def _get(id: str, path: str, names: str, fld: str) -> Case:
    return Case(id, "GET", path, 400, "invalid_request", names, fld)


BIG = "x" * TEST_LIMITS.max_entry_bytes  # encodes to max_entry_bytes + 2
OK = _j({"value": 1})

CASES = [
    # -- log names
    Case(
        "log-too-long",
        "POST",
        f"/v1/logs/{'a' * 129}/entries",
        400,
        "invalid_request",
        "log",
        "log",
        OK,
    ),
    Case(
        "log-leading-dot",
        "POST",
        "/v1/logs/.hidden/entries",
        400,
        "invalid_request",
        "'.hidden'",
        "log",
        OK,
    ),
    Case("log-leading-dash", "GET", "/v1/logs/-x", 400, "invalid_request", "'-x'", "log"),
    Case(
        "log-unicode",
        "POST",
        "/v1/logs/caf%C3%A9/entries",
        400,
        "invalid_request",
        "'café'",
        "log",
        OK,
    ),
    Case("log-space", "GET", "/v1/logs/a%20b/entries", 400, "invalid_request", "'a b'", "log"),
    Case(
        "log-empty",
        "POST",
        "/v1/logs//entries",
        400,
        "invalid_request",
        "log must not be empty",
        "log",
        OK,
    ),
    Case(
        "log-empty-single-read", "GET", "/v1/logs//entries/0", 400, "invalid_request", "log", "log"
    ),
    Case("log-star", "GET", "/v1/logs/a*b/entries/0", 400, "invalid_request", "'a*b'", "log"),
    # -- bodies
    _post("json-malformed", b'{"value": 1', 400, "invalid_request", "not valid JSON", "body"),
    _post(
        "json-trailing-garbage", b'{"value": 1} x', 400, "invalid_request", "not valid JSON", "body"
    ),
    _post("json-empty-body", b"", 400, "invalid_request", "request body is empty", "body"),
    _post("json-not-utf8", b'{"value": "\xff"}', 400, "invalid_request", "UTF-8", "body"),
    _post("json-nan", b'{"value": NaN}', 400, "invalid_request", "NaN", "body"),
    _post("json-infinity", b'{"value": [-Infinity]}', 400, "invalid_request", "Infinity", "body"),
    _post(
        "json-huge-float", b'{"value": 1e400}', 400, "invalid_request", "body.value", "body.value"
    ),
    _post(
        "json-lone-surrogate",
        b'{"value": "\\ud800"}',
        400,
        "invalid_request",
        "body.value",
        "body.value",
    ),
    _post(
        "json-too-deep",
        b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        400,
        "invalid_request",
        "nested too deeply",
        "body",
    ),
    _post("body-array", b"[1]", 400, "invalid_request", "JSON object", "body"),
    _post("body-string", b'"value"', 400, "invalid_request", "JSON object", "body"),
    _post("body-null", b"null", 400, "invalid_request", "JSON object", "body"),
    _post(
        "value-missing",
        _j({"key": "k"}),
        400,
        "invalid_request",
        "body.value is missing",
        "body.value",
    ),
    _post(
        "extra-field",
        _j({"value": 1, "extra": 2}),
        400,
        "invalid_request",
        "body.extra",
        "body.extra",
    ),
    _post(
        "value-and-entries",
        _j({"value": 1, "entries": []}),
        400,
        "invalid_request",
        "not both",
        "body",
    ),
    _post(
        "key-wrong-type", _j({"value": 1, "key": 5}), 400, "invalid_request", "body.key", "body.key"
    ),
    _post(
        "key-too-long",
        _j({"value": 1, "key": "é" * 512 + "x"}),
        400,
        "invalid_request",
        "body.key is 1025 UTF-8 bytes",
        "body.key",
    ),
    _post(
        "entries-not-array",
        _j({"entries": {"value": 1}}),
        400,
        "invalid_request",
        "body.entries",
        "body.entries",
    ),
    _post(
        "entries-empty", _j({"entries": []}), 400, "invalid_request", "body.entries", "body.entries"
    ),
    _post(
        "entry-not-object",
        _j({"entries": [{"value": 1}, 2]}),
        400,
        "invalid_request",
        "body.entries[1]",
        "body.entries[1]",
    ),
    _post(
        "entry-value-missing",
        _j({"entries": [{"value": 1}] * 3 + [{"key": "k"}]}),
        400,
        "invalid_request",
        "body.entries[3].value is missing",
        "body.entries[3].value",
    ),
    _post(
        "entry-extra-field",
        _j({"entries": [{"value": 1, "offset": 3}]}),
        400,
        "invalid_request",
        "body.entries[0].offset",
        "body.entries[0].offset",
    ),
    _post(
        "entry-key-wrong-type",
        _j({"entries": [{"value": 1, "key": ["k"]}]}),
        400,
        "invalid_request",
        "body.entries[0].key",
        "body.entries[0].key",
    ),
    _post(
        "batch-extra-field",
        _j({"entries": [{"value": 1}], "key": "k"}),
        400,
        "invalid_request",
        "body.key",
        "body.key",
    ),
    _post(
        "batch-too-many",
        _j({"entries": [{"value": i} for i in range(6)]}),
        413,
        "batch_too_large",
        "max_batch_entries",
        "body.entries",
    ),
    _post(
        "batch-too-many-bytes",
        _j({"entries": [{"value": "y" * 1000}] * 4}),
        413,
        "batch_too_large",
        "max_batch_bytes",
        "body.entries",
    ),
    _post("entry-too-large", _j({"value": BIG}), 413, "entry_too_large", "entry 0", "body.value"),
    _post(
        "batch-entry-too-large",
        _j({"entries": [{"value": 1}, {"value": BIG}]}),
        413,
        "entry_too_large",
        "body.entries[1].value (entry 1)",
        "body.entries[1].value",
    ),
    _post(
        "request-too-large",
        _j({"value": "z" * 20_000}),
        413,
        "request_too_large",
        "max_request_bytes",
        None,
    ),
    # -- append parameters and headers
    _post(
        "ack-unknown",
        OK,
        400,
        "invalid_request",
        "'ack' must be one of leader, quorum, all",
        "ack",
        "?ack=bogus",
    ),
    _post("ack-case", OK, 400, "invalid_request", "'ack'", "ack", "?ack=QUORUM"),
    _post(
        "expected-offset-negative",
        OK,
        400,
        "invalid_request",
        "'expected_offset'",
        "expected_offset",
        "?expected_offset=-1",
    ),
    _post(
        "expected-offset-float",
        OK,
        400,
        "invalid_request",
        "'expected_offset'",
        "expected_offset",
        "?expected_offset=1.0",
    ),
    _post(
        "ack-leader-with-expected-offset",
        OK,
        400,
        "invalid_request",
        "ack=leader",
        "expected_offset",
        "?ack=leader&expected_offset=1",
    ),
    _post("timeout-zero", OK, 400, "invalid_request", "'timeout'", "timeout", "?timeout=0"),
    _post("timeout-negative", OK, 400, "invalid_request", "'timeout'", "timeout", "?timeout=-1"),
    _post("timeout-text", OK, 400, "invalid_request", "'timeout'", "timeout", "?timeout=abc"),
    _post(
        "timeout-over-300", OK, 400, "invalid_request", "at most 300", "timeout", "?timeout=300.5"
    ),
    _post("timeout-nan", OK, 400, "invalid_request", "'timeout'", "timeout", "?timeout=nan"),
    _post("timeout-empty", OK, 400, "invalid_request", "'timeout'", "timeout", "?timeout="),
    _post(
        "redirect-unknown",
        OK,
        400,
        "invalid_request",
        "'redirect' must be true or false",
        "redirect",
        "?redirect=maybe",
    ),
    _post(
        "idempotency-key",
        OK,
        400,
        "invalid_request",
        "Idempotency-Key is not supported",
        "Idempotency-Key",
        headers={"Idempotency-Key": "abc"},
    ),
    # -- read parameters
    _get("offset-negative", ENTRIES + "/-1", "'offset'", "offset"),
    _get("offset-float", ENTRIES + "/1.5", "'offset'", "offset"),
    _get("offset-text", ENTRIES + "/abc", "'offset'", "offset"),
    _get("offset-exponent", ENTRIES + "/1e3", "'offset'", "offset"),
    _get("offset-too-big", ENTRIES + "/" + "9" * 20, "'offset'", "offset"),
    _get("from-negative", ENTRIES + "?from=-1", "'from' must be a non-negative integer", "from"),
    _get("from-float", ENTRIES + "?from=1.5", "'from'", "from"),
    _get("from-text", ENTRIES + "?from=abc", "'from'", "from"),
    _get("from-exponent", ENTRIES + "?from=1e3", "'from'", "from"),
    _get("from-plus", ENTRIES + "?from=%2B1", "'from'", "from"),
    _get("from-underscore", ENTRIES + "?from=1_000", "'from'", "from"),
    _get("from-space", ENTRIES + "?from=%201", "'from'", "from"),
    _get(
        "limit-zero",
        ENTRIES + "?limit=0",
        "'limit' must be an integer between 1 and 10000",
        "limit",
    ),
    _get("limit-10001", ENTRIES + "?limit=10001", "between 1 and 10000", "limit"),
    _get("limit-text", ENTRIES + "?limit=ten", "'limit'", "limit"),
    _get(
        "wait-61", ENTRIES + "?wait=61", "'wait' must be a number of seconds from 0 to 60", "wait"
    ),
    _get("wait-negative", ENTRIES + "?wait=-1", "'wait'", "wait"),
    _get(
        "consistency-unknown",
        ENTRIES + "/0?consistency=bogus",
        "'consistency' must be one of quorum, leader, any",
        "consistency",
    ),
    _get("min-index-negative", ENTRIES + "?min_index=-1", "'min_index'", "min_index"),
    _get("max-lag-text", ENTRIES + "?consistency=any&max_lag=x", "'max_lag'", "max_lag"),
    _get(
        "max-staleness-float",
        "/v1/logs/audit?max_staleness_ms=1.5",
        "'max_staleness_ms'",
        "max_staleness_ms",
    ),
    _get("read-timeout-zero", ENTRIES + "/0?timeout=0", "'timeout'", "timeout"),
    _get("logs-limit-1001", "/v1/logs?limit=1001", "between 1 and 1000", "limit"),
    _get("logs-limit-zero", "/v1/logs?limit=0", "between 1 and 1000", "limit"),
    _get("logs-after-invalid", "/v1/logs?after=.x", "after", "after"),
    _get(
        "log-consistency-unknown",
        "/v1/logs/audit?consistency=strong",
        "'consistency'",
        "consistency",
    ),
]


def test_the_table_is_big_and_ids_are_unique() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_malformed_request(
    client: httpx.AsyncClient, fake: FakeLogService, case: Case
) -> None:
    await seed(fake, "audit", b'"existing"')
    before = fake.snapshot()
    r = await client.request(case.method, case.path, content=case.body, headers=case.headers)
    error = assert_error(r, case.status, case.code, names=case.names)
    if case.field is not None:
        assert error["field"] == case.field
    assert_node_headers(r)
    assert fake.calls == []  # refused before the service
    assert fake.snapshot() == before


async def test_body_over_the_limit_without_content_length(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"value": "'
        for _ in range(10):
            yield b"z" * 4096
        yield b'"}'

    r = await client.post(ENTRIES, content=chunks())
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "request_too_large", names="max_request_bytes")
    assert fake.calls == [] and fake.logs == {}


async def test_content_length_is_checked_before_reading(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    r = await client.post(ENTRIES, content=OK, headers={"Content-Length": "99999999"})
    assert_error(r, 413, "request_too_large", names="99999999 bytes")
    assert fake.calls == []
