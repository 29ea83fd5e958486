"""AppendGroup through the state machine: each member applied in order with its own
result, a refused member writes nothing and leaves the others applied, the result
survives a restart, and replicas (and a group against the same appends one by one) agree
on the content digest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftlog.commands import GROUP_VERSION, Append, AppendEntry, AppendGroup, SetClusterMeta, encode
from raftlog.state.machine import StateMachine
from raftlog.state.types import (
    Appended,
    ApplyResult,
    GroupApplied,
    Rejected,
    result_from_dict,
)

pytestmark = pytest.mark.unit


def member(log: str, *values: bytes, ts: int = 5, expected: int | None = None) -> Append:
    return Append(log, tuple(AppendEntry(v) for v in values), ts, expected_offset=expected)


def enabled(path: Path) -> StateMachine:
    sm = StateMachine(path, durability="os")
    sm.apply(1, 1, encode(SetClusterMeta(enable_version=GROUP_VERSION)))
    return sm


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[StateMachine]:
    with enabled(tmp_path / "state") as machine:
        yield machine


GROUP = AppendGroup(
    (
        member("a", b"1", b"2"),
        member("b", b"3"),
        member("a", b"4", expected=3),  # a has 0..1: next is 2, so this one is refused
        member("a", b"5", expected=2),  # ...and this one, written after it, holds
        member("a", b"6", ts=1),  # an older clock: its stamp is not older than a's last
    )
)


def test_each_member_gets_its_own_result(sm: StateMachine) -> None:
    result = sm.apply(2, 7, encode(GROUP))
    assert isinstance(result, GroupApplied)
    assert (result.index, result.term) == (2, 7)
    assert result.results == (
        Appended("a", 0, 1, 2, 2, 7, 5),
        Appended("b", 0, 0, 1, 2, 7, 5),
        Rejected(
            "offset_mismatch",
            "log 'a': expected_offset 3 but the next offset is 2",
            {"next_offset": 2},
            2,
        ),
        Appended("a", 2, 2, 1, 2, 7, 5),
        Appended("a", 3, 3, 1, 2, 7, 5),
    )
    values = [(e.offset, e.value_json, e.index, e.term) for e in sm.read_range("a", 0, 10)]
    assert values == [(0, b"1", 2, 7), (1, b"2", 2, 7), (2, b"5", 2, 7), (3, b"6", 2, 7)]
    info = sm.log_info("a")
    assert info is not None and (info.next_offset, info.count) == (4, 4)


def test_a_refused_member_writes_nothing_of_itself(sm: StateMachine) -> None:
    sm.apply(2, 1, encode(member("a", b"0")))
    group = AppendGroup((member("a", b"x", expected=0), member("b", b"y", expected=0)))
    result = sm.apply(3, 1, encode(group))
    assert isinstance(result, GroupApplied)
    first, second = result.results
    assert isinstance(first, Rejected) and first.code == "offset_mismatch"
    assert second == Appended("b", 0, 0, 1, 3, 1, 5)
    assert [e.value_json for e in sm.read_range("a", 0, 10)] == [b"0"]


def test_the_group_result_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state"
    with enabled(path) as sm:
        first = sm.apply(2, 3, encode(GROUP))
    with StateMachine(path, durability="os") as sm:
        assert sm.result_for(2) == first
        assert sm.apply(2, 3, encode(GROUP)) == first  # a replay: nothing changes
        assert sm.log_info("a") is not None and sm.log_info("a").count == 4  # type: ignore[union-attr]


def test_replicas_agree_and_a_group_holds_what_its_members_alone_would(tmp_path: Path) -> None:
    with (
        enabled(tmp_path / "one") as one,
        enabled(tmp_path / "two") as two,
        enabled(tmp_path / "alone") as alone,
    ):
        for sm in (one, two):
            sm.apply(2, 1, encode(GROUP))
        assert one.digest() == two.digest()
        # The same members as their own entries at the same index (one entry each is
        # impossible at one index, so compare what a reader sees, not the digest that
        # covers each entry's Raft index).
        for i, m in enumerate(GROUP.appends):
            alone.apply(2 + i, 1, encode(m))
        for log in ("a", "b"):
            grouped = [(e.offset, e.value_json, e.timestamp_ms) for e in one.read_range(log, 0, 9)]
            single = [(e.offset, e.value_json, e.timestamp_ms) for e in alone.read_range(log, 0, 9)]
            assert grouped == single
            assert one.log_info(log) == alone.log_info(log)


def test_a_group_before_its_version_is_enabled_is_refused_whole(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "state", durability="os") as sm:
        result = sm.apply(1, 1, encode(GROUP))
        assert isinstance(result, Rejected) and result.code == "version_not_enabled"
        assert sm.log_info("a") is None and sm.log_info("b") is None


@pytest.mark.parametrize(
    "result",
    [
        GroupApplied((Appended("a", 0, 1, 2, 9, 2, 5),), 9, 2),
        GroupApplied(
            (
                Rejected("offset_mismatch", "m", {"next_offset": 3}, 4),
                Appended("b", 3, 3, 1, 4, 1, 0),
            ),
            4,
            1,
        ),
    ],
)
def test_group_results_round_trip(result: ApplyResult) -> None:
    assert result_from_dict(result.to_dict()) == result


def test_a_group_result_holds_only_member_results() -> None:
    bad = {
        "type": "group_applied",
        "results": [{"type": "barrier_done", "index": 1}],
        "index": 1,
        "term": 1,
    }
    with pytest.raises(ValueError):
        result_from_dict(bad)
