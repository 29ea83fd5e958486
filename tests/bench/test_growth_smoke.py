"""Smoke of ``raftlog bench --growth`` at tiny sizes (correctness, not figures).

Runs the verb as a user does (a subprocess, bounded), then checks that it printed the
growth table with every row, wrote JSON carrying every figure with plausible values
(RSS of a running Python node, positive latencies, a catch-up and a snapshot install
that happened), and left none of the processes it reports running. Without wrk the
read rows cannot be measured: skipped, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.timeout(360)]

RUN_TIMEOUT_S = 300  # about 50 s on a quiet 2-core machine
ROW_NAMES = [
    "RSS per node, max, MB",
    "RSS anon per node, max, MB",
    "RSS file-backed (LMDB map), max, MB",
    "read by offset, any, p50, ms",
    "read by offset, any, p99, ms",
    "read by offset, leader, p50, ms",
    "read by offset, leader, p99, ms",
    "Raft journal per node (held in memory too), max, MB",
    "data dir per node, max, MB",
    "fill rate, entries/s",
    "catch-up, 2k behind, entries/s",
    "snapshot ",
]


def _leftovers(pids: list[int]) -> list[str]:
    left = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone
        if "raftlog" in cmdline or "wrk" in cmdline:
            left.append(f"{pid}: {cmdline}")
    return left


def test_growth_mode_prints_every_row_and_writes_json(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package wrk): the read rows cannot run")
    out_json = tmp_path / "growth.json"
    argv = [
        sys.executable, "-m", "raftlog", "bench", "--growth",
        "--growth-entries", "2k,6k", "--growth-catchup", "2000", "--duration", "1",
        "--json", str(out_json),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # it stops its cluster, then exits
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pytest.fail(f"raftlog bench --growth ran over {RUN_TIMEOUT_S} s:\n{out[-3000:]}")
    print(out[-4000:])
    assert proc.returncode == 0, out[-4000:]

    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| cost as the work grows | 2k | 6k |"), table
    assert len(table) == 2 + len(ROW_NAMES), table
    for name in ROW_NAMES:
        assert any(line.startswith(f"| {name}") for line in table[2:]), name

    data = json.loads(out_json.read_text())
    assert [s["entries"] for s in data["stages"]] == [2000, 6000]
    for stage in data["stages"]:
        assert stage["fill_s"] > 0
        assert {r["consistency"] for r in stage["reads"]} == {"any", "leader"}
        for read in stage["reads"]:
            assert 0 < read["p50_ms"] <= read["p99_ms"] < 5000, read
            assert read["requests"] > 0
        assert len(stage["nodes"]) == 3
        for node in stage["nodes"].values():
            rss = node["rss_kb"]
            assert 10_000 < rss["VmRSS"] < 4_000_000, rss  # a Python node: 10 MB .. 4 GB
            assert rss["RssAnon"] + rss["RssFile"] <= rss["VmRSS"] + 1024
            assert node["data_dir_bytes"] > node["journal_bytes"] > 0
        assert sorted(n["role"] for n in stage["nodes"].values()) == [
            "follower",
            "follower",
            "leader",
        ]

    catch = data["catchup"]
    assert catch["entries"] == 2000 and catch["seconds"] > 0 and catch["entries_per_s"] > 0
    assert catch["by"] in ("log", "snapshot")

    snap = data["snapshot"]
    assert snap["by"] == "snapshot", snap  # a wiped follower can only catch up by one
    assert snap["snapshot_bytes"] > 0
    assert snap["install_s"] > snap["startup_s"] > 0
    assert len(snap["raw_copy_s"]) == 2 and all(s > 0 for s in snap["raw_copy_s"])
    assert snap["ratio"] is not None and snap["ratio"] > 0

    rows = {row["name"]: row for row in data["rows"]}
    assert len(rows) == len(ROW_NAMES)
    rss_row = rows["RSS per node, max, MB"]
    assert rss_row["ratio"] is not None and rss_row["met"] in (True, False)

    assert _leftovers(data["pids"]) == []
    assert "none left" in out
    removed = re.search(r"removed (\S+)$", out.strip())
    assert removed and not Path(removed.group(1)).exists()
