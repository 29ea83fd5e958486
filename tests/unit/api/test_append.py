"""POST /v1/logs/{log}/entries: bodies, acks, expected_offset, redirects."""

from __future__ import annotations

import json

import httpx
import pytest

from raftlog.errors import ServedByLeader
from raftlog.service.fake import FakeLogService
from raftlog.service.types import AppendRequest, NewEntry
from tests.unit.api.support import assert_error, assert_node_headers, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


def _sent(fake: FakeLogService) -> AppendRequest:
    name, args = fake.calls[-1]
    assert name == "append"
    request = args[0]
    assert isinstance(request, AppendRequest)
    return request


async def test_single_entry_201(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    r = await client.post("/v1/logs/audit/entries", json={"value": {"a": [1, 2]}, "key": "u-1"})
    assert r.status_code == 201
    assert r.json() == {
        "log": "audit",
        "offset": 0,
        "last_offset": 0,
        "count": 1,
        "index": 1,
        "term": 1,
    }
    assert_node_headers(r)
    assert r.headers["X-Raftlog-Applied-Index"] == "1"  # the state when it answered
    sent = _sent(fake)
    assert sent == AppendRequest("audit", (NewEntry(b'{"a":[1,2]}', "u-1"),), "quorum", None, 10.0)


async def test_batch_gets_consecutive_offsets(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0")
    body = {"entries": [{"value": 1}, {"value": None, "key": None}, {"value": "x", "key": "k"}]}
    r = await client.post("/v1/logs/audit/entries", json=body)
    assert r.status_code == 201
    assert r.json() == {
        "log": "audit",
        "offset": 1,
        "last_offset": 3,
        "count": 3,
        "index": 2,
        "term": 1,
    }
    assert _sent(fake).entries == (NewEntry(b"1"), NewEntry(b"null"), NewEntry(b'"x"', "k"))


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (None, b"null"),
        (0, b"0"),
        (-1.5, b"-1.5"),
        (True, b"true"),
        ("", b'""'),
        ("héllo ✓", '"héllo ✓"'.encode()),
        ([], b"[]"),
        ({"b": {"c": None}}, b'{"b":{"c":null}}'),
        (2**70, str(2**70).encode()),
    ],
)
async def test_any_json_value_is_stored_compact(
    client: httpx.AsyncClient, fake: FakeLogService, value: object, stored: bytes
) -> None:
    r = await client.post("/v1/logs/v/entries", json={"value": value})
    assert r.status_code == 201
    assert _sent(fake).entries[0].value_json == stored
    got = await client.get("/v1/logs/v/entries/0")
    assert got.json()["value"] == value


