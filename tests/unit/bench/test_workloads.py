"""Workloads: what each system is sent, and the leader-change check around every point."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pytest

from raftlog.bench.clusters import READ_KEYS, VALUE_BYTES, Leadership, value_text
from raftlog.bench.workloads import (
    ANY_READ,
    APPEND,
    BATCH,
    BATCH_SIZE,
    QUORUM_READ,
    Measure,
    Point,
    PointResult,
    leadership_unchanged,
    requests_for,
    run_point,
    steady_points,
)

pytestmark = pytest.mark.unit


def test_values_are_100_bytes_on_both_systems() -> None:
    assert len(value_text().encode()) == VALUE_BYTES
    raftlog = json.loads(requests_for("raftlog", APPEND).bodies[0])
    assert raftlog == {"value": value_text()}
    etcd = json.loads(requests_for("etcd", APPEND).bodies[0])
    assert base64.b64decode(etcd["value"]) == value_text().encode()
    assert requests_for("etcd", APPEND).paths == ("/v3/kv/put",)


def test_a_batch_carries_100_entries_of_the_same_value() -> None:
    spec = requests_for("raftlog", BATCH)
    entries = json.loads(spec.bodies[0])["entries"]
    assert len(entries) == BATCH_SIZE == 100
    assert {e["value"] for e in entries} == {value_text()}
    with pytest.raises(ValueError):
        requests_for("etcd", BATCH)


def test_reads_pick_among_the_prefilled_entries_at_each_consistency() -> None:
    quorum = requests_for("raftlog", QUORUM_READ)
    assert len(quorum.paths) == READ_KEYS
    assert quorum.paths[7] == "/v1/logs/bench-read/entries/7?consistency=quorum"
    assert requests_for("raftlog", ANY_READ).paths[0].endswith("?consistency=any")
    linearizable = [json.loads(b) for b in requests_for("etcd", QUORUM_READ).bodies]
    serializable = [json.loads(b) for b in requests_for("etcd", ANY_READ).bodies]
    assert len(linearizable) == len(serializable) == READ_KEYS
    assert all("serializable" not in b for b in linearizable)
    assert all(b["serializable"] is True for b in serializable)
    assert base64.b64decode(linearizable[5]["key"]) == b"bench-read-0005"


def test_etcd_has_no_batch_point_and_both_have_the_curve() -> None:
    raftlog = [p.key for p in steady_points("raftlog")]
    etcd = [p.key for p in steady_points("etcd")]
    assert raftlog == [
        "append@1", "append@4", "append@16", "append@64", "append@32",
        "batch@16", "quorum_read@16", "any_read@6x3",
    ]  # fmt: skip
    assert etcd == [k for k in raftlog if k not in ("batch@16", "append@32")]


def test_leadership_must_be_known_and_the_same_leader_and_term() -> None:
    a1 = Leadership("n1", 1)
    assert leadership_unchanged(a1, Leadership("n1", 1))
    assert not leadership_unchanged(a1, Leadership("n1", 2))  # re-elected: still a change
    assert not leadership_unchanged(a1, Leadership("n2", 1))
    assert not leadership_unchanged(a1, None)
    assert not leadership_unchanged(None, a1)


@dataclass
class FakeSystem:
    """Reports the leaderships of ``views`` in turn, one per ``leadership()`` call."""

    views: list[Leadership | None]
    name: str = "raftlog"
    urls: dict[str, str] = field(
        default_factory=lambda: {f"n{i}": f"http://127.0.0.1:{9000 + i}" for i in (1, 2, 3)}
    )
    waits: int = 0

    def leadership(self) -> Leadership | None:
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]

    def wait_ready(self, timeout: float) -> None:
        self.waits += 1

    def check_alive(self) -> None:
        pass


def _measure(seen: list[list[str]]) -> Measure:
    def measure(urls: list[str]) -> PointResult:
        seen.append(urls)
        return PointResult("raftlog", "append@64", 0, 0, False, None, None, 100.0, 1.0, 2.0)

    return measure


def test_a_steady_point_goes_to_the_leader_and_is_valid_without_a_change() -> None:
    system = FakeSystem([Leadership("n2", 3)])
    seen: list[list[str]] = []
    attempts: list[PointResult] = []
    result = run_point(
        system, Point(APPEND, 64), _measure(seen), repetition=2, retries=2, attempts=attempts
    )
    assert result.valid and result.repetition == 2 and result.attempt == 0
    assert seen == [["http://127.0.0.1:9002"]]
    assert attempts == [result]


def test_spread_points_go_to_every_member() -> None:
    seen: list[list[str]] = []
    run_point(
        FakeSystem([Leadership("n1", 1)]), Point(ANY_READ, 6, spread=True), _measure(seen),
        repetition=0, retries=0, attempts=[],
    )  # fmt: skip
    assert seen == [[f"http://127.0.0.1:{9000 + i}" for i in (1, 2, 3)]]


def test_a_point_with_a_leader_change_is_redone_and_every_attempt_kept() -> None:
    # before/after of attempt 0: n1@1 -> n2@2 (invalid); attempt 1: n2@2 -> n2@2
    system = FakeSystem([Leadership("n1", 1), Leadership("n2", 2), Leadership("n2", 2)])
    seen: list[list[str]] = []
    attempts: list[PointResult] = []
    result = run_point(
        system, Point(APPEND, 64), _measure(seen), repetition=0, retries=2, attempts=attempts
    )
    assert [a.valid for a in attempts] == [False, True]
    assert result is attempts[1] and result.attempt == 1
    assert seen == [["http://127.0.0.1:9001"], ["http://127.0.0.1:9002"]]
    assert attempts[0].before == Leadership("n1", 1) and attempts[0].after == Leadership("n2", 2)


def test_after_the_retries_the_last_invalid_attempt_is_reported() -> None:
    views: list[Leadership | None] = [Leadership("n1", t) for t in range(1, 10)]
    attempts: list[PointResult] = []
    result = run_point(
        FakeSystem(views),
        Point(APPEND, 1),
        _measure([]),
        repetition=0,
        retries=1,
        attempts=attempts,
    )
    assert not result.valid
    assert len(attempts) == 2 and result is attempts[-1]
