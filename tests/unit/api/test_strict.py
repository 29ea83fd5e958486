"""The API is strict: unknown query parameters, repeated query parameters and JSON objects
with a repeated key answer 400 invalid_request naming them, and nothing reaches the
service. Each route's accepted parameters are declared once: the check and OpenAPI agree."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.responses import Response

from api.app import create_app
from api.forward import NO_FORWARD_HEADER, HttpForwarder
from api.routers import health
from raftlog.service.fake import FakeLogService
from raftlog.service.types import Limits
from tests.unit.api.support import TEST_LIMITS, assert_error, assert_node_headers, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

ENTRIES = "/v1/logs/audit/entries"


async def test_a_typo_never_makes_a_conditional_append_unconditional(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0", b"1")
    before = fake.snapshot()
    r = await client.post(ENTRIES + "?expected_ofset=0", json={"value": "x"})
    error = assert_error(r, 400, "invalid_request", names="'expected_ofset'")
    assert "did you mean 'expected_offset'?" in error["message"]
    assert "nothing was written" in error["message"]
    assert error["field"] == "expected_ofset"
    assert error["parameters"] == ["expected_ofset"]
    assert_node_headers(r)
    assert fake.calls == [] and fake.snapshot() == before


async def test_every_offending_parameter_is_named(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    r = await client.get(ENTRIES + "?from=1&colour=red&from=2&sise=3&limit=1&limit=1")
    error = assert_error(r, 400, "invalid_request")
    message = error["message"]
    assert "unknown query parameters 'colour', 'sise'" in message
    assert "query parameters 'from', 'limit' given more than once" in message
    assert "this route accepts from, limit, wait, consistency" in message
    assert "nothing was written" not in message  # a read
    assert error["parameters"] == ["colour", "sise", "from", "limit"]
    assert fake.calls == []


@pytest.mark.parametrize(
    "query",
    [
        "expected_offset=0&expected_offset=0",  # even with the same value
        "expected_offset=0&expected%5Foffset=1",  # the same name, percent-encoded
        "ack=all&timeout=1&ack=quorum",
    ],
)
async def test_a_parameter_given_twice_is_refused(
    client: httpx.AsyncClient, fake: FakeLogService, query: str
) -> None:
    r = await client.post(f"{ENTRIES}?{query}", json={"value": 1})
    error = assert_error(r, 400, "invalid_request", names="given more than once")
    assert error["field"] in ("expected_offset", "ack")
    assert fake.calls == [] and fake.logs == {}


@pytest.mark.parametrize("query", ["", "?", "?&", "?timeout=5"])
async def test_empty_and_valid_query_strings_are_fine(
    client: httpx.AsyncClient, fake: FakeLogService, query: str
) -> None:
    r = await client.post(ENTRIES + query, json={"value": 1})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("query", ["?=1", "?Limit=5", "?limit%20=5", "?wait"])
async def test_odd_names_are_unknown(
    client: httpx.AsyncClient, fake: FakeLogService, query: str
) -> None:
    r = await client.get(ENTRIES + query)
    if query == "?wait":  # a known name without a value: the value is what is wrong
        assert_error(r, 400, "invalid_request", names="'wait' must be a number")
    else:
        assert_error(r, 400, "invalid_request", names="unknown query parameter")
    assert fake.calls == []


# -- every route, driven by its OpenAPI: the check and the docs agree -----------------------


async def _operations(client: httpx.AsyncClient) -> list[tuple[str, str, list[dict[str, Any]]]]:
    spec = (await client.get("/openapi.json")).json()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            concrete = path.replace("{log}", "audit").replace("{offset}", "0")
            out.append((method.upper(), concrete, op.get("parameters", [])))
    return out


async def test_every_route_refuses_unknown_and_repeated_parameters(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    operations = await _operations(client)
    assert len(operations) == 8
    for method, path, params in operations:
        body = {"value": 1} if method == "POST" else None
        r = await client.request(method, path + "?bogus=1", json=body)
        error = assert_error(r, 400, "invalid_request", names="unknown query parameter 'bogus'")
        assert error["parameters"] == ["bogus"], (method, path)
        for param in params:
            if param["in"] != "query":
                continue
            name, example = param["name"], param["example"]
            r = await client.request(
                method, path, params=[(name, str(example)), (name, str(example))], json=body
            )
            error = assert_error(r, 400, "invalid_request", names=f"'{name}' given more than once")
            assert error["parameters"] == [name], (method, path)
    assert fake.calls == [] and fake.logs == {}


async def test_every_documented_parameter_is_accepted(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0")
    safe = {"consistency": "any", "redirect": "false", "ack": "quorum", "wait": "0"}
    for method, path, params in await _operations(client):
        query = {
            p["name"]: safe.get(p["name"], str(p["example"]).lower())
            for p in params
            if p["in"] == "query" and p["name"] != "expected_offset"
        }
        query.pop("min_index", None)  # would wait for an index the fake never reaches
        body = {"value": 1} if method == "POST" else None
        r = await client.request(method, path, params=query, json=body)
        assert r.status_code in (200, 201), (method, path, query, r.text)


async def test_no_query_parameters_on_cluster_and_probes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/cluster", "/healthz", "/readyz"):
        params = spec["paths"][path]["get"].get("parameters", [])
        assert [p for p in params if p["in"] == "query"] == []
        r = await client.get(path + "?verbose=1")
        assert_error(r, 400, "invalid_request", names="this route accepts no query parameters")
        assert "400" in spec["paths"][path]["get"]["responses"]


async def test_openapi_documents_the_configured_limits() -> None:
    limits = Limits(
        max_entry_bytes=2000,
        max_batch_entries=7,
        max_batch_bytes=9000,
        max_request_bytes=20000,
        max_response_bytes=12345,
        max_range_limit=500,
        max_wait_s=30.0,
    )
    specs = []
    for app_limits in (limits, Limits()):
        app = create_app(FakeLogService(limits=app_limits))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            specs.append((await c.get("/openapi.json")).json())
    custom, default = specs

    def param(spec: dict[str, Any], name: str) -> dict[str, Any]:
        ops = spec["paths"]["/v1/logs/{log}/entries"]["get"]["parameters"]
        found: dict[str, Any] = next(p for p in ops if p["name"] == name)
        return found

    def body(spec: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = spec["paths"]["/v1/logs/{log}/entries"]["post"]["requestBody"]
        return found

    assert param(custom, "limit")["schema"]["maximum"] == 500
    assert "1 to 500" in param(custom, "limit")["description"]
    assert "12345 bytes" in param(custom, "limit")["description"]
    assert param(custom, "wait")["schema"]["maximum"] == 30
    batch = body(custom)["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["properties"]["entries"]["maxItems"] == 7
    for figure in ("2000 bytes", "7 on this node", "9000 bytes", "20000 bytes"):
        assert figure in json.dumps(body(custom)), figure
    # another app keeps its own (default) figures
    assert param(default, "limit")["schema"]["maximum"] == 10_000
    assert f"{4 << 20} bytes" in param(default, "limit")["description"]
    batch = body(default)["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["properties"]["entries"]["maxItems"] == 10_000


def test_a_route_without_declared_parameters_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def lax() -> Response:
        return Response()

    monkeypatch.setattr(health.router, "routes", [*health.router.routes, APIRoute("/lax", lax)])
    with pytest.raises(RuntimeError, match="/lax declares no RouteParams"):
        create_app(FakeLogService())


# -- repeated JSON object keys --------------------------------------------------------------

DUPLICATES = [
    (b'{"value": 1, "value": 2}', "body.value", "'value'", "the object at body;"),
    (b'{"value": 1, "key": "a", "key": "b"}', "body.key", "'key'", "at body;"),
    (b'{"value": {"a": 1, "b": 2, "a": 1}}', "body.value.a", "'a'", "at body.value;"),
    (
        b'{"value": [0, {"x": [{"deep": {"k": 1, "k": 2}}]}]}',
        "body.value[1].x[0].deep.k",
        "'k'",
        "at body.value[1].x[0].deep;",
    ),
    (
        b'{"entries": [{"value": 1}, {"value": {"a b": 1, "a b": 2}}]}',
        'body.entries[1].value["a b"]',
        "'a b'",
        "at body.entries[1].value;",
    ),
    (
        b'{"entries": [{"value": 1, "value": 2}]}',
        "body.entries[0].value",
        "'value'",
        "at body.entries[0];",
    ),
    (
        b'{"value": {"a": 1, "b": 2, "a": 3, "b": 4}}',
        "body.value.a",
        "keys 'a', 'b'",
        "at body.value;",
    ),
    (b'{"entries": [], "entries": [{"value": 1}]}', "body.entries", "'entries'", "at body;"),
    (b'{"value": {"\\u0061": 1, "a": 2}}', "body.value.a", "'a'", "at body.value;"),
]


@pytest.mark.parametrize(("body", "field", "names", "where"), DUPLICATES)
async def test_repeated_json_keys_are_refused_at_any_depth(
    client: httpx.AsyncClient, fake: FakeLogService, body: bytes, field: str, names: str, where: str
) -> None:
    json.loads(body)  # valid JSON: Python would silently keep the last value
    r = await client.post(ENTRIES, content=body)
    error = assert_error(r, 400, "invalid_request", names=names)
    assert where in error["message"]
    assert "nothing was written" in error["message"]
    assert error["field"] == field
    assert fake.calls == [] and fake.logs == {}


async def test_a_repeated_key_before_a_syntax_error_is_a_syntax_error(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    r = await client.post(ENTRIES, content=b'{"value": {"a": 1, "a": 2}, "key": ')
    error = assert_error(r, 400, "invalid_request", names="not valid JSON")
    assert error["field"] == "body"
    assert fake.calls == []


async def test_same_keys_in_different_objects_are_fine(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    body = b'{"entries": [{"value": {"a": 1}}, {"value": {"a": {"a": [{"a": 2}]}}, "key": "a"}]}'
    r = await client.post(ENTRIES, content=body)
    assert r.status_code == 201, r.text
    assert [e.value_json for e in fake.logs["audit"]] == [b'{"a":1}', b'{"a":{"a":[{"a":2}]}}']


# -- forwarding passes the query through unchanged --------------------------------------------


@pytest.fixture
async def follower_of_strict_leader() -> AsyncIterator[
    tuple[FakeLogService, FakeLogService, list[httpx.Request], httpx.AsyncClient]
]:
    leader = FakeLogService(limits=TEST_LIMITS, node_id="n1")
    follower = FakeLogService(
        limits=TEST_LIMITS,
        node_id="n2",
        leader=False,
        leader_id="n1",
        leader_url_value="http://leader:8001",
    )
    sent: list[httpx.Request] = []
    leader_app = httpx.ASGITransport(app=create_app(leader))

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    leader_client = httpx.AsyncClient(transport=leader_app, event_hooks={"request": [record]})
    forwarder = HttpForwarder(timeout=5.0, client=leader_client)
    transport = httpx.ASGITransport(app=create_app(follower, forwarder=forwarder))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield leader, follower, sent, client
    await forwarder.aclose()


async def test_forwarded_requests_carry_exactly_the_clients_parameters(
    follower_of_strict_leader: tuple[
        FakeLogService, FakeLogService, list[httpx.Request], httpx.AsyncClient
    ],
) -> None:
    leader, follower, sent, client = follower_of_strict_leader
    query = "ack=all&expected_offset=0&timeout=3&redirect=false"
    r = await client.post(f"{ENTRIES}?{query}", json={"value": "hi"})
    assert r.status_code == 201, r.text
    assert r.headers["X-Raftlog-Node"] == "n1"  # the strict leader accepted it
    read = "consistency=leader&from=0&limit=5&wait=0&timeout=2"
    r = await client.get(f"{ENTRIES}?{read}")
    assert r.status_code == 200 and r.json()["entries"][0]["value"] == "hi"
    assert [(req.method, req.url.query.decode()) for req in sent] == [
        ("POST", query),
        ("GET", read),
    ]
    for req in sent:  # the internal marker travels as a header, never as a parameter
        assert req.headers[NO_FORWARD_HEADER] == "1"
    assert [e.value_json for e in leader.logs["audit"]] == [b'"hi"']
    assert follower.logs == {}


async def test_a_follower_refuses_a_typo_itself(
    follower_of_strict_leader: tuple[
        FakeLogService, FakeLogService, list[httpx.Request], httpx.AsyncClient
    ],
) -> None:
    leader, follower, sent, client = follower_of_strict_leader
    r = await client.post(f"{ENTRIES}?ack=all&expected_ofset=3", json={"value": 1})
    assert_error(r, 400, "invalid_request", names="'expected_ofset'")
    assert r.headers["X-Raftlog-Node"] == "n2"
    assert sent == [] and leader.logs == {} and follower.calls == []
