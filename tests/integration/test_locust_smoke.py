"""CI smoke of the Locust load test (correctness, not speed): ``loadtests/run.py`` runs
the mixed profile headless for 20 s against the local 3-node cluster it starts itself,
and ends with zero failures, the presence check passing, its reports written, and the
cluster's data removed.

The figures it prints are not asserted (the CI machine is shared and small).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RUN_TIMEOUT_S = 90.0  # 20 s of load + cluster start, stop and the read-back
STOP_GRACE_S = 25.0  # run.py stops its nodes on SIGTERM (10 s each at worst, in parallel)


def run_load(out: Path, tmpdir: Path) -> tuple[int, str]:
    cmd = [sys.executable, str(REPO / "loadtests" / "run.py"), "--time", "20s", "--users", "8"]
    cmd += ["--spawn-rate", "8", "--profile", "mixed", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTLOG_")}
    env["TMPDIR"] = str(tmpdir)  # the local cluster's data dir goes here, and must go away
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # run.py stops what it started, then exits
        try:
            output, _ = proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        pytest.fail(f"loadtests/run.py did not finish within {RUN_TIMEOUT_S:g} s:\n{output}")
    return proc.returncode, output


def test_a_20_second_mixed_run_has_no_failures_and_loses_nothing(tmp_path: Path) -> None:
    out, tmpdir = tmp_path / "load", tmp_path / "tmp"
    tmpdir.mkdir()
    code, output = run_load(out, tmpdir)
    assert code == 0, output
    assert "RESULT: ok" in output, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True
    assert summary["locust_exit_code"] == 0
    assert summary["failures"] == 0, summary["failure_list"]
    assert summary["exceptions"] == 0, summary["exception_list"]
    presence = summary["presence"]
    assert presence["ok"] is True, presence["violations"]
    assert presence["acknowledged_checked"] > 0
    names = {row["name"] for row in summary["stats"] if row["requests"] > 0}
    expected = {f"append ack={a}" for a in ("leader", "quorum", "all")} | {"tail wait=2s"}
    assert expected <= names, names
    assert any(n.startswith("read consistency=") or n.startswith("head ") for n in names)
    for name in ("locust_stats.csv", "locust_failures.csv", "locust_stats_history.csv"):
        assert (out / name).stat().st_size > 0, name
    assert "<html" in (out / "report.html").read_text(errors="replace").lower()
    assert "stopped the local cluster" in output
    assert list(tmpdir.iterdir()) == []  # the cluster's data removed
