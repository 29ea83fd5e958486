"""``raftlog demo`` as a user runs it: its narrated figures agree with each other, and it
leaves nothing behind (temp folder, node processes) on success, failure, SIGINT and
SIGTERM, unless ``--keep``, which leaves a reachable cluster and says how to stop it.

Each run gets its own TMPDIR under the test's temp dir, so "nothing left behind" is
"that TMPDIR is empty" plus "no live process mentions the test's temp dir" (the node
processes name their data dirs on their command lines).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc"),
]

RUN_TIMEOUT_S = 180.0


class DemoRun:
    """One ``python -m raftlog demo`` child; its output is collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "raftlog", "demo", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # EOF marker
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self._lines):
                if self._lines and self._lines[-1] == "":
                    raise AssertionError(f"demo ended without printing {text!r}:\n{self.output}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {text!r} within {timeout:g} s:\n{self.output}")
                self._changed.wait(left)

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code


def _state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie), None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def _processes_mentioning(marker: str) -> list[int]:
    """Live processes (not this one) whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


@contextlib.contextmanager
def demo_env(tmp_path: Path, **extra: str) -> Iterator[tuple[dict[str, str], Path]]:
    """An environment whose TMPDIR is a fresh empty dir; on the way out, SIGKILL any
    process still naming ``tmp_path`` (started by the demo this test ran), so a failing
    test leaves nothing running either."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTLOG_")}
    env.update(TMPDIR=str(tmpdir), **extra)
    try:
        yield env, tmpdir
    finally:
        for pid in _processes_mentioning(str(tmp_path)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _started_pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"^  started n\d.*\(pid (\d+)\)$", output, re.M)]


def assert_nothing_left(output: str, tmpdir: Path, tmp_path: Path) -> None:
    assert list(tmpdir.iterdir()) == [], output
    assert _processes_mentioning(str(tmp_path)) == [], output
    pids = _started_pids(output)
    assert pids, output
    assert [p for p in pids if _alive(p)] == [], output


def test_demo_runs_to_completion_its_figures_agree_and_nothing_is_left(tmp_path: Path) -> None:
    with demo_env(tmp_path) as (env, tmpdir):
        run = DemoRun([], env)
        code = run.wait()
        out = run.output
        assert code == 0, out
        assert "All checks passed." in out and "[FAILED]" not in out, out
        assert "cluster_secret" in out
        assert re.search(r"^raftlog demo: a 3-node cluster in (.+)$", out, re.M), out
        # Every narrated figure agrees with what the demo printed it did.
        appended = re.findall(r"^  appended event-(\d+): offset (\d+), raft index \d+", out, re.M)
        assert [(int(v), int(o)) for v, o in appended] == [(i, i) for i in range(6)], out
        assert "Appending 6 entries through follower" in out
        assert "[ok] 6 of 6 writes acknowledged" in out
        assert out.count(": 6 entries") == 3, out  # quorum, leader and any reads
        assert "Appending 20 entries through" in out
        assert "[ok] 20 of 20 writes acknowledged; 26 in total" in out
        assert re.search(r"caught up .*, 26 entries$", out, re.M), out
        assert "[ok] all 3 nodes hold the same log (26 entries)" in out
        assert "no acknowledged write lost or moved (26 checked)" in out
        assert len(_started_pids(out)) == 4, out  # three nodes, and the old leader again
        assert "stopped the nodes and removed" in out
        assert_nothing_left(out, tmpdir, tmp_path)


def test_a_failing_demo_prints_the_node_logs_and_cleans_up(tmp_path: Path) -> None:
    # Every node refuses this setting at start-up (environment > file), so the tour
    # cannot get past the election: a real failure, no test hook in the demo.
    with demo_env(tmp_path, RAFTLOG_DURABILITY="bogus") as (env, tmpdir):
        run = DemoRun([], env)
        code = run.wait()
        out = run.output
        assert code == 1, out
        assert "DEMO FAILED: n" in out and "exited with 78" in out, out
        assert "last lines of n1's log" in out
        assert "RAFTLOG_DURABILITY must be one of" in out, out  # the cause, from the log
        assert_nothing_left(out, tmpdir, tmp_path)


