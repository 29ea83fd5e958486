"""/openapi.json documents every route, parameter, response and error, with examples."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.openapi import build_openapi, param_docs
from api.routers import entries, logs
from api.validation import PARAM_WHERE
from raftlog.service.fake import FakeLogService
from raftlog.service.types import Limits

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

ROUTES = {
    ("post", "/v1/logs/{log}/entries"),
    ("get", "/v1/logs/{log}/entries"),
    ("get", "/v1/logs/{log}/entries/{offset}"),
    ("get", "/v1/logs"),
    ("get", "/v1/logs/{log}"),
    ("get", "/v1/cluster"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}
READ_PARAMS = {"consistency", "min_index", "max_lag", "max_staleness_ms", "timeout", "redirect"}
QUERY_PARAMS = {
    ("post", "/v1/logs/{log}/entries"): {"ack", "expected_offset", "timeout", "redirect"},
    ("get", "/v1/logs/{log}/entries"): {"from", "limit", "wait"} | READ_PARAMS,
    ("get", "/v1/logs/{log}/entries/{offset}"): READ_PARAMS,
    ("get", "/v1/logs"): {"after", "limit"} | READ_PARAMS,
    ("get", "/v1/logs/{log}"): READ_PARAMS,
}
ERROR_STATUSES = {
    ("post", "/v1/logs/{log}/entries"): {"400", "409", "413", "429", "500", "503", "504", "507"},
    ("get", "/v1/logs/{log}/entries"): {"400", "410", "500", "503", "504"},
    ("get", "/v1/logs/{log}/entries/{offset}"): {"400", "404", "410", "500", "503", "504"},
    ("get", "/v1/logs"): {"400", "500", "503", "504"},
    ("get", "/v1/logs/{log}"): {"400", "404", "500", "503", "504"},
    ("get", "/v1/cluster"): {"500", "503"},
}


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in spec["paths"].items() for method in ops}


async def test_every_route_is_listed(spec: dict[str, Any]) -> None:
    assert _operations(spec) == ROUTES
    for method, path in ROUTES:
        operation = spec["paths"][path][method]
        assert operation["summary"] and operation["tags"]
        assert "422" not in operation["responses"]  # validation errors are 400s


async def test_every_parameter_is_documented(spec: dict[str, Any]) -> None:
    for (method, path), expected in QUERY_PARAMS.items():
        params = spec["paths"][path][method]["parameters"]
        query = {p["name"] for p in params if p["in"] == "query"}
        assert query == expected, (method, path)
        path_params = {p["name"] for p in params if p["in"] == "path"}
        assert path_params == {"log", "offset"} & set(path.replace("}", "{").split("{"))
        for param in params:
            assert param["description"], param
            assert param["schema"], param
            assert "example" in param, param
            assert param["required"] is (param["in"] == "path")
    ack = next(
        p
        for p in spec["paths"]["/v1/logs/{log}/entries"]["post"]["parameters"]
        if p["name"] == "ack"
    )
    assert ack["schema"]["enum"] == ["leader", "quorum", "all"]


async def test_error_responses_have_the_envelope_and_examples(spec: dict[str, Any]) -> None:
    for (method, path), statuses in ERROR_STATUSES.items():
        responses = spec["paths"][path][method]["responses"]
        assert statuses <= set(responses), (method, path, set(responses))
        for status in statuses:
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
            examples = content["examples"]
            assert examples
            for name, example in examples.items():
                assert example["value"]["error"]["code"] == name
                assert example["value"]["error"]["message"]
            if status in ("429", "503"):
                assert "Retry-After" in responses[status]["headers"]
    post = spec["paths"]["/v1/logs/{log}/entries"]["post"]["responses"]
    assert set(post["413"]["content"]["application/json"]["examples"]) == {
        "entry_too_large",
        "batch_too_large",
        "request_too_large",
    }
    assert "Location" in post["307"]["headers"]


async def test_success_bodies_and_node_headers(spec: dict[str, Any]) -> None:
    refs = {
        ("post", "/v1/logs/{log}/entries", "201"): "Appended",
        ("post", "/v1/logs/{log}/entries", "202"): "Accepted",
        ("get", "/v1/logs/{log}/entries", "200"): "EntriesPage",
        ("get", "/v1/logs/{log}/entries/{offset}", "200"): "Entry",
        ("get", "/v1/logs", "200"): "LogsPage",
        ("get", "/v1/logs/{log}", "200"): "LogObject",
        ("get", "/v1/cluster", "200"): "Cluster",
    }
    for (method, path, status), model in refs.items():
        response = spec["paths"][path][method]["responses"][status]
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
        assert "X-Raftlog-Applied-Index" in response["headers"]
    schemas = spec["components"]["schemas"]
    for model in ("Entry", "Appended", "Accepted", "LogObject", "Cluster"):
        assert schemas[model]["examples"], model
    assert "X-Raftlog-Node" not in spec["paths"]["/healthz"]["get"]["responses"]["200"].get(
        "headers", {}
    )


async def test_append_request_body_is_documented(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/v1/logs/{log}/entries"]["post"]["requestBody"]
    content = body["content"]["application/json"]
    assert set(content["examples"]) == {"single", "batch"}
    assert len(content["schema"]["oneOf"]) == 2


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert "openapi.json" in r.text


# -- the documented limits follow the app's Limits ------------------------------------------

SMALL = Limits(
    max_entry_bytes=2000,
    max_batch_entries=7,
    max_batch_bytes=9000,
    max_request_bytes=20000,
    max_response_bytes=12345,
    max_key_bytes=64,
    max_range_limit=500,
    max_wait_s=12.5,
)
LARGE = Limits(
    max_entry_bytes=3 << 20,
    max_batch_entries=20_000,
    max_batch_bytes=12 << 20,
    max_request_bytes=24 << 20,
    max_response_bytes=(3 << 20) + 9000,
    max_key_bytes=256,
    max_range_limit=20_000,
    max_wait_s=90.0,
)


async def _spec_of(app: FastAPI) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def _query_param(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name
    )
    return found


def _example(spec: dict[str, Any], method: str, path: str, status: str, code: str) -> Any:
    content = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
    return content["examples"][code]["value"]


def _documented_limits(spec: dict[str, Any]) -> dict[str, Any]:
    """Every configurable figure, as the document states it."""
    route = "/v1/logs/{log}/entries"
    limit = _query_param(spec, route, "limit")
    wait = _query_param(spec, route, "wait")
    body = spec["paths"][route]["post"]["requestBody"]
    one, batch = body["content"]["application/json"]["schema"]["oneOf"]
    entry_413 = _example(spec, "post", route, "413", "entry_too_large")["error"]
    batch_413 = _example(spec, "post", route, "413", "batch_too_large")["error"]
    request_413 = _example(spec, "post", route, "413", "request_too_large")["error"]
    bad_limit = _example(spec, "get", route, "400", "invalid_request")["error"]
    return {
        "max_range_limit": {
            limit["schema"]["maximum"],
            bad_limit["message"].split()[-3].rstrip(","),
        },
        "max_wait_s": {wait["schema"]["maximum"]},
        "max_batch_entries": {batch["properties"]["entries"]["maxItems"], batch_413["limit"]},
        "max_key_bytes": {one["properties"]["key"]["maxLength"]},
        "max_entry_bytes": {entry_413["limit"], entry_413["size"] - 1},
        "max_request_bytes": {request_413["limit"]},
    }


async def test_documented_limits_follow_the_apps_limits() -> None:
    """Two apps with different limits: each document states its own figures, everywhere a
    configurable limit appears (and building one document leaves the other unchanged)."""
    small_app = create_app(FakeLogService(limits=SMALL))
    small = await _spec_of(small_app)
    large = await _spec_of(create_app(FakeLogService(limits=LARGE)))
    for spec, limits in ((small, SMALL), (large, LARGE)):
        documented = _documented_limits(spec)
        assert documented == {
            "max_range_limit": {limits.max_range_limit, str(limits.max_range_limit)},
            "max_wait_s": {limits.max_wait_s},
            "max_batch_entries": {limits.max_batch_entries},
            "max_key_bytes": {limits.max_key_bytes},
            "max_entry_bytes": {limits.max_entry_bytes},
            "max_request_bytes": {limits.max_request_bytes},
        }
        text = json.dumps(spec["paths"]["/v1/logs/{log}/entries"])
        for figure in (
            f"max_response_bytes ({limits.max_response_bytes} bytes on this node)",
            f"max_entry_bytes ({limits.max_entry_bytes} bytes on this node)",
            f"max_batch_entries ({limits.max_batch_entries} on this node)",
            f"max_batch_bytes ({limits.max_batch_bytes} bytes)",
            f"max_request_bytes ({limits.max_request_bytes} bytes)",
            f"(0 to {limits.max_wait_s:g})",
        ):
            assert figure in text, figure
        info = spec["info"]["description"]
        for name in ("max_entry_bytes", "max_batch_bytes", "max_response_bytes"):
            assert f"- `{name}`: {getattr(limits, name)}\n" in info, name
    assert (await _spec_of(small_app)) == small
    assert small != build_openapi(
        small_app, [r for m in (entries, logs) for r in m.router.routes], LARGE
    )
    assert (await _spec_of(small_app)) == small  # the cached document was not touched


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_limit_error_examples_are_the_real_answers() -> None:
    """The documented 413 and 400 examples are what the node answers in those cases."""
    app = create_app(FakeLogService(limits=SMALL))
    spec = await _spec_of(app)
    path = "/v1/logs/audit/entries"
    doc = "/v1/logs/{log}/entries"
    # the value of entries[3] one byte over max_entry_bytes (a JSON string: 2 quotes)
    too_big = {"value": "x" * (SMALL.max_entry_bytes - 1)}
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (
            "post",
            {"json": {"entries": [{"value": 1}] * 3 + [too_big]}},
            "413",
            "entry_too_large",
        ),
        (
            "post",
            {"json": {"entries": [{"value": 1}] * (SMALL.max_batch_entries + 1)}},
            "413",
            "batch_too_large",
        ),
        (
            "post",
            # streamed, no Content-Length: refused once the body passes the limit
            {"content": _chunks(b" " * SMALL.max_request_bytes, b"{}")},
            "413",
            "request_too_large",
        ),
        ("get", {"params": {"limit": "0"}}, "400", "invalid_request"),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for method, kwargs, status, code in cases:
            r = await c.request(method.upper(), path, **kwargs)
            assert r.status_code == int(status), (code, r.text)
            assert r.json() == _example(spec, method, doc, status, code), code


def test_docs_and_the_strict_check_declare_the_same_parameters() -> None:
    documented = {key: (d["name"], d["in"]) for key, d in param_docs(SMALL).items()}
    assert documented == PARAM_WHERE
    assert param_docs(SMALL) != param_docs(LARGE)
