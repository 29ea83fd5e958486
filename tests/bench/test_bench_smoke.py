"""CI smoke of ``raftlog bench --quick`` (correctness, not speed).

Runs the verb as a user does (a subprocess, bounded), then checks that it printed the
table with every row, wrote well-formed JSON with non-zero raftlog figures (and etcd
figures when etcd is installed), and left none of the processes it reports running.
A second test interrupts a run with SIGINT and checks the same cleanup. Without wrk
nothing can be measured: skipped, saying so. Without etcd the raftlog half is checked
and the test then skips, naming what was not checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftlog.bench.report import ROWS

pytestmark = [pytest.mark.bench, pytest.mark.timeout(420)]

QUICK_TIMEOUT_S = 360  # the quick run takes about a minute on a quiet 2-core machine
WRK_ROWS = [spec for spec in ROWS if not spec.subject[0].startswith(("async", "sync"))]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "raftlog", "bench", *args]


def _require_wrk() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package wrk): raftlog bench cannot run")


def _run_bounded(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the benchmark; past QUICK_TIMEOUT_S it gets SIGTERM (so that it stops its
    clusters, which live in their own sessions) and the test fails."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=QUICK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pytest.fail(f"raftlog bench --quick ran over {QUICK_TIMEOUT_S} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _leftovers(pids: list[int]) -> list[str]:
    """The PIDs still running a benchmark process (a reused PID running something else
    is not a leftover)."""
    left = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone
        if any(word in cmdline for word in ("raftlog", "etcd", "wrk")):
            left.append(f"{pid}: {cmdline}")
    return left


def test_quick_bench_prints_every_row_and_writes_json(tmp_path: Path) -> None:
    _require_wrk()
    out_json = tmp_path / "bench.json"
    plots = tmp_path / "plots"
    started = time.monotonic()
    proc = _run_bounded(_command("--quick", "--json", str(out_json), "--plots", str(plots)))
    elapsed = time.monotonic() - started
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"quick run took {elapsed:.0f} s")

    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(ROWS)
    for spec in ROWS:
        assert any(line.startswith(f"| {spec.name} |") for line in table), spec.name

    data = json.loads(out_json.read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert set(rows) == {spec.name for spec in ROWS}
    for spec in WRK_ROWS:
        figure = rows[spec.name]["raftlog"]
        assert figure is not None and figure["median"] > 0, spec.name
    for spec in ROWS:
        if spec not in WRK_ROWS:  # the Python clients: measured, or skipped with a reason
            assert rows[spec.name]["raftlog"] or rows[spec.name]["note"], spec.name
    valid = [p for p in data["points"] if p["valid"] and p["system"] == "raftlog"]
    assert all(p["raw"] for p in valid)
    assert [f for f in data["failovers"] if f["system"] == "raftlog"]

    pids = data["pids"]
    assert len(pids) >= 3
    assert _leftovers(pids) == []
    assert "none left" in proc.stdout
    removed = re.search(r"removed (\S+)$", proc.stdout.strip())
    assert removed and not Path(removed.group(1)).exists()

    if importlib.util.find_spec("matplotlib") is not None:
        assert (plots / "throughput_vs_connections.png").stat().st_size > 0
        assert (plots / "latency_cdf.png").stat().st_size > 0
    else:
        assert "raftlog[bench]" in proc.stdout

    if data["etcd_skipped"]:
        pytest.skip(f"raftlog half checked; etcd half NOT checked: {data['etcd_skipped']}")
    for spec in WRK_ROWS:
        if spec.baseline_system == "etcd":
            figure = rows[spec.name]["baseline"]
            assert figure is not None and figure["median"] > 0, spec.name
            assert rows[spec.name]["ratio"] is not None, spec.name
    assert [f for f in data["failovers"] if f["system"] == "etcd"]


def test_ctrl_c_stops_every_process_and_removes_the_files(tmp_path: Path) -> None:
    _require_wrk()
    proc = subprocess.Popen(
        _command("--quick", "--no-etcd", "--no-clients"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the SIGINT below reaches the benchmark only
    )
    lines: list[str] = []
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # ends at EOF; bounded by the deadline below
            lines.append(line)
            found = re.search(r"\(pids ([\d, ]+)\)", line)
            if found:
                pids = [int(p) for p in found.group(1).split(", ")]
            if line.startswith("repetition 1"):
                break
            assert time.monotonic() < deadline, "".join(lines)
        assert pids, "".join(lines)
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed assertion above: let it clean up, then kill
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "interrupted (SIGINT)" in output
    assert "none left" in output, output
    assert _leftovers(pids) == []
    removed = re.search(r"removed (\S+)$", output.strip())
    assert removed and not Path(removed.group(1)).exists()