def test_a_failing_demo_in_a_given_dir_removes_only_its_own_files(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep-me.txt").write_text("not the demo's\n")
    with demo_env(tmp_path, RAFTLOG_DURABILITY="bogus") as (env, tmpdir):
        run = DemoRun(["--dir", str(target)], env)
        code = run.wait()
        out = run.output
        assert code == 1, out
        assert sorted(p.name for p in target.iterdir()) == ["keep-me.txt"], out
        assert_nothing_left(out, tmpdir, tmp_path)
        # A dir that already holds a demo's files is refused before anything starts.
        (target / "n1").mkdir()
        refused = DemoRun(["--dir", str(target)], env)
        assert refused.wait() == 1
        assert "already exists; give --dir an empty folder" in refused.output
        assert sorted(p.name for p in target.iterdir()) == ["keep-me.txt", "n1"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_demo_stops_its_nodes_and_cleans_up(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    with demo_env(tmp_path) as (env, tmpdir):
        run = DemoRun([], env)
        run.wait_for_line("2. Appending", 60)  # the cluster is up and has a leader
        pids = _started_pids(run.output)
        assert len(pids) == 3 and all(_alive(p) for p in pids), run.output
        run.proc.send_signal(sig)  # only the demo: its nodes run in their own sessions
        assert run.wait(60) == code, run.output
        out = run.output
        assert f"interrupted by {sig.name}" in out, out
        assert_nothing_left(out, tmpdir, tmp_path)


def test_demo_keep_leaves_a_reachable_cluster_and_says_how_to_stop_it(tmp_path: Path) -> None:
    with demo_env(tmp_path) as (env, tmpdir):
        run = DemoRun(["--keep"], env)
        code = run.wait()
        out = run.output
        assert code == 0, out
        kept = re.findall(r"^  (n\d): (http://\S+)  pid (\d+)  data (\S+)  log (\S+)$", out, re.M)
        assert [k[0] for k in kept] == ["n1", "n2", "n3"], out
        pids = [int(k[2]) for k in kept]
        stop = re.search(r"^  stop:   kill ([\d ]+)$", out, re.M)
        assert stop is not None and [int(p) for p in stop.group(1).split()] == pids, out
        try:
            for _nid, url, pid, data, log in kept:
                assert _alive(int(pid)), out
                assert Path(data).is_dir() and Path(log).is_file(), out
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                assert data in cmdline  # that PID is the node with that data dir
                entries = httpx.get(
                    f"{url}/v1/logs/demo/entries",
                    params={"from": 0, "consistency": "any", "limit": 1000},
                    timeout=10,
                ).json()["entries"]
                assert len(entries) == 26
            cluster = httpx.get(f"{kept[0][1]}/v1/cluster", timeout=10).json()
            assert cluster["leader"] in {"n1", "n2", "n3"}
            assert len(cluster["nodes"]) == 3
        finally:
            for pid in pids:  # stop them as the demo said: SIGTERM by PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            assert _wait_gone(pids, 30) == []
        root = re.search(r"^  then:   rm -rf (\S+)$", out, re.M)
        assert root is not None and Path(root.group(1)).parent == tmpdir, out
        assert Path(root.group(1)).is_dir()


def test_a_reader_that_goes_away_does_not_stop_the_cleanup(tmp_path: Path) -> None:
    # `raftlog demo | head -1`: stdout breaks after the first line.
    with demo_env(tmp_path) as (env, tmpdir):
        proc = subprocess.Popen(
            [sys.executable, "-m", "raftlog", "demo"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline().decode()
        proc.stdout.close()
        code = proc.wait(RUN_TIMEOUT_S)
        with proc.stderr:
            err = proc.stderr.read().decode()
        assert first.startswith("raftlog demo: a 3-node cluster in "), first
        assert code == 0, err
        assert "BrokenPipeError" not in err, err
        assert list(tmpdir.iterdir()) == []
        assert _processes_mentioning(str(tmp_path)) == []
