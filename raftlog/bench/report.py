"""The table of a benchmark run: figures per repetition, min/median/max, ratios, targets.

Contracts:

* ``Spread.of(values)`` is min/median/max of the values (``None`` for none).
* ``ratios(subject, baseline)`` pairs figures keyed by repetition (or failover trial):
  one ratio per key both have, skipping a zero baseline; a repetition that was
  invalid on one side yields no ratio.
* A ``RowSpec`` says which figure of which point each side uses, and its targets:
  ``higher`` rows (throughput) meet a target when the median ratio is >= it, lower
  rows (latency, failover) when it is <= it. ``floor_seconds`` (failover) is a bound on
  raftlog's own median instead of a ratio floor; its goal is the ratio (<= etcd).
  ``verdict`` is "goal", "floor", "no", or "n/a" when there is nothing to compare.
* ``render_table`` is a Markdown table, one line per row of ``ROWS`` (a row without
  figures says why), so it pastes into docs as printed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ROWS",
    "Row",
    "RowSpec",
    "Spread",
    "build_row",
    "ratios",
    "render_table",
    "verdict",
]


@dataclass(frozen=True, slots=True)
class Spread:
    """min / median / max of some figures."""

    low: float
    median: float
    high: float
    count: int

    @staticmethod
    def of(values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return Spread(min(values), statistics.median(values), max(values), len(values))

    def text(self, unit: str) -> str:
        return "/".join(_fmt(v, unit) for v in (self.low, self.median, self.high))


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit in ("ms", "s"):
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:,.0f}"


def ratios(subject: Mapping[int, float], baseline: Mapping[int, float]) -> list[float]:
    """One ratio per repetition (or trial) both sides have, where the baseline is > 0,
    in repetition order."""
    return [subject[k] / baseline[k] for k in sorted(subject) if baseline.get(k, 0) > 0]


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One line of the table: ``subject`` (raftlog's point key and metric) against
    ``baseline`` (etcd's, or for the client rows raftlog's own wrk figure)."""

    name: str
    unit: str  # "ops/s", "entries/s", "ms", "s"
    subject: tuple[str, str]  # (point key, metric) on raftlog
    baseline: tuple[str, str] | None  # (point key, metric)
    baseline_system: str  # "etcd" or "raftlog"
    higher: bool
    floor: float | None
    goal: float | None
    floor_seconds: float | None = None
    baseline_unit: str = ""  # when it differs from ``unit``

    @property
    def baseline_units(self) -> str:
        return self.baseline_unit or self.unit

    def target_text(self, which: str) -> str:
        """The floor or the goal ("floor" / "goal") as the table shows it."""
        if which == "floor" and self.floor_seconds is not None:
            return f"<= {self.floor_seconds:g} s"
        target = self.floor if which == "floor" else self.goal
        if target is None:
            return "-"
        return f"{'>=' if self.higher else '<='} {target:g}x"


ROWS: tuple[RowSpec, ...] = (
    RowSpec("single appends ack=quorum, 64 conn (etcd puts)", "ops/s",
            ("append@64", "ops"), ("append@64", "ops"), "etcd", True, 0.6, 1.0),
    RowSpec("batched appends, 100/request, 16 conn, entries/s (etcd puts/s at 64)",
            "entries/s", ("batch@16", "ops"), ("append@64", "ops"), "etcd", True, 10.0, 20.0,
            baseline_unit="puts/s"),
    RowSpec("quorum reads, 16 conn, leader (etcd linearizable range)", "ops/s",
            ("quorum_read@16", "ops"), ("quorum_read@16", "ops"), "etcd", True, 0.6, 1.0),
    RowSpec("any reads, 6 conn to each of 3 nodes (etcd serializable)", "ops/s",
            ("any_read@6x3", "ops"), ("any_read@6x3", "ops"), "etcd", True, 0.9, 1.2),
    RowSpec("p50 latency, appends, 1 conn", "ms",
            ("append@1", "p50"), ("append@1", "p50"), "etcd", False, 2.5, 1.5),
    RowSpec("p99 latency, appends, 64 conn", "ms",
            ("append@64", "p99"), ("append@64", "p99"), "etcd", False, 3.0, 1.5),
    RowSpec("failover: kill -9 of the leader to first acknowledged write", "s",
            ("failover", "seconds"), ("failover", "seconds"), "etcd", False, None, 1.0,
            floor_seconds=2.0),
    RowSpec("AsyncClient, 32 tasks, appends (vs raftlog wrk at 32)", "ops/s",
            ("async_client@32", "ops"), ("append@32", "ops"), "raftlog", True, None, 0.8),
    RowSpec("sync Client, 1 thread, appends (vs raftlog wrk at 1)", "ops/s",
            ("sync_client@1", "ops"), ("append@1", "ops"), "raftlog", True, None, None),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    spec: RowSpec
    subject: Spread | None
    baseline: Spread | None
    ratio: Spread | None
    met: str
    note: str = ""


def _meets(spec: RowSpec, ratio: float, target: float) -> bool:
    return ratio >= target if spec.higher else ratio <= target


def verdict(spec: RowSpec, subject: Spread | None, ratio: Spread | None) -> str:
    """One of "goal", "floor", "no", "n/a" (module docstring); judged on medians."""
    if spec.floor_seconds is not None:
        if subject is None:
            return "n/a"
        floor_ok = subject.median <= spec.floor_seconds
        goal_ok = (
            ratio is not None and spec.goal is not None and _meets(spec, ratio.median, spec.goal)
        )
        if goal_ok and floor_ok:
            return "goal"
        return "floor" if floor_ok else "no"
    if ratio is None or (spec.floor is None and spec.goal is None):
        return "n/a"
    if spec.goal is not None and _meets(spec, ratio.median, spec.goal):
        return "goal"
    if spec.floor is not None and _meets(spec, ratio.median, spec.floor):
        return "floor"
    return "no"


def build_row(
    spec: RowSpec, subject: Mapping[int, float], baseline: Mapping[int, float], note: str = ""
) -> Row:
    """The row from raw figures keyed by repetition (or failover trial)."""
    s, b = Spread.of(list(subject.values())), Spread.of(list(baseline.values()))
    r = Spread.of(ratios(subject, baseline))
    return Row(spec, s, b, r, verdict(spec, s, r), note)


def render_table(rows: Sequence[Row]) -> str:
    """The Markdown table (module docstring)."""
    lines = [
        "| workload | raftlog min/median/max | baseline min/median/max | ratio per repetition "
        "min/median/max | floor | goal | met? |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        spec = row.spec
        unit = spec.unit
        subject = row.subject.text(unit) + f" {unit}" if row.subject else f"- ({row.note})"
        if row.baseline is not None:
            baseline = f"{spec.baseline_system}: {row.baseline.text(unit)} {spec.baseline_units}"
        elif spec.baseline_system == "etcd":
            baseline = "- (etcd not run)"
        else:
            baseline = "-"
        ratio = row.ratio.text("ratio") if row.ratio else "-"
        lines.append(
            f"| {spec.name} | {subject} | {baseline} | {ratio} | "
            f"{spec.target_text('floor')} | {spec.target_text('goal')} | {row.met} |"
        )
    return "\n".join(lines)
