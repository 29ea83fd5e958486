"""api/errors.py: every raftlog error on every route, the envelope, unknown routes, 500s,
FastAPI validation errors, and the node headers on every /v1 answer."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import FastAPI, Query
from pydantic import BaseModel

from api.app import create_app
from api.errors import STATUS_BY_CODE, error_responses, validation_message
from raftlog import errors
from raftlog.errors import RaftlogError
from raftlog.service.fake import FakeLogService
from tests.unit.api.support import assert_error, assert_node_headers, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

# (error, status, extra details expected in the envelope)
ERROR_CASES: list[tuple[RaftlogError, int, dict[str, Any]]] = [
    (errors.InvalidRequest("the value is bad; nothing was written"), 400, {}),
    (errors.InvalidRequestField("limit", "limit is bad"), 400, {"field": "limit"}),
    (errors.NoLeader("no leader is known"), 503, {}),
    (errors.NoQuorum("no quorum"), 503, {}),
    (errors.Overloaded("queue full"), 429, {}),
    (errors.NodeStopped("stopping"), 503, {}),
    (errors.OutcomeUnknown("it may have committed"), 504, {}),
    (errors.LogNotFound("no log"), 404, {}),
    (errors.OffsetNotFound("no entry", next_offset=3), 404, {"next_offset": 3}),
    (errors.Trimmed("gone", first_offset=5), 410, {"first_offset": 5}),
    (errors.OffsetMismatch("mismatch", next_offset=2), 409, {"next_offset": 2}),
    (errors.IdempotencyKeyReused("reused"), 409, {}),
    (errors.EntryTooLarge("entry 3 too large", index=3), 413, {"index": 3}),
    (errors.BatchTooLarge("batch too large"), 413, {}),
    (errors.RequestTooLarge("request too large", limit=10), 413, {"limit": 10}),
    (errors.TooStale("stale", lag=9), 503, {"lag": 9}),
    (errors.InsufficientStorage("disk full"), 507, {}),
    (errors.ReadTimeout("min_index not reached"), 504, {}),
    (
        errors.NotFullyReplicated("not on every member", committed=True, offset=4, last_offset=5),
        504,
        {"committed": True, "offset": 4, "last_offset": 5},
    ),
]

ROUTES = [
    ("POST", "/v1/logs/audit/entries", {"value": 1}),
    ("GET", "/v1/logs/audit/entries/0", None),
    ("GET", "/v1/logs/audit/entries", None),
    ("GET", "/v1/logs", None),
    ("GET", "/v1/logs/audit", None),
    ("GET", "/v1/cluster", None),
]


def test_every_error_class_is_mapped_and_tested() -> None:
    classes = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, RaftlogError) and cls.code not in ("internal", "served_by_leader")
    }
    tested = {type(exc) for exc, _, _ in ERROR_CASES}
    assert classes == tested
    for cls in classes:
        assert cls.code in STATUS_BY_CODE, cls


def test_status_table_matches_the_contract() -> None:
    expected = {
        400: {"invalid_request"},
        401: {"unauthorized"},
        403: {"forbidden"},
        404: {"not_found", "log_not_found", "offset_not_found"},
        405: {"method_not_allowed"},
        409: {"offset_mismatch", "idempotency_key_reused", "membership_change_in_progress"},
        410: {"trimmed"},
        413: {"entry_too_large", "batch_too_large", "request_too_large"},
        429: {"overloaded"},
        500: {"internal"},
        503: {"no_leader", "no_quorum", "too_stale", "node_stopped", "not_ready"},
        504: {"outcome_unknown", "timeout", "not_fully_replicated"},
        507: {"insufficient_storage"},
    }
    got: dict[int, set[str]] = {}
    for code, status in STATUS_BY_CODE.items():
        got.setdefault(status, set()).add(code)
    assert got == expected


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize(
    ("exc", "status", "details"), ERROR_CASES, ids=[type(e).__name__ for e, _, _ in ERROR_CASES]
)
async def test_error_becomes_its_status_and_envelope(
    client: httpx.AsyncClient,
    fake: FakeLogService,
    method: str,
    path: str,
    body: Any,
    exc: RaftlogError,
    status: int,
    details: dict[str, Any],
) -> None:
    fake.fail_next = exc
    r = await client.request(method, path, json=body)
    error = assert_error(r, status, exc.code)
    assert error == {"code": exc.code, "message": exc.message, **details}
    assert_node_headers(r)
    assert fake.fail_next is None and len(fake.calls) == 1  # the service was called once
    assert fake.logs == {}


async def test_base_errors_and_unknown_codes_are_500_internal(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    class Odd(errors.DefinitelyNotApplied):
        code = "something_new"

    for exc in (RaftlogError("raw base"), errors.DefinitelyNotApplied("base"), Odd("odd")):
        fake.fail_next = exc
        r = await client.get("/v1/logs/audit/entries/0")
        error = assert_error(r, 500, "internal")
        assert exc.message not in error["message"]


async def test_unexpected_exception_is_500_without_traceback(
    client: httpx.AsyncClient, fake: FakeLogService, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next = RuntimeError("secret-internal-detail")
    with caplog.at_level(logging.ERROR, logger="raftlog.api"):
        r = await client.post("/v1/logs/audit/entries", json={"value": 1})
    assert_error(r, 500, "internal")
    assert "secret" not in r.text and "Traceback" not in r.text
    assert_node_headers(r)
    assert "secret-internal-detail" in caplog.text  # logged on the node


async def test_details_that_are_not_json_keep_code_and_message(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.fail_next = errors.Overloaded("queue full", thing=object())
    r = await client.get("/v1/logs")
    assert assert_error(r, 429, "overloaded") == {"code": "overloaded", "message": "queue full"}


async def test_details_never_override_code_and_message(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.fail_next = errors.NoQuorum("real message", code="fake")
    r = await client.get("/v1/logs")
    assert assert_error(r, 503, "no_quorum") == {"code": "no_quorum", "message": "real message"}


async def test_unknown_route_404_and_wrong_method_405(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing/here")
    assert_error(r, 404, "not_found", names="/v1/nothing/here")
    assert_node_headers(r)
    r = await client.get("/not-v1")
    assert_error(r, 404, "not_found")
    assert "X-Raftlog-Node" not in r.headers
    r = await client.delete("/v1/logs/audit/entries")
    assert_error(r, 405, "method_not_allowed", names="DELETE")
    assert r.headers["Allow"] == "GET, POST"
    assert_node_headers(r)
    r = await client.put("/v1/cluster")
    assert_error(r, 405, "method_not_allowed")


async def test_node_headers_on_every_v1_answer(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"1")
    fake.leader = False
    fake.leader_id = "n9"
    fake.leader_url_value = "http://n9:8009"
    fake.last_contact_ms = 42
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/v1/logs/audit/entries/0", None),  # 200
        ("POST", "/v1/logs/audit/entries", {"value": 1}),  # 201
        ("GET", "/v1/logs/audit/entries/99", None),  # 404 offset_not_found
        ("GET", "/v1/logs/audit/entries?limit=0", None),  # 400
        ("POST", "/v1/logs/audit/entries?redirect=true", {"value": 1}),  # 307
        ("GET", "/v1/unknown", None),  # 404 route
        ("PATCH", "/v1/logs", None),  # 405
    ]
    for method, path, body in requests:
        r = await client.request(method, path, json=body)
        assert_node_headers(r)
        assert r.headers["X-Raftlog-Leader"] == "n9"
        assert r.headers["X-Raftlog-Last-Contact-Ms"] == "42"
        assert r.headers["X-Raftlog-Term"] == "1"
        assert r.headers["X-Raftlog-Cluster"] == fake.cluster_id
        assert r.headers["X-Raftlog-Applied-Index"] == str(fake.index)


async def test_empty_node_header_values(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    fake.leader = False
    fake.cluster_id = None
    fake.last_contact_ms = None
    r = await client.get("/v1/logs")
    assert r.headers["X-Raftlog-Leader"] == ""
    assert r.headers["X-Raftlog-Cluster"] == ""
    assert r.headers["X-Raftlog-Last-Contact-Ms"] == ""


async def test_broken_headers_do_not_break_the_answer(
    client: httpx.AsyncClient, fake: FakeLogService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("no headers today")

    monkeypatch.setattr(fake, "headers", broken)
    r = await client.get("/v1/logs")
    assert r.status_code == 200
    assert "X-Raftlog-Node" not in r.headers


# -- FastAPI's own validation errors (routes that declare typed parameters) -----------------


class _Item(BaseModel):
    value: int


class _Batch(BaseModel):
    entries: list[_Item]


@pytest.fixture
async def typed_client(fake: FakeLogService) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(fake)

    @app.get("/v1/typed")
    async def typed(
        n: Annotated[int, Query(ge=1, le=10)], mode: Literal["a", "b"] = "a"
    ) -> dict[str, Any]:
        return {"n": n, "mode": mode}

    @app.post("/v1/typed")
    async def typed_body(batch: _Batch) -> dict[str, Any]:
        return {"count": len(batch.entries)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "content", "field", "names"),
    [
        ("GET", "/v1/typed", None, "n", "query parameter 'n' is missing"),
        ("GET", "/v1/typed?n=abc", None, "n", "query parameter 'n' is invalid"),
        ("GET", "/v1/typed?n=0", None, "n", "greater than or equal to 1"),
        ("GET", "/v1/typed?n=1&mode=c", None, "mode", "query parameter 'mode' must be one of"),
        (
            "POST",
            "/v1/typed",
            b'{"entries": [{"value": 1}, {}]}',
            "body.entries[1].value",
            "body.entries[1].value is missing",
        ),
        (
            "POST",
            "/v1/typed",
            b'{"entries": [{"value": "x"}]}',
            "body.entries[0].value",
            "body.entries[0].value is invalid",
        ),
        ("POST", "/v1/typed", b'{"entries": [', "body", "request body is not valid JSON"),
    ],
)
async def test_fastapi_validation_errors_become_invalid_request(
    typed_client: httpx.AsyncClient,
    method: str,
    path: str,
    content: bytes | None,
    field: str,
    names: str,
) -> None:
    headers = {"content-type": "application/json"}
    r = await typed_client.request(method, path, content=content, headers=headers)
    error = assert_error(r, 400, "invalid_request", names=names)
    assert error["field"] == field
    assert_node_headers(r)


async def test_typed_route_still_works(typed_client: httpx.AsyncClient) -> None:
    r = await typed_client.get("/v1/typed?n=3&mode=b")
    assert r.json() == {"n": 3, "mode": "b"}


def test_validation_message_without_errors() -> None:
    assert validation_message([]) == ("request", "the request is invalid")
    field, message = validation_message(
        [{"loc": ("header", "x-token"), "type": "missing", "msg": "Field required"}]
    )
    assert (field, message) == ("x-token", "header 'x-token' is missing")


def test_error_responses_document_every_status_with_examples() -> None:
    docs = error_responses("invalid_request", "no_leader", "no_quorum", "overloaded")
    assert set(docs) == {400, 429, 500, 503}
    assert set(docs[503]["content"]["application/json"]["examples"]) == {"no_leader", "no_quorum"}
    assert "Retry-After" in docs[503]["headers"] and "Retry-After" in docs[429]["headers"]
    assert "headers" not in docs[400]
    example = docs[400]["content"]["application/json"]["examples"]["invalid_request"]["value"]
    assert example["error"]["code"] == "invalid_request"
