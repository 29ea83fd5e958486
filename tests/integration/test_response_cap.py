"""Against real ``raftlog serve`` processes on 127.0.0.1: range reads stop at
``max_response_bytes`` (file setting on two nodes, ``RAFTLOG_MAX_RESPONSE_BYTES`` on the
third) on every read path, long-poll and forwarding included; the strict API refuses a
typo without writing; a client that disconnects mid-body leaves one INFO line."""

from __future__ import annotations

import socket
import threading
from typing import Any

import httpx
import pytest

from tests.support.cluster import wait_until
from tests.support.http_cluster import HttpCluster, http_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ENTRY_BYTES = 64 << 10
CAP = ENTRY_BYTES + 8192  # the smallest the configuration accepts
N3_CAP = 3 * CAP  # n3 overrides the file by environment
VALUE_CHARS = 60_000  # a string value of 60002 bytes: one entry per page at CAP
COUNT = 12


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = {"max_entry_bytes": ENTRY_BYTES, "max_response_bytes": CAP}
    env = {"n3": {"RAFTLOG_MAX_RESPONSE_BYTES": str(N3_CAP)}}
    with http_cluster(tmp_path_factory.mktemp("cap"), settings=settings, node_env=env) as c:
        c.start_all()
        c.wait_ready()
        leader = c.wait_for_leader()
        values = [f"{i}:" + "v" * (VALUE_CHARS - 2) for i in range(COUNT)]
        for start in range(0, COUNT, 4):  # batches of 4 entries (240 KB, above the cap)
            body = {"entries": [{"value": v} for v in values[start : start + 4]]}
            r = c.http(leader, "POST", "/v1/logs/big/entries", json=body)
            assert r.status_code == 201, r.text
        yield c


def _pages(c: HttpCluster, nid: str, **params: Any) -> list[httpx.Response]:
    """Every page of log ``big`` from offset 0, following next_offset."""
    pages, start = [], 0
    while start < COUNT:
        r = c.http(nid, "GET", "/v1/logs/big/entries", params={**params, "from": start})
        assert r.status_code == 200, r.text
        pages.append(r)
        next_offset = r.json()["next_offset"]
        assert next_offset > start
        start = next_offset
    return pages


@pytest.mark.parametrize(
    "params",
    [{}, {"consistency": "leader"}, {"consistency": "any"}, {"consistency": "quorum", "wait": 1}],
    ids=["quorum", "leader-forwarded", "any", "quorum-long-poll"],
)
def test_every_read_path_stops_at_the_cap(cluster: HttpCluster, params: dict[str, Any]) -> None:
    leader = cluster.wait_for_leader()
    follower = next(n for n in ("n1", "n2") if n != leader)
    pages = _pages(cluster, follower, limit=100, **params)
    offsets = [e["offset"] for r in pages for e in r.json()["entries"]]
    assert offsets == list(range(COUNT))  # every entry once, in order
    # A forwarded leader read is served, and so capped, by the leader: n3 has its own cap.
    served_by_n3 = params.get("consistency") == "leader" and leader == "n3"
    cap, per_page = (N3_CAP, 3) if served_by_n3 else (CAP, 1)
    for r in pages:
        assert len(r.content) <= cap
        assert len(r.json()["entries"]) == per_page  # one 60 KB entry more never fits


def test_the_environment_overrides_the_file(cluster: HttpCluster) -> None:
    pages = _pages(cluster, "n3", consistency="any", limit=100)
    sizes = [len(r.json()["entries"]) for r in pages]
    assert all(len(r.content) <= N3_CAP for r in pages)
    assert max(sizes) == 3 and sum(sizes) == COUNT


def test_long_poll_answers_a_capped_page(cluster: HttpCluster) -> None:
    """The poll starts before the append (it parks if it gets there first, else it finds
    the entries at once): either way its page is capped."""
    leader = cluster.wait_for_leader()
    follower = next(n for n in ("n1", "n2") if n != leader)
    answer: list[httpx.Response] = []

    def poll() -> None:
        answer.append(cluster.http(follower, "GET", "/v1/logs/later/entries", params={"wait": 20}))

    reader = threading.Thread(target=poll)
    reader.start()
    body = {"entries": [{"value": "w" * VALUE_CHARS} for _ in range(3)]}
    r = cluster.http(leader, "POST", "/v1/logs/later/entries", json=body)
    assert r.status_code == 201
    reader.join(30)
    assert answer, "the long-poll did not answer"
    page = answer[0].json()
    assert [e["offset"] for e in page["entries"]] == [0]  # capped to one entry
    assert page["next_offset"] == 1 and len(answer[0].content) <= CAP


def test_a_typo_in_a_parameter_writes_nothing(cluster: HttpCluster) -> None:
    leader = cluster.wait_for_leader()
    before = cluster.http(leader, "GET", "/v1/logs/big").json()["next_offset"]
    for nid in cluster.nodes:  # the follower refuses it before forwarding
        r = cluster.http(nid, "POST", "/v1/logs/big/entries?expected_ofset=0", json={"value": "x"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and "'expected_ofset'" in error["message"]
    r = cluster.http(leader, "POST", "/v1/logs/big/entries", content=b'{"value":1,"value":2}')
    assert r.status_code == 400 and "'value'" in r.json()["error"]["message"]
    assert cluster.http(leader, "GET", "/v1/logs/big").json()["next_offset"] == before


def test_a_client_that_disconnects_mid_body_is_one_info_line(cluster: HttpCluster) -> None:
    nid = "n1"
    node = cluster.nodes[nid]
    path = "/v1/logs/gone/entries"
    seen = len(node.log_path.read_bytes())
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b'{"value": "only part of it'
        )
    line = f"client disconnected during POST {path}; no answer sent"
    wait_until(lambda: line in node.log_path.read_text(errors="replace"), 20, "the INFO line")
    text = node.log_path.read_bytes()[seen:].decode(errors="replace")  # since the request
    assert text.count(line) == 1
    assert f"INFO raftlog.api {line}" in text
    assert "unhandled error" not in text and "ClientDisconnect" not in text
    assert "Traceback" not in text
    r = cluster.http(nid, "GET", "/v1/logs/gone")
    assert r.status_code == 404  # nothing was written
