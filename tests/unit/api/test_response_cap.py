"""max_response_bytes: a range page stops before its served size would exceed the cap
(always at least one entry), on the fake service (through the HTTP API) and on the real
LogService over a real LMDB state machine, long-poll included; and the wire size the
cap is measured with is the size of the bytes actually served."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.app import create_app
from api.schemas import entries_page_bytes, entry_bytes
from raftlog.commands import MAX_INT, Append, AppendEntry, Trim, encode
from raftlog.config import config_from_mapping
from raftlog.errors import Trimmed
from raftlog.service.fake import FakeLogService
from raftlog.service.log_service import READ_CHUNK_ENTRIES, LogService
from raftlog.service.types import (
    MAX_KEY_BYTES,
    ONE_ENTRY_PAGE_OVERHEAD_BYTES,
    AppendRequest,
    Limits,
    NewEntry,
    PageBudget,
    ReadOptions,
    entry_wire_size,
    page_wire_size,
)
from raftlog.state.machine import StateMachine
from raftlog.state.types import ApplyResult, Entry

pytestmark = pytest.mark.unit

ANY = ReadOptions("any")
ENTRY_BYTES = 1024
CAP = ENTRY_BYTES + ONE_ENTRY_PAGE_OVERHEAD_BYTES  # the smallest cap the config accepts


def _value(i: int, size: int) -> bytes:
    """A JSON string value of exactly ``size`` bytes, distinct per ``i``."""
    head = f'"{i}:'
    return (head + "x" * (size - len(head) - 1) + '"').encode()


# -- the measure ------------------------------------------------------------------------------

_ints = st.integers(min_value=0, max_value=MAX_INT)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
).map(lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode())
_entries = st.builds(
    Entry,
    offset=_ints,
    value_json=_values,
    key=st.none() | st.text(max_size=20),
    timestamp_ms=_ints,
    index=_ints,
    term=_ints,
)


@given(entries=st.lists(_entries, max_size=5), next_offset=_ints)
def test_wire_size_is_the_size_of_the_served_bytes(entries: list[Entry], next_offset: int) -> None:
    for entry in entries:
        assert entry_wire_size(entry) == len(entry_bytes(entry))
    assert page_wire_size(entries, next_offset) == len(entries_page_bytes(entries, next_offset))


def test_one_entry_page_overhead_covers_the_worst_key_and_integers() -> None:
    worst_keys = ["\x00" * MAX_KEY_BYTES, "\U0001f600" * (MAX_KEY_BYTES // 4), '"' * 1024]
    for key in worst_keys:
        assert len(key.encode()) <= MAX_KEY_BYTES
        entry = Entry(MAX_INT - 1, b"", key, MAX_INT, MAX_INT, MAX_INT)
        assert page_wire_size([entry], MAX_INT) <= ONE_ENTRY_PAGE_OVERHEAD_BYTES


def test_page_budget_is_tight_and_admits_the_first_entry() -> None:
    entries = [Entry(i, _value(i, 300), None, 1, 1, 1) for i in range(10)]
    cap = page_wire_size(entries[:4], 4)
    budget = PageBudget(cap)
    admitted: list[Entry] = []
    for entry in entries:
        if not budget.admit(entry):
            break
        admitted.append(entry)
    assert admitted == entries[:4]
    assert page_wire_size(admitted, 4) == cap  # exactly at the cap is allowed
    alone = PageBudget(10)  # smaller than any page
    assert alone.admit(entries[0]) and not alone.admit(entries[1])


# -- through the HTTP API, on the fake -----------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def capped() -> FakeLogService:
    return FakeLogService(
        limits=Limits(max_entry_bytes=ENTRY_BYTES, max_batch_bytes=64 << 10, max_response_bytes=CAP)
    )


@pytest.fixture
async def capped_client(capped: FakeLogService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(capped))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def _append(fake: FakeLogService, log: str, values: list[bytes]) -> None:
    await fake.append(AppendRequest(log, tuple(NewEntry(v) for v in values)))


@pytest.mark.anyio
async def test_range_pages_stop_at_the_cap_and_next_offset_resumes(
    capped: FakeLogService, capped_client: httpx.AsyncClient
) -> None:
    values = [_value(i, ENTRY_BYTES) for i in range(40)]
    await _append(capped, "big", values[:20])
    await _append(capped, "big", values[20:])
    seen: list[int] = []
    start = 0
    pages = 0
    while start < 40:
        r = await capped_client.get(f"/v1/logs/big/entries?from={start}&limit=100")
        assert r.status_code == 200
        assert len(r.content) <= CAP
        page = r.json()
        offsets = [e["offset"] for e in page["entries"]]
        assert offsets and offsets[0] == start
        assert page["next_offset"] == offsets[-1] + 1
        if page["next_offset"] < 40:  # the cap ended it: one more entry would not fit
            stored = capped.logs["big"][start : page["next_offset"] + 1]
            assert page_wire_size(stored, page["next_offset"] + 1) > CAP
        seen += offsets
        start = page["next_offset"]
        pages += 1
    assert seen == list(range(40))
    assert pages >= 40 * ENTRY_BYTES // CAP  # the cap, not the limit, cut the pages
    r = await capped_client.get("/v1/logs/big/entries?from=40")
    assert r.json() == {"entries": [], "next_offset": 40}


@pytest.mark.anyio
async def test_limit_still_applies_below_the_cap(
    capped: FakeLogService, capped_client: httpx.AsyncClient
) -> None:
    await _append(capped, "small", [b"1", b"2", b"3"])
    r = await capped_client.get("/v1/logs/small/entries?limit=2")
    assert [e["value"] for e in r.json()["entries"]] == [1, 2]
    assert r.json()["next_offset"] == 2


@pytest.mark.anyio
async def test_an_entry_larger_than_the_cap_comes_alone() -> None:
    # Stored under a larger max_entry_bytes than today's cap allows: still served, alone.
    fake = FakeLogService(limits=Limits(max_response_bytes=2000))
    await _append(fake, "huge", [_value(0, 5000), _value(1, 10)])
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/v1/logs/huge/entries")
        assert [e["offset"] for e in r.json()["entries"]] == [0]
        assert r.json()["next_offset"] == 1
        r = await client.get("/v1/logs/huge/entries?from=1")
        assert [e["offset"] for e in r.json()["entries"]] == [1]


@pytest.mark.anyio
async def test_long_poll_answers_a_capped_page(
    capped: FakeLogService, capped_client: httpx.AsyncClient
) -> None:
    task = asyncio.create_task(capped_client.get("/v1/logs/later/entries?wait=10&limit=100"))
    for _ in range(10_000):  # until the read is parked waiting for an append
        if capped._waiters:
            break
        await asyncio.sleep(0)
    assert capped._waiters, "the long-poll never waited"
    await _append(capped, "later", [_value(i, ENTRY_BYTES) for i in range(30)])
    r = await task
    assert r.status_code == 200 and len(r.content) <= CAP
    page = r.json()
    assert 1 <= len(page["entries"]) < 30
    assert page["next_offset"] == len(page["entries"])


# -- the real LogService over LMDB ---------------------------------------------------------------

NODES = [{"id": "n1", "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"}]


class _CountingState:
    """The state machine, counting read_range calls and optionally trimming after the
    first one (a trim landing between two chunks of one page)."""

    def __init__(self, sm: StateMachine) -> None:
        self.sm = sm
        self.reads: list[tuple[int, int]] = []
        self.trim_after_first_read: int | None = None
        self.index = 0

    def apply(self, command: Any) -> ApplyResult:
        self.index += 1
        return self.sm.apply(self.index, 1, encode(command))

    def read_range(self, log: str, start: int, limit: int) -> list[Entry]:
        self.reads.append((start, limit))
        out = self.sm.read_range(log, start, limit)
        if self.trim_after_first_read is not None and len(self.reads) == 1:
            self.apply(Trim(log, self.trim_after_first_read))
        return out

    def log_info(self, log: str) -> Any:
        return self.sm.log_info(log)


class _StateNode:
    """What LogService.read_range needs of a RaftNode for `any` reads."""

    def __init__(self, state: _CountingState) -> None:
        self.state = state
        self.applied_index = 0
        self.listeners: list[Any] = []

    def add_apply_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def leader_contact_ms(self) -> int:
        return 0

    def known_lag(self) -> int:
        return 0


@pytest.fixture
def state(tmp_path: Path) -> Iterator[_CountingState]:
    with StateMachine(tmp_path / "state", durability="os") as sm:
        yield _CountingState(sm)


def _service(tmp_path: Path, state: _CountingState) -> tuple[LogService, _StateNode]:
    config = config_from_mapping(
        {
            "cluster": {"nodes": NODES},
            "node": {"max_entry_bytes": ENTRY_BYTES, "max_response_bytes": CAP},
        },
        node_id="n1",
        data_dir=tmp_path,
    )
    node = _StateNode(state)
    return LogService(node, config), node  # type: ignore[arg-type]


def _append_cmd(log: str, values: list[bytes]) -> Append:
    return Append(log, tuple(AppendEntry(v) for v in values), 1)


def test_service_limits_carry_the_configured_cap(tmp_path: Path, state: _CountingState) -> None:
    service, _ = _service(tmp_path, state)
    assert service.limits.max_response_bytes == CAP


@pytest.mark.anyio
async def test_service_pages_stop_at_the_cap(tmp_path: Path, state: _CountingState) -> None:
    service, _ = _service(tmp_path, state)
    state.apply(_append_cmd("big", [_value(i, ENTRY_BYTES) for i in range(50)]))
    stored = state.sm.read_range("big", 0, 100)
    page = await service.read_range("big", 0, 100, ANY)
    n = len(page.entries)
    assert 1 <= n < 50
    assert [e.offset for e in page.entries] == list(range(n))
    assert page.next_offset == n
    assert page_wire_size(page.entries, n) <= CAP < page_wire_size(stored[: n + 1], n + 1)
    # the whole log, page by page, exactly once and in order
    offsets: list[int] = []
    start = 0
    while True:
        page = await service.read_range("big", start, 100, ANY)
        if not page.entries:
            break
        assert page_wire_size(page.entries, page.next_offset) <= CAP
        offsets += [e.offset for e in page.entries]
        start = page.next_offset
    assert offsets == list(range(50))


@pytest.mark.anyio
async def test_service_reads_in_chunks_and_stops_reading_at_the_cap(
    tmp_path: Path, state: _CountingState
) -> None:
    service, _ = _service(tmp_path, state)
    small = [b"%d" % i for i in range(READ_CHUNK_ENTRIES + 5)]
    state.apply(_append_cmd("mix", small + [_value(i, ENTRY_BYTES) for i in range(200)]))
    page = await service.read_range("mix", 0, 10_000, ANY)
    assert [e.offset for e in page.entries] == list(range(len(page.entries)))
    assert len(small) < len(page.entries) < len(small) + 200
    assert page_wire_size(page.entries, page.next_offset) <= CAP
    # entries were taken a chunk at a time, and not one chunk past the cap
    assert all(limit <= READ_CHUNK_ENTRIES for _, limit in state.reads)
    assert len(state.reads) * READ_CHUNK_ENTRIES < len(page.entries) + 2 * READ_CHUNK_ENTRIES


@pytest.mark.anyio
async def test_service_limit_and_end_of_log(tmp_path: Path, state: _CountingState) -> None:
    service, _ = _service(tmp_path, state)
    state.apply(_append_cmd("few", [b"1", b"2", b"3"]))
    page = await service.read_range("few", 1, 1, ANY)
    assert ([e.offset for e in page.entries], page.next_offset) == ([1], 2)
    page = await service.read_range("few", 0, 100, ANY)
    assert ([e.offset for e in page.entries], page.next_offset) == ([0, 1, 2], 3)
    page = await service.read_range("few", 3, 100, ANY)
    assert (page.entries, page.next_offset) == ([], 3)


@pytest.mark.anyio
async def test_service_page_never_skips_over_a_concurrent_trim(
    tmp_path: Path, state: _CountingState
) -> None:
    service, _ = _service(tmp_path, state)
    state.apply(_append_cmd("t", [b"%d" % i for i in range(3 * READ_CHUNK_ENTRIES)]))
    # a trim lands after the first chunk: the page ends there instead of jumping ahead
    state.trim_after_first_read = 2 * READ_CHUNK_ENTRIES
    page = await service.read_range("t", 0, 10_000, ANY)
    assert [e.offset for e in page.entries] == list(range(READ_CHUNK_ENTRIES))
    assert page.next_offset == READ_CHUNK_ENTRIES
    with pytest.raises(Trimmed) as trimmed:
        await service.read_range("t", page.next_offset, 10_000, ANY)
    assert trimmed.value.details == {"first_offset": 2 * READ_CHUNK_ENTRIES}


@pytest.mark.anyio
async def test_service_long_poll_answers_a_capped_page(
    tmp_path: Path, state: _CountingState
) -> None:
    service, node = _service(tmp_path, state)
    await service.start()
    try:
        task = asyncio.create_task(service.read_range("later", 0, 100, ANY, wait_s=10))
        for _ in range(10_000):  # until the first (empty) read happened
            if state.reads:
                break
            await asyncio.sleep(0)
        assert state.reads, "the long-poll never read"
        result = state.apply(_append_cmd("later", [_value(i, ENTRY_BYTES) for i in range(30)]))
        for listener in node.listeners:
            listener(state.index, result)
        page = await asyncio.wait_for(task, 10)
    finally:
        await service.close()
    assert 1 <= len(page.entries) < 30
    assert page_wire_size(page.entries, page.next_offset) <= CAP
    assert page.next_offset == len(page.entries)
