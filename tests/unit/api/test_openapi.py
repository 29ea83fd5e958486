"""/openapi.json documents every route, parameter, response and error, with examples."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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
