"""The table's maths: min/median/max, ratios per repetition, and the met? verdicts."""

from __future__ import annotations

import pytest

from raftlog.bench.report import ROWS, RowSpec, Spread, build_row, ratios, render_table, verdict

pytestmark = pytest.mark.unit

THROUGHPUT = next(r for r in ROWS if r.name.startswith("single appends"))
P50 = next(r for r in ROWS if r.name.startswith("p50"))
FAILOVER = next(r for r in ROWS if r.name.startswith("failover"))
SYNC_CLIENT = next(r for r in ROWS if r.name.startswith("sync Client"))


def test_spread_is_min_median_max() -> None:
    s = Spread.of([3.0, 1.0, 2.0, 10.0])
    assert s is not None
    assert (s.low, s.median, s.high, s.count) == (1.0, 2.5, 10.0, 4)
    assert Spread.of([]) is None


def test_ratios_pair_by_repetition_and_skip_what_one_side_lacks() -> None:
    raftlog = {0: 100.0, 1: 300.0, 2: 50.0}
    etcd = {0: 200.0, 2: 0.0, 3: 10.0}  # rep 1 invalid on etcd, rep 2 a zero baseline
    assert ratios(raftlog, etcd) == [0.5]


def test_the_ratio_spread_is_of_the_per_repetition_ratios_not_of_the_medians() -> None:
    row = build_row(THROUGHPUT, {0: 100.0, 1: 400.0, 2: 300.0}, {0: 1000.0, 1: 400.0, 2: 600.0})
    assert row.ratio is not None
    assert (row.ratio.low, row.ratio.median, row.ratio.high) == (0.1, 0.5, 1.0)
    # the median of the raw figures would give 300 / 600 = 0.5 too, but the extremes differ
    assert row.subject is not None and row.subject.median == 300.0


@pytest.mark.parametrize(
    ("median_ratio", "expected"), [(1.2, "goal"), (1.0, "goal"), (0.7, "floor"), (0.59, "no")]
)
def test_throughput_rows_meet_a_target_at_or_above_it(median_ratio: float, expected: str) -> None:
    assert verdict(THROUGHPUT, None, Spread.of([median_ratio])) == expected


@pytest.mark.parametrize(
    ("median_ratio", "expected"), [(1.5, "goal"), (2.0, "floor"), (2.5, "floor"), (2.6, "no")]
)
def test_latency_rows_meet_a_target_at_or_below_it(median_ratio: float, expected: str) -> None:
    assert verdict(P50, None, Spread.of([median_ratio])) == expected


def test_failover_floor_is_raftlogs_own_seconds_and_goal_the_ratio_to_etcd() -> None:
    fast_but_slower_than_etcd = build_row(FAILOVER, {0: 1.5, 1: 1.9}, {0: 1.0, 1: 1.2})
    assert fast_but_slower_than_etcd.met == "floor"
    quicker_than_etcd = build_row(FAILOVER, {0: 1.5}, {0: 2.0})
    assert quicker_than_etcd.met == "goal"
    too_slow = build_row(FAILOVER, {0: 2.5}, {0: 3.0})  # beats etcd, misses the 2 s floor
    assert too_slow.met == "no"
    alone = build_row(FAILOVER, {0: 1.5}, {})  # etcd not run: the floor still judges
    assert alone.met == "floor"


def test_nothing_to_compare_is_n_a() -> None:
    assert build_row(THROUGHPUT, {0: 100.0}, {}).met == "n/a"
    assert build_row(SYNC_CLIENT, {0: 100.0}, {0: 200.0}).met == "n/a"  # no targets


def test_the_table_has_one_line_per_row_and_says_why_one_is_empty() -> None:
    rows = [build_row(spec, {0: 10.0}, {0: 20.0}) for spec in ROWS[:-1]]
    rows.append(build_row(ROWS[-1], {}, {}, note="client rows skipped"))
    table = render_table(rows).splitlines()
    assert len(table) == 2 + len(ROWS)
    assert table[0].startswith("| workload | raftlog min/median/max |")
    assert "0.50x/0.50x/0.50x" in table[2]
    assert "- (client rows skipped)" in table[-1]
    batch = next(line for line in table if line.startswith("| batched"))
    assert "entries/s" in batch and "puts/s" in batch
    failover = next(line for line in table if line.startswith("| failover"))
    assert "<= 2 s" in failover and "<= 1x" in failover


def test_etcd_columns_say_it_was_not_run() -> None:
    row = build_row(THROUGHPUT, {0: 10.0}, {})
    assert "- (etcd not run)" in render_table([row])


def test_targets_are_those_of_the_issue() -> None:
    by_name = {r.name.split(",")[0].split(" (")[0]: r for r in ROWS}
    expected: dict[str, tuple[float | None, float | None]] = {
        "single appends ack=quorum": (0.6, 1.0),
        "batched appends": (10.0, 20.0),
        "quorum reads": (0.6, 1.0),
        "any reads": (0.9, 1.2),
        "p50 latency": (2.5, 1.5),
        "p99 latency": (3.0, 1.5),
        "AsyncClient": (None, 0.8),
    }
    for name, (floor, goal) in expected.items():
        spec: RowSpec = by_name[name]
        assert (spec.floor, spec.goal) == (floor, goal), name
    assert FAILOVER.floor_seconds == 2.0 and FAILOVER.goal == 1.0
