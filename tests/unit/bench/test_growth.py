"""The pure parts of ``raftlog bench --growth``: stage parsing, the config edit, RSS of
a process tree, the raw loopback copy, and the table built from a result."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from raftlog.bench.growth import (
    GrowthResult,
    _build_rows,
    _set_node_setting,
    copy_over_loopback,
    node_rss,
    parse_stages,
    render_growth_table,
)
from raftlog.cli.local_config import generate_local_config

pytestmark = pytest.mark.unit


def test_parse_stages_takes_suffixes() -> None:
    assert parse_stages("1M,10M") == (1_000_000, 10_000_000)
    assert parse_stages("20k, 200k") == (20_000, 200_000)
    assert parse_stages("1500") == (1500,)
    with pytest.raises(ValueError):
        parse_stages("lots")


def test_set_node_setting_adds_to_the_node_table(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(generate_local_config(3, name="t").toml)
    _set_node_setting(path, "snapshot_min_interval_s", 10)
    assert tomllib.loads(path.read_text())["node"]["snapshot_min_interval_s"] == 10
    with pytest.raises(RuntimeError):
        _set_node_setting(path, "snapshot_min_interval_s", 10)  # never twice


def test_node_rss_counts_children() -> None:
    own = node_rss(os.getpid())
    assert own["VmRSS"] > 0 and own["RssAnon"] > 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with_child = node_rss(os.getpid())
        assert with_child["VmRSS"] > own["VmRSS"]
    finally:
        child.kill()
        child.wait()


def test_copy_over_loopback_copies_every_byte(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 << 20))
    target = tmp_path / "target"
    seconds = copy_over_loopback(source, target, timeout=30.0)
    assert seconds > 0
    assert target.read_bytes() == source.read_bytes()


def _result() -> GrowthResult:
    def stage(entries: int, rss_mb: float, p50: float) -> dict[str, object]:
        node = {
            "rss_kb": {"VmRSS": int(rss_mb * 1024), "RssAnon": 40 * 1024, "RssFile": 1024,
                       "VmHWM": 0},
            "data_dir_bytes": entries * 200,
            "journal_bytes": entries * 100,
            "role": "follower",
        }  # fmt: skip
        reads = [
            {"consistency": c, "p50_ms": p50, "p99_ms": 2 * p50, "ops_per_s": 1.0, "requests": 1}
            for c in ("any", "leader")
        ]
        return {"entries": entries, "appended": entries, "fill_s": 10.0, "reads": reads,
                "nodes": {"n1": node, "n2": node, "n3": node}}  # fmt: skip

    result = GrowthResult(stages=[stage(1_000_000, 100, 1.0), stage(10_000_000, 130, 1.1)])
    result.catchup = {"entries": 1_000_000, "entries_per_s": 50_000.0, "by": "log"}
    result.snapshot = {
        "snapshot_bytes": 1_000_000_000, "install_s": 9.0, "raw_copy_s": [4.0, 6.0],
        "ratio": 1.8, "by": "snapshot",
    }  # fmt: skip
    result.rows = _build_rows(result)
    return result


def test_rows_judge_the_targets() -> None:
    rows = {row["name"]: row for row in _result().rows}
    rss = rows["RSS per node, max, MB"]
    assert rss["ratio"] == pytest.approx(1.3) and rss["met"] is False
    assert rows["RSS anon per node, max, MB"]["met"] is True
    assert rows["read by offset, any, p50, ms"]["met"] is True
    assert rows["catch-up, 1M behind, entries/s (by log)"]["values"] == [50_000.0]
    snap = rows["snapshot 1,000 MB install / raw copy (by snapshot)"]
    assert snap["met"] is True and snap["values"] == [9.0, 5.0]


def test_table_has_a_line_per_row() -> None:
    result = _result()
    lines = render_growth_table(result)
    assert lines[0].startswith("| cost as the work grows | 1M | 10M |")
    assert len(lines) == 2 + len(result.rows)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert any("| 1.30x | last/first <= 1.2 | NO |" in line for line in lines)


def test_a_failed_snapshot_row_says_why() -> None:
    result = _result()
    result.snapshot = None
    result.failure = "timed out after 250 s waiting for n2 to install the snapshot"
    rows = _build_rows(result)
    assert rows[-1]["name"].startswith("snapshot install / raw copy (NOT MEASURED: timed out")
    lines = render_growth_table(GrowthResult(stages=result.stages, rows=rows))
    assert all(line.count("|") == lines[0].count("|") for line in lines)
