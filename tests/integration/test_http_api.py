"""The HTTP contract against real ``raftlog serve`` processes on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from raftlog.client import Client, RaftlogClientError
from tests.support.cluster import wait_until
from tests.support.http_cluster import HttpCluster, http_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HEADERS = (
    "X-Raftlog-Node",
    "X-Raftlog-Cluster",
    "X-Raftlog-Term",
    "X-Raftlog-Applied-Index",
    "X-Raftlog-Leader",
    "X-Raftlog-Last-Contact-Ms",
)


def post(c: HttpCluster, nid: str, log: str, body: Any, **params: Any) -> httpx.Response:
    return c.http(nid, "POST", f"/v1/logs/{log}/entries", json=body, params=params)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with http_cluster(tmp_path_factory.mktemp("http")) as c:
        c.start_all()
        c.wait_ready()
        yield c


def roles(c: HttpCluster) -> tuple[str, list[str]]:
    leader = c.wait_for_leader()
    return leader, [n for n in c.nodes if n != leader]


def test_append_and_read_at_every_level(cluster: HttpCluster) -> None:
    leader, (f1, f2) = roles(cluster)
    r = post(cluster, f1, "orders", {"value": {"id": 1}, "key": "cust-1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"log", "offset", "last_offset", "count", "index", "term"}
    for h in HEADERS:
        assert h in r.headers
    assert r.headers["X-Raftlog-Node"] == f1 and r.headers["X-Raftlog-Leader"] == leader
    batch = post(cluster, leader, "orders", {"entries": [{"value": i} for i in range(3)]})
    assert batch.status_code == 201
    b = batch.json()
    assert (b["offset"], b["last_offset"], b["count"]) == (
        body["offset"] + 1,
        body["offset"] + 3,
        3,
    )
    # quorum read on the other follower sees both writes (linearizable)
    q = cluster.http(f2, "GET", "/v1/logs/orders/entries", params={"from": 0})
    assert q.status_code == 200
    values = [e["value"] for e in q.json()["entries"]]
    assert values[-4:] == [{"id": 1}, 0, 1, 2]
    assert q.json()["next_offset"] == b["last_offset"] + 1
    one = cluster.http(f2, "GET", f"/v1/logs/orders/entries/{body['offset']}")
    assert one.json()["key"] == "cust-1" and one.json()["value"] == {"id": 1}
    # leader read through a follower is forwarded to the leader
    lr = cluster.http(f2, "GET", "/v1/logs/orders/entries", params={"consistency": "leader"})
    assert lr.status_code == 200 and lr.headers["X-Raftlog-Node"] == leader
    # read-your-writes on a follower with min_index
    w = post(cluster, leader, "ryw", {"value": "mine"}).json()
    a = cluster.http(
        f2, "GET", "/v1/logs/ryw/entries", params={"consistency": "any", "min_index": w["index"]}
    )
    assert a.status_code == 200 and [e["value"] for e in a.json()["entries"]] == ["mine"]
    assert int(a.headers["X-Raftlog-Applied-Index"]) >= w["index"]
    far = cluster.http(
        f2,
        "GET",
        "/v1/logs/ryw/entries",
        params={"consistency": "any", "min_index": 10**9, "timeout": 0.3},
    )
    assert far.status_code == 504 and far.json()["error"]["code"] == "timeout"
    ok = cluster.http(
        f2,
        "GET",
        "/v1/logs/ryw/entries",
        params={"consistency": "any", "max_staleness_ms": 5000, "max_lag": 1000},
    )
    assert ok.status_code == 200


def test_ack_levels_redirect_and_conditional_appends(cluster: HttpCluster) -> None:
    leader, (f1, _) = roles(cluster)
    acc = post(cluster, f1, "acks", {"value": "fast"}, ack="leader")
    assert acc.status_code == 202 and acc.json()["accepted"] is True and "offset" not in acc.json()
    allr = post(cluster, f1, "acks", {"value": "everywhere"}, ack="all")
    assert allr.status_code == 201, allr.text
    red = post(cluster, f1, "acks", {"value": "x"}, redirect="true")
    assert red.status_code == 307
    assert red.headers["location"].startswith(cluster.url(leader) + "/v1/logs/acks/entries")
    info = cluster.http(leader, "GET", "/v1/logs/acks").json()
    n = info["next_offset"]
    ok = post(cluster, f1, "acks", {"value": "cas"}, expected_offset=n)
    assert ok.status_code == 201 and ok.json()["offset"] == n
    bad = post(cluster, f1, "acks", {"value": "cas"}, expected_offset=n)
    assert bad.status_code == 409
    assert bad.json()["error"] == {
        **bad.json()["error"],
        "code": "offset_mismatch",
        "next_offset": n + 1,
    }


def test_logs_listing_cluster_and_probes(cluster: HttpCluster) -> None:
    leader, (f1, _) = roles(cluster)
    for name in ("list-a", "list-b", "list-c"):
        assert post(cluster, leader, name, {"value": 1}).status_code == 201
    page = cluster.http(f1, "GET", "/v1/logs", params={"after": "list-", "limit": 2}).json()
    assert [x["log"] for x in page["logs"]] == ["list-a", "list-b"]
    assert page["next_after"] == "list-b"
    one = cluster.http(f1, "GET", "/v1/logs/list-a").json()
    assert one == {
        "log": "list-a",
        "first_offset": 0,
        "next_offset": 1,
        "count": 1,
        "bytes": one["bytes"],
    }
    missing = cluster.http(f1, "GET", "/v1/logs/never-written")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "log_not_found"
    empty = cluster.http(f1, "GET", "/v1/logs/never-written/entries")
    assert empty.status_code == 200 and empty.json() == {"entries": [], "next_offset": 0}
    view = cluster.http(f1, "GET", "/v1/cluster").json()
    assert view["leader"] == leader and view["cluster_id"]
    byid = {n["id"]: n for n in view["nodes"]}
    assert set(byid) == set(cluster.nodes)
    assert all(byid[n]["match_index"] is not None for n in cluster.nodes if n != leader)
    for nid in cluster.nodes:
        assert cluster.http(nid, "GET", "/healthz").status_code == 200
        assert cluster.http(nid, "GET", "/readyz").status_code == 200


MALFORMED: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (method, path, request kwargs, status, code)
    ("POST", "/v1/logs/.hidden/entries", {"json": {"value": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/" + "a" * 129 + "/entries", {"json": {"value": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/bad%20name/entries", {"json": {"value": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/caf%C3%A9/entries", {"json": {"value": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"content": b"{not json"}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"content": b""}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": [1, 2]}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {"valu": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {"value": 1, "extra": 2}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {"value": 1, "key": 5}}, 400, "invalid_request"),
    (
        "POST",
        "/v1/logs/t/entries",
        {"json": {"value": 1, "key": "k" * 1025}},
        400,
        "invalid_request",
    ),
    ("POST", "/v1/logs/t/entries", {"json": {"entries": []}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {"entries": {"value": 1}}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {"entries": [{"key": "k"}]}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"json": {"entries": [1, 2]}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries", {"content": b'{"value": NaN}'}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries?ack=most", {"json": {"value": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries?timeout=0", {"json": {"value": 1}}, 400, "invalid_request"),
    ("POST", "/v1/logs/t/entries?timeout=abc", {"json": {"value": 1}}, 400, "invalid_request"),
    (
        "POST",
        "/v1/logs/t/entries?expected_offset=-1",
        {"json": {"value": 1}},
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/v1/logs/t/entries?expected_offset=1.5",
        {"json": {"value": 1}},
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/v1/logs/t/entries?ack=leader&expected_offset=0",
        {"json": {"value": 1}},
        400,
        "invalid_request",
    ),
    ("POST", "/v1/logs/t/entries", {"json": {"value": "x" * (1 << 20)}}, 413, "entry_too_large"),
    (
        "POST",
        "/v1/logs/t/entries",
        {"json": {"entries": [{"value": 1}] * 10001}},
        413,
        "batch_too_large",
    ),
    (
        "POST",
        "/v1/logs/t/entries",
        {"content": b'{"value": "' + b"x" * (17 << 20) + b'"}'},
        413,
        "request_too_large",
    ),
    (
        "POST",
        "/v1/logs/t/entries",
        {"json": {"value": 1}, "headers": {"Idempotency-Key": "k1"}},
        400,
        "invalid_request",
    ),
    ("GET", "/v1/logs/t/entries/-1", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries/abc", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries/1.5", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?from=-3", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?limit=0", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?limit=10001", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?consistency=strong", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?wait=61", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?min_index=x", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries?max_lag=-1&consistency=any", {}, 400, "invalid_request"),
    ("GET", "/v1/logs?limit=0", {}, 400, "invalid_request"),
    ("GET", "/v1/logs/t/entries/99999", {}, 404, "offset_not_found"),
]


def test_malformed_requests_get_documented_4xx_and_change_nothing(cluster: HttpCluster) -> None:
    leader, followers = roles(cluster)
    assert post(cluster, leader, "t", {"value": "seed"}).status_code == 201
    before = cluster.http(leader, "GET", "/v1/logs").json()
    for i, (method, path, kwargs, status, code) in enumerate(MALFORMED):
        nid = [leader, *followers][i % 3]
        r = cluster.http(nid, method, path, **kwargs)
        assert r.status_code == status, (path, kwargs.get("json"), r.status_code, r.text[:300])
        err = r.json()["error"]
        assert err["code"] == code, (path, err)
        assert err["message"], path
        assert "X-Raftlog-Node" in r.headers, path
    after = cluster.http(leader, "GET", "/v1/logs").json()
    assert before == after
    assert cluster.http(leader, "GET", "/v1/logs/t").json()["count"] == 1
    # every node still serves
    for nid in cluster.nodes:
        assert cluster.http(nid, "GET", "/v1/logs/t/entries").status_code == 200


def test_isolated_node_refuses_quorum_and_leader_reads(tmp_path: Path) -> None:
    with http_cluster(tmp_path) as c:
        c.start_all()
        leader = c.wait_ready()
        others = [n for n in c.nodes if n != leader]
        assert post(c, leader, "iso", {"value": 1}).status_code == 201
        for nid in others:  # the leader's Raft peers become unreachable
            c.signal(nid, signal.SIGSTOP)
        try:
            time.sleep(0.3)  # past leader_lease_ms (200 ms here) without any peer answering
            t = time.monotonic()
            q = c.http(leader, "GET", "/v1/logs/iso/entries", params={"timeout": 2})
            took = time.monotonic() - t
            assert q.status_code == 503 and q.json()["error"]["code"] == "no_quorum", q.text
            assert took < 2.5 and "Retry-After" in q.headers
            lr = c.http(leader, "GET", "/v1/logs/iso/entries", params={"consistency": "leader"})
            assert lr.status_code == 503 and lr.json()["error"]["code"] == "no_quorum"
            anyr = c.http(leader, "GET", "/v1/logs/iso/entries", params={"consistency": "any"})
            assert anyr.status_code == 200  # local reads stay available
        finally:
            for nid in others:
                c.signal(nid, signal.SIGCONT)
        c.wait_ready()


def test_sigterm_of_leader_hands_over_without_failed_writes(tmp_path: Path) -> None:
    with http_cluster(tmp_path) as c:
        c.start_all()
        leader = c.wait_ready()
        errors: list[str] = []
        acked: list[int] = []
        stop = threading.Event()

        def write(wid: int) -> None:
            with Client(c.urls(), timeout=10, retries=50, backoff=0.02) as client:
                for seq in range(2000):
                    if stop.is_set():
                        return
                    try:
                        acked.append(client.append("handover", f"{wid}-{seq}").offset)
                    except RaftlogClientError as exc:
                        errors.append(f"{exc.code}: {exc.message}")

        threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) > 50, 30, "writes")
        c.signal(leader, signal.SIGTERM)
        proc = c.nodes[leader].proc
        assert proc is not None
        assert proc.wait(30) == 0
        c.nodes[leader].proc = None
        new_leader = c.wait_for_leader(10, c.running_ids())
        count = len(acked)
        wait_until(lambda: len(acked) > count + 50, 30, "writes after the handover")
        stop.set()
        for t in threads:
            t.join(30)
        assert new_leader != leader
        assert not errors, errors[:5]
        assert "leadership handed over" in c.tail(leader, 200)


def test_ack_all_times_out_and_stale_followers_refuse(tmp_path: Path) -> None:
    with http_cluster(tmp_path) as c:
        c.start_all()
        leader = c.wait_ready()
        f1, f2 = [n for n in c.nodes if n != leader]
        assert post(c, leader, "stale", {"value": 0}).status_code == 201
        c.signal(f2, signal.SIGSTOP)  # one member stops replicating
        try:
            r = post(c, f1, "stale", {"value": 1}, ack="all", timeout=1)
            assert r.status_code == 504, r.text
            err = r.json()["error"]
            assert err["code"] == "not_fully_replicated" and err["committed"] is True
            assert err["offset"] == 1 and err["last_offset"] == 1
            q = c.http(f1, "GET", "/v1/logs/stale/entries")
            assert [e["value"] for e in q.json()["entries"]] == [0, 1]  # it was committed
        finally:
            c.signal(f2, signal.SIGCONT)
        c.signal(leader, signal.SIGSTOP)  # the followers stop hearing from the leader
        try:
            time.sleep(0.3)
            stale = c.http(
                f1,
                "GET",
                "/v1/logs/stale/entries",
                params={"consistency": "any", "max_staleness_ms": 200},
            )
            assert stale.status_code == 503, stale.text
            assert stale.json()["error"]["code"] == "too_stale"
            assert int(stale.headers["X-Raftlog-Last-Contact-Ms"]) > 200
            fresh_enough = c.http(
                f1,
                "GET",
                "/v1/logs/stale/entries",
                params={"consistency": "any", "max_staleness_ms": 60000},
            )
            assert fresh_enough.status_code == 200
        finally:
            c.signal(leader, signal.SIGCONT)
        c.wait_ready()
