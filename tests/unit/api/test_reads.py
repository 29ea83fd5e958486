"""GET /v1/logs/{log}/entries/{offset} and GET /v1/logs/{log}/entries (ranges, long-poll)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from raftlog.service.fake import FAKE_EPOCH_MS, FakeLogService
from raftlog.service.types import AppendRequest, NewEntry, ReadOptions
from tests.unit.api.support import assert_error, assert_node_headers, seed

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


async def test_get_one_entry(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    await seed(fake, "audit", b'{"a":1}', b"[true,null]", key='k"1')
    r = await client.get("/v1/logs/audit/entries/1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "offset": 1,
        "value": [True, None],
        "key": 'k"1',
        "timestamp": FAKE_EPOCH_MS + 1,
        "index": 2,
        "term": 1,
    }
    assert_node_headers(r)
    assert fake.calls == [("get_entry", ("audit", 1, ReadOptions()))]


async def test_value_bytes_are_spliced_verbatim(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", '{"é":"✓","n":1.50}'.encode())
    r = await client.get("/v1/logs/audit/entries/0")
    assert b'"value":{"\xc3\xa9":"\xe2\x9c\x93","n":1.50}' in r.content
    r = await client.get("/v1/logs/audit/entries")
    assert b'"value":{"\xc3\xa9":"\xe2\x9c\x93","n":1.50}' in r.content
    assert r.json()["entries"][0]["value"] == {"é": "✓", "n": 1.5}


async def test_unicode_key_round_trips(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    r = await client.post("/v1/logs/audit/entries", json={"value": 1, "key": "clé ✓ \U0001f600"})
    assert r.status_code == 201
    r = await client.get("/v1/logs/audit/entries?from=0")
    assert r.json()["entries"][0]["key"] == "clé ✓ \U0001f600"


async def test_offset_not_found_404(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    await seed(fake, "audit", b"1")
    for path in ("/v1/logs/audit/entries/1", "/v1/logs/missing/entries/0"):
        r = await client.get(path)
        error = assert_error(r, 404, "offset_not_found")
        assert error["next_offset"] == (1 if "audit" in path else 0)
        assert_node_headers(r)


async def test_trimmed_410_for_single_and_range(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0", b"1", b"2", b"3")
    fake.trim("audit", 2)
    r = await client.get("/v1/logs/audit/entries/1")
    assert assert_error(r, 410, "trimmed")["first_offset"] == 2
    r = await client.get("/v1/logs/audit/entries?from=0")
    assert assert_error(r, 410, "trimmed")["first_offset"] == 2
    r = await client.get("/v1/logs/audit/entries?from=2")
    assert [e["offset"] for e in r.json()["entries"]] == [2, 3]


async def test_range_paging(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    await seed(fake, "audit", *[str(i).encode() for i in range(7)])
    r = await client.get("/v1/logs/audit/entries?from=2&limit=3")
    assert r.status_code == 200
    body = r.json()
    assert [e["value"] for e in body["entries"]] == [2, 3, 4]
    assert body["next_offset"] == 5
    r = await client.get(f"/v1/logs/audit/entries?from={body['next_offset']}&limit=3")
    assert [e["offset"] for e in r.json()["entries"]] == [5, 6]
    assert r.json()["next_offset"] == 7
    assert_node_headers(r)


async def test_range_defaults(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    r = await client.get("/v1/logs/audit/entries")
    assert r.json() == {"entries": [], "next_offset": 0}
    assert fake.calls == [("read_range", ("audit", 0, 100, ReadOptions(), 0.0))]


async def test_range_at_or_past_the_end_is_empty(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0")
    for start in (1, 50):
        r = await client.get(f"/v1/logs/audit/entries?from={start}")
        assert r.status_code == 200
        assert r.json() == {"entries": [], "next_offset": start}


async def test_range_of_a_log_that_does_not_exist_is_empty(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/logs/nothing-yet/entries?from=0")
    assert r.json() == {"entries": [], "next_offset": 0}


async def test_largest_limit_wait_and_timeout_are_accepted(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0")  # an entry at `from`: the long-poll does not wait
    r = await client.get("/v1/logs/audit/entries?limit=10000&wait=60&from=0&timeout=300")
    assert r.status_code == 200
    assert fake.calls == [("read_range", ("audit", 0, 10000, ReadOptions(timeout=300.0), 60.0))]


async def test_long_poll_wakes_on_append(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    await seed(fake, "audit", b"0")

    async def append_later() -> None:
        await asyncio.sleep(0.05)
        await fake.append(AppendRequest("other", (NewEntry(b"9"),)))  # another log: no wake
        await asyncio.sleep(0.05)
        await fake.append(AppendRequest("audit", (NewEntry(b"1"),)))

    started = time.monotonic()
    task = asyncio.create_task(append_later())
    r = await client.get("/v1/logs/audit/entries?from=1&wait=5")
    await task
    assert r.json()["entries"][0]["value"] == 1
    assert r.json()["next_offset"] == 2
    assert time.monotonic() - started < 2


async def test_long_poll_on_a_new_log(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    async def append_later() -> None:
        await asyncio.sleep(0.05)
        await fake.append(AppendRequest("fresh", (NewEntry(b'"first"'),)))

    task = asyncio.create_task(append_later())
    r = await client.get("/v1/logs/fresh/entries?wait=5")
    await task
    assert [e["value"] for e in r.json()["entries"]] == ["first"]


async def test_long_poll_times_out_empty(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    started = time.monotonic()
    r = await client.get("/v1/logs/audit/entries?from=0&wait=0.1")
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert r.json() == {"entries": [], "next_offset": 0}
    assert 0.09 <= elapsed < 2
    assert fake.calls[0][1][4] == 0.1


async def test_read_options_reach_the_service(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    await seed(fake, "audit", b"0")
    r = await client.get(
        "/v1/logs/audit/entries/0?consistency=any&min_index=1&max_lag=5"
        "&max_staleness_ms=100&timeout=0.5"
    )
    assert r.status_code == 200
    assert fake.calls[-1] == ("get_entry", ("audit", 0, ReadOptions("any", 1, 5, 100, 0.5)))


async def test_min_index_waits_for_the_index(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    async def append_later() -> None:
        await asyncio.sleep(0.05)
        await fake.append(AppendRequest("audit", (NewEntry(b"1"),)))

    task = asyncio.create_task(append_later())
    r = await client.get("/v1/logs/audit/entries?min_index=1&consistency=any&timeout=5")
    await task
    assert r.status_code == 200
    assert len(r.json()["entries"]) == 1


async def test_min_index_timeout_504(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    r = await client.get("/v1/logs/audit/entries/0?min_index=7&timeout=0.05")
    assert_error(r, 504, "timeout", names="min_index 7")
    assert_node_headers(r)


async def test_too_stale_503(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    fake.lag = 10
    fake.last_contact_ms = 500
    r = await client.get("/v1/logs/audit/entries?consistency=any&max_lag=3")
    assert assert_error(r, 503, "too_stale", names="max_lag")["lag"] == 10
    r = await client.get("/v1/logs/audit/entries?consistency=any&max_staleness_ms=100")
    assert assert_error(r, 503, "too_stale")["last_contact_ms"] == 500
    r = await client.get("/v1/logs/audit/entries?consistency=any&max_lag=10&max_staleness_ms=500")
    assert r.status_code == 200


async def test_no_quorum_503(client: httpx.AsyncClient, fake: FakeLogService) -> None:
    fake.has_quorum = False
    r = await client.get("/v1/logs/audit/entries/0")
    assert_error(r, 503, "no_quorum")
    r = await client.get("/v1/logs/audit/entries?consistency=any")
    assert r.status_code == 200


async def test_leader_read_on_a_follower_redirects_or_refuses(
    client: httpx.AsyncClient, fake: FakeLogService
) -> None:
    fake.leader = False
    fake.leader_url_value = "http://n1:8001"
    r = await client.get("/v1/logs/audit/entries/3?consistency=leader&redirect=true")
    assert r.status_code == 307
    assert r.headers["Location"] == (
        "http://n1:8001/v1/logs/audit/entries/3?consistency=leader&redirect=true"
    )
    assert_node_headers(r)
    r = await client.get("/v1/logs/audit/entries?consistency=leader")
    assert_error(r, 503, "no_leader", names="http://n1:8001")  # no forwarder configured
    fake.leader_url_value = None
    r = await client.get("/v1/logs/audit/entries?consistency=leader&redirect=true")
    assert_error(r, 503, "no_leader")
