"""What a run collected becomes rows, curves, CDFs, JSON and plots; invalid points never count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftlog.bench.clusters import Leadership
from raftlog.bench.collect import Collected
from raftlog.bench.failover import FailoverResult
from raftlog.bench.report import ROWS
from raftlog.bench.runner import BenchOptions
from raftlog.bench.workloads import PointResult

pytestmark = pytest.mark.unit

LEAD = Leadership("n1", 1)


def _point(system: str, key: str, rep: int, ops: float, valid: bool = True) -> PointResult:
    return PointResult(
        system, key, rep, 0, valid, LEAD, LEAD if valid else Leadership("n2", 2),
        ops, 2.0, 9.0, [(50.0, 2.0), (99.0, 9.0)], [{"ok_per_s": ops}],
    )  # fmt: skip


def _collected(tmp_path: Path) -> Collected:
    out = Collected(BenchOptions(json_path=tmp_path / "b.json", plots_dir=None))
    for rep, (r, e) in enumerate([(100.0, 1000.0), (300.0, 600.0)]):
        out.attempts.append(_point("raftlog", "append@64", rep, r))
        out.attempts.append(_point("etcd", "append@64", rep, e))
    out.attempts.append(_point("raftlog", "append@64", 1, 99_999.0, valid=False))
    out.failovers.append(FailoverResult("raftlog", 0, "n1", 1, 1.5, 10, "n2"))
    out.failovers.append(FailoverResult("etcd", 0, "m1", 2, 1.0, 3, "m2"))
    return out


def test_invalid_points_are_left_out_of_the_figures(tmp_path: Path) -> None:
    out = _collected(tmp_path)
    assert out.figures("raftlog", "append@64", "ops") == {0: 100.0, 1: 300.0}
    assert out.figures("etcd", "failover", "seconds") == {0: 1.0}


def test_rows_and_json_carry_ratios_per_repetition(tmp_path: Path) -> None:
    out = _collected(tmp_path)
    lines: list[str] = []
    out.report(lines.append)
    data = json.loads((tmp_path / "b.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {spec.name for spec in ROWS}
    single = rows[ROWS[0].name]
    assert single["ratios"] == [0.1, 0.5]
    assert single["ratio"] == {"min": 0.1, "median": 0.3, "max": 0.5}
    assert single["met"] == "no"
    assert rows[ROWS[1].name]["note"] == "not run"  # no batch point was collected
    assert data["invalid_points"] == 1
    assert any("leader change" in n for n in data["notes"])
    assert data["table"] in "\n".join(lines)
    assert data["options"]["repeat"] == 3  # numbers stay numbers
    assert data["curves"]["raftlog appends"]["64"] == [100.0, 200.0, 300.0]


def test_the_cdf_is_that_of_the_median_repetition(tmp_path: Path) -> None:
    out = _collected(tmp_path)
    out.attempts.append(_point("raftlog", "append@64", 2, 200.0))
    out.attempts[-1].percentiles_ms = [(50.0, 42.0)]
    assert out.cdfs()["raftlog appends, 64 conn"] == [(50.0, 42.0)]


def test_plots_are_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="matplotlib not installed: pip install 'raftlog[bench]'"
    )
    from raftlog.bench.plots import render_plots

    out = _collected(tmp_path)
    paths = render_plots(out.curves(), out.cdfs(), tmp_path / "plots")
    assert [p.name for p in paths] == ["throughput_vs_connections.png", "latency_cdf.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_commands_in_the_json_name_no_path_of_this_machine(tmp_path: Path) -> None:
    import sys

    class Cluster:
        name = "raftlog"
        urls = {"n1": "http://127.0.0.1:1"}

        def command(self, member: str) -> list[str]:
            return [sys.executable, "-m", "raftlog", "serve", "--data-dir", str(tmp_path / member)]

    out = _collected(tmp_path)
    out.describe(Cluster(), tmp_path)
    command = out.systems["raftlog"]["commands"]["n1"]
    assert command == ["python", "-m", "raftlog", "serve", "--data-dir", "$BENCH_DIR/n1"]
