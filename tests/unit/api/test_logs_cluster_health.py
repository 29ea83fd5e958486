"""GET /v1/logs, /v1/logs/{log}, /v1/cluster, /healthz, /readyz."""

from __future__ import annotations

import httpx
import pytest

from raftlog.service.fake import FakeLogService
from raftlog.service.types import ReadOptions
from tests.unit.api.support import assert_error, assert_node_headers, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


async def test_list_logs_in_name_order_with_paging(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    for name in ("c", "a", "b", "B1", "0x"):
        await seed(fake, name, b'"v"')
    r = await client.get("/v1/logs?limit=2")
    assert r.status_code == 200
    body = r.json()
    assert [info["log"] for info in body["logs"]] == ["0x", "B1"]
    assert body["next_after"] == "B1"
    assert body["logs"][0] == {
        "log": "0x",
        "first_offset": 0,
        "next_offset": 1,
        "count": 1,
        "bytes": 3,
    }
    assert_node_headers(r)
    r = await client.get("/v1/logs?after=B1&limit=2")
    assert [info["log"] for info in r.json()["logs"]] == ["a", "b"]
    r = await client.get("/v1/logs?after=b&limit=2")
    assert r.json() == {"logs": [r.json()["logs"][0]], "next_after": None}
    assert r.json()["logs"][0]["log"] == "c"


async def test_list_logs_defaults_and_options(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    r = await client.get("/v1/logs")
    assert r.json() == {"logs": [], "next_after": None}
    r = await client.get("/v1/logs?after=&limit=1000&consistency=any&min_index=0")
    assert r.status_code == 200
    assert fake.calls == [
        ("list_logs", (None, 100, ReadOptions())),
        ("list_logs", (None, 1000, ReadOptions("any", 0))),
    ]


async def test_get_log(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    await seed(fake, "audit", b"1", b"22", b"333")
    fake.trim("audit", 1)
    r = await client.get("/v1/logs/audit?consistency=leader")
    assert r.status_code == 200
    assert r.json() == {"log": "audit", "first_offset": 1, "next_offset": 3, "count": 2, "bytes": 5}
    assert fake.calls == [("get_log", ("audit", ReadOptions("leader")))]


async def test_get_log_not_found(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/logs/nope")
    error = assert_error(r, 404, "log_not_found", names="'nope'")
    assert set(error) == {"code", "message"}
    assert_node_headers(r)


async def test_cluster(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    await seed(fake, "audit", b"1")
    r = await client.get("/v1/cluster")
    assert r.status_code == 200
    body = r.json()
    assert body["cluster"] == "fake" and body["leader"] == "fake-1"
    assert body["commit_index"] == 1 and body["term"] == 1
    assert body["cluster_id"] == fake.cluster_id
    node = body["nodes"][0]
    assert set(node) == {
        "id",
        "raft",
        "http",
        "role",
        "applied_index",
        "match_index",
        "lag",
        "last_contact_ms",
        "reachable",
    }
    assert node["role"] == "leader"
    assert_node_headers(r)
    assert fake.calls == [("cluster", (False,))]


async def test_cluster_own_view_with_no_forward_header(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.leader = False
    r = await client.get("/v1/cluster", headers={"X-Raftlog-No-Forward": "1"})
    assert r.status_code == 200
    assert r.json()["nodes"][0]["role"] == "follower"
    assert fake.calls == [("cluster", (True,))]


async def test_healthz(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    fake.readiness = (False, "no leader is known yet")
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert "X-Raftlog-Node" not in r.headers  # not a /v1 route
    fake.alive = False
    r = await client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "node_stopped"


async def test_readyz(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"ready": True}
    fake.readiness = (False, "no leader is known yet")
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json() == {
        "ready": False,
        "reason": "no leader is known yet",
        "error": {"code": "not_ready", "message": "no leader is known yet"},
    }


async def test_probes_survive_a_broken_service(
    client: httpx.AsyncClient, fake: FakeLogService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(fake, "live", broken)
    monkeypatch.setattr(fake, "ready", broken)
    assert (await client.get("/healthz")).status_code == 503
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert "boom" not in r.text
