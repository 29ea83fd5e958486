"""raftlog.service.fake.FakeLogService follows the contract's semantics."""

from __future__ import annotations

import pytest

from raftlog import errors
from raftlog.service.fake import FakeLogService
from raftlog.service.types import (
    Accepted,
    AppendRequest,
    AppendResult,
    LogServiceProtocol,
    NewEntry,
    ReadOptions,
)

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

ANY = ReadOptions("any")


def _req(log: str, *values: bytes, **kw: object) -> AppendRequest:
    return AppendRequest(log, tuple(NewEntry(v) for v in values), **kw)  # type: ignore[arg-type]


def test_it_is_a_log_service() -> None:
    service: LogServiceProtocol = FakeLogService()
    assert service.is_leader()


async def test_dense_offsets_index_and_term() -> None:
    fake = FakeLogService(term=4)
    first = await fake.append(_req("a", b"1", b"2"))
    second = await fake.append(_req("a", b"3"))
    other = await fake.append(_req("b", b"4"))
    assert first == AppendResult("a", 0, 1, 2, 1, 4)
    assert second == AppendResult("a", 2, 2, 1, 2, 4)
    assert other == AppendResult("b", 0, 0, 1, 3, 4)
    assert [e.offset for e in fake.logs["a"]] == [0, 1, 2]
    assert fake.headers().applied_index == 3


async def test_timestamps_never_decrease_within_a_log() -> None:
    times = iter([500, 100, 700])
    fake = FakeLogService(clock=lambda: next(times))
    for _ in range(3):
        await fake.append(_req("a", b"1"))
    assert [e.timestamp_ms for e in fake.logs["a"]] == [500, 500, 700]


async def test_get_entry_not_found_and_trimmed() -> None:
    fake = FakeLogService()
    await fake.append(_req("a", b"0", b"1", b"2"))
    fake.trim("a", 2)
    assert (await fake.get_entry("a", 2, ANY)).value_json == b"2"
    with pytest.raises(errors.Trimmed) as trimmed:
        await fake.get_entry("a", 1, ANY)
    assert trimmed.value.details == {"first_offset": 2}
    with pytest.raises(errors.OffsetNotFound) as missing:
        await fake.get_entry("a", 3, ANY)
    assert missing.value.details == {"next_offset": 3}
    with pytest.raises(errors.OffsetNotFound):
        await fake.get_entry("nope", 0, ANY)
    assert fake.next_offset("a") == 3  # trimming never reuses offsets
    await fake.append(_req("a", b"3"))
    assert fake.logs["a"][-1].offset == 3


async def test_read_range() -> None:
    fake = FakeLogService()
    await fake.append(_req("a", *[str(i).encode() for i in range(5)]))
    page = await fake.read_range("a", 1, 2, ANY)
    assert [e.offset for e in page.entries] == [1, 2] and page.next_offset == 3
    page = await fake.read_range("a", 9, 2, ANY)
    assert page.entries == [] and page.next_offset == 9
    fake.trim("a", 3)
    with pytest.raises(errors.Trimmed):
        await fake.read_range("a", 0, 10, ANY, wait_s=5)  # refused at once, no wait
    page = await fake.read_range("a", 5, 10, ANY, wait_s=0.02)
    assert page.entries == [] and page.next_offset == 5


async def test_logs_listing_and_metadata() -> None:
    fake = FakeLogService()
    for name in ("b", "a", "c"):
        await fake.append(_req(name, b'"xy"'))
    page = await fake.list_logs(None, 2, ANY)
    assert [i.log for i in page.logs] == ["a", "b"] and page.next_after == "b"
    page = await fake.list_logs("b", 2, ANY)
    assert [i.log for i in page.logs] == ["c"] and page.next_after is None
    info = await fake.get_log("a", ANY)
    assert (info.first_offset, info.next_offset, info.count, info.bytes) == (0, 1, 1, 4)
    with pytest.raises(errors.LogNotFound):
        await fake.get_log("z", ANY)


async def test_expected_offset_and_acks() -> None:
    fake = FakeLogService()
    with pytest.raises(errors.OffsetMismatch) as mismatch:
        await fake.append(_req("a", b"1", expected_offset=1))
    assert mismatch.value.details == {"next_offset": 0}
    assert fake.logs == {} and fake.index == 0
    assert await fake.append(_req("a", b"1", ack="leader")) == Accepted("a")
    assert fake.next_offset("a") == 1
    fake.fully_replicated = False
    with pytest.raises(errors.NotFullyReplicated) as partial:
        await fake.append(_req("a", b"2", ack="all"))
    assert partial.value.details["committed"] is True
    assert partial.value.details["offset"] == 1


async def test_follower_hands_leader_work_over() -> None:
    fake = FakeLogService(leader=False, leader_url_value="http://l")
    with pytest.raises(errors.ServedByLeader) as served:
        await fake.append(_req("a", b"1", ack="all"))
    assert served.value.leader_url == "http://l"
    with pytest.raises(errors.ServedByLeader):
        await fake.get_log("a", ReadOptions("leader"))
    fake.leader_url_value = None
    with pytest.raises(errors.NoLeader):
        await fake.read_range("a", 0, 1, ReadOptions("leader"))
    assert (await fake.append(_req("a", b"1"))).offset == 0  # type: ignore[union-attr]


async def test_min_index_wait_and_timeout() -> None:
    fake = FakeLogService()
    with pytest.raises(errors.ReadTimeout):
        await fake.get_log("a", ReadOptions("any", min_index=1, timeout=0.02))
    await fake.append(_req("a", b"1"))
    assert (await fake.get_log("a", ReadOptions("quorum", min_index=1))).count == 1


async def test_fail_next_is_raised_once_by_operations_only() -> None:
    fake = FakeLogService()
    fake.fail_next = errors.Overloaded("full")
    fake.headers(), fake.is_leader(), fake.leader_url(), fake.live(), fake.ready()
    with pytest.raises(errors.Overloaded):
        await fake.cluster()
    assert (await fake.cluster()).leader == "fake-1"
    assert [name for name, _ in fake.calls] == ["cluster", "cluster"]