async def test_whitespace_in_the_body_does_not_reach_the_value(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    content = b'{ "value" : { "a" : [ 1 , 2 ] } , "key" : "k" }'
    r = await client.post("/v1/logs/v/entries", content=content)
    assert r.status_code == 201
    assert _sent(fake).entries[0] == NewEntry(b'{"a":[1,2]}', "k")


async def test_key_of_1024_utf8_bytes_is_accepted(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    key = "é" * 512  # 1024 bytes
    r = await client.post("/v1/logs/v/entries", json={"value": 1, "key": key})
    assert r.status_code == 201
    assert _sent(fake).entries[0].key == key


async def test_batch_at_the_limits_is_accepted(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    limits = fake.limits
    big = "x" * (limits.max_entry_bytes - 2)  # encodes to exactly max_entry_bytes
    r = await client.post("/v1/logs/v/entries", json={"value": big})
    assert r.status_code == 201
    entries = [{"value": i} for i in range(limits.max_batch_entries)]
    r = await client.post("/v1/logs/v/entries", json={"entries": entries})
    assert r.status_code == 201
    assert r.json()["count"] == limits.max_batch_entries


async def test_ack_leader_202(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    r = await client.post("/v1/logs/audit/entries?ack=leader", json={"value": 1})
    assert r.status_code == 202
    body = r.json()
    assert body["log"] == "audit" and body["accepted"] is True
    assert "lost" in body["message"]
    assert "offset" not in body
    assert_node_headers(r)
    assert _sent(fake).ack == "leader"


async def test_ack_all_201_and_parameters_reach_the_service(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    r = await client.post(
        "/v1/logs/audit/entries?ack=all&timeout=2.5&expected_offset=0",
        json={"value": 1},
    )
    assert r.status_code == 201
    sent = _sent(fake)
    assert (sent.ack, sent.timeout, sent.expected_offset) == ("all", 2.5, 0)


async def test_ack_all_not_fully_replicated_504(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.fully_replicated = False
    r = await client.post("/v1/logs/audit/entries?ack=all", json={"entries": [{"value": 1}] * 2})
    error = assert_error(r, 504, "not_fully_replicated")
    assert error["committed"] is True
    assert (error["offset"], error["last_offset"], error["count"]) == (0, 1, 2)
    assert error["index"] == 1


async def test_expected_offset_match_and_mismatch(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"1", b"2")
    r = await client.post("/v1/logs/audit/entries?expected_offset=2", json={"value": 3})
    assert r.status_code == 201 and r.json()["offset"] == 2
    before = fake.snapshot()
    r = await client.post("/v1/logs/audit/entries?expected_offset=2", json={"value": 4})
    error = assert_error(r, 409, "offset_mismatch", names="next offset is 3")
    assert error["next_offset"] == 3
    assert fake.snapshot() == before


async def test_redirect_on_the_leader_is_ignored(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    r = await client.post("/v1/logs/audit/entries?redirect=true", json={"value": 1})
    assert r.status_code == 201


async def test_redirect_on_a_follower_307_before_the_service(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.leader = False
    fake.leader_id = "n1"
    fake.leader_url_value = "http://10.0.0.1:8001"
    r = await client.post(
        "/v1/logs/audit/entries?ack=quorum&redirect=true&timeout=5", json={"value": 1}
    )
    assert r.status_code == 307
    assert r.headers["Location"] == (
        "http://10.0.0.1:8001/v1/logs/audit/entries?ack=quorum&redirect=true&timeout=5"
    )
    assert_node_headers(r)
    assert r.headers["X-Raftlog-Leader"] == "n1"
    assert fake.calls == [] and fake.logs == {}


async def test_redirect_accepts_1_and_trims_the_leader_url(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.leader = False
    fake.leader_url_value = "http://leader:8001/"
    r = await client.post("/v1/logs/a.b-c_d/entries?redirect=1", json={"value": 1})
    assert r.status_code == 307
    assert r.headers["Location"] == "http://leader:8001/v1/logs/a.b-c_d/entries?redirect=1"


async def test_redirect_on_a_follower_without_leader_503(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.leader = False
    r = await client.post("/v1/logs/audit/entries?redirect=true", json={"value": 1})
    assert_error(r, 503, "no_leader")
    assert_node_headers(r)
    assert fake.calls == []


async def test_follower_quorum_write_without_redirect_goes_to_the_service(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    # The real service proposes through Raft from a follower; the fake applies it.
    fake.leader = False
    fake.leader_url_value = "http://leader:8001"
    r = await client.post("/v1/logs/audit/entries?redirect=false", json={"value": 1})
    assert r.status_code == 201
    assert _sent(fake).log == "audit"


async def test_served_by_leader_without_forwarder_503(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.leader = False
    fake.leader_url_value = "http://leader:8001"
    # The service raises ServedByLeader (ack=all on a follower); no forwarder is
    # configured, so 503 no_leader names the leader.
    r = await client.post("/v1/logs/audit/entries?ack=all", json={"value": 1})
    error = assert_error(r, 503, "no_leader", names="http://leader:8001")
    assert error["leader_url"] == "http://leader:8001"
    assert fake.logs == {}


async def test_leadership_lost_during_append_with_redirect_answers_307(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    # is_leader() said yes, then the service found it must be served elsewhere.
    fake.fail_next = ServedByLeader("http://n2:8002")
    r = await client.post("/v1/logs/audit/entries?redirect=true", json={"value": 1})
    assert r.status_code == 307
    assert r.headers["Location"] == "http://n2:8002/v1/logs/audit/entries?redirect=true"
    assert_node_headers(r)


async def test_response_bytes_are_compact_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/logs/audit/entries", json={"value": 1})
    assert r.content == json.dumps(r.json(), separators=(",", ":")).encode()
