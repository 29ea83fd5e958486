"""S16: one node's disk fills up (ENOSPC) or starts failing (EIO) under load.

Contract under test (DESIGN.md, "Fail-stop"): the node whose storage fails logs a
CRITICAL ``FAIL-STOP`` line naming the failure and exits with EXIT_FAIL_STOP (70). It
does not retry, does not corrupt its journal and acknowledges nothing it did not
persist. The other two nodes keep taking writes. Once the disk is repaired and the
node restarted it catches up, and the usual invariants hold (run_scenario checks
I1-I9: no acknowledged write lost, identical replicas, linearizable quorum reads...).

* S16a-disk-full (root: mount): a follower's data dir is moved onto a small tmpfs,
  which is then filled until only DISK_FULL_MARGIN bytes remain.
* S16b-disk-errors (fiu-run/fiu-ctrl from Debian's fiu-utils): a follower runs under
  libfiu's POSIX preload; once it is ready, its syncs (fsync, fdatasync: the journal's
  group commit, raft.meta, LMDB commits), or in the second variant its page writes
  (pwrite, writev: LMDB), start failing with EIO at random. ``write()`` itself is left
  alone: the preload cannot tell the journal's writes from the node's own log lines on
  stderr, and the FAIL-STOP line must get out. The journal's own write() failures are
  covered by tests/unit/test_journal.py and tests/unit/test_node_fail_stop.py.

Each scenario has a fixed seed (printed); RAFTLOG_FAULT_SOAK=1 picks a random one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raftlog.cli.serve import EXIT_FAIL_STOP
from tests.fault.harness.runner import FaultCluster, Outcome, first_ok_write_after, run_scenario

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

SOAK = os.environ.get("RAFTLOG_FAULT_SOAK") == "1"  # set by `pytest --soak` (conftest)

TMPFS_SIZE = "64m"
# Free bytes left on the tmpfs: the node's next few hundred journal records and LMDB
# pages need more than this, so it hits ENOSPC within seconds under the workers' load.
DISK_FULL_MARGIN = 128 << 10
# From the fault (disk filled, errors switched on) to the node's exit.
FAIL_STOP_DEADLINE_S = 30.0
FIU_EIO_PROBABILITY = 0.05
# Disk I/O only: LMDB writes pages with pwrite/writev and syncs with fdatasync, the
# journal syncs with fdatasync, raft.meta and directories with fsync. Sockets use
# send/recv and the log uses write(), so neither is touched.
FIU_VARIANTS: dict[str, tuple[tuple[str, ...], int]] = {  # name -> (failure points, seed)
    "S16b-disk-errors-sync": (("posix/io/sync/fsync", "posix/io/sync/fdatasync"), 162),
    "S16b-disk-errors-write": (("posix/io/rw/pwrite", "posix/io/rw/writev"), 163),
}


def seed_for(fixed: int) -> int:
    return random.randrange(1 << 30) if SOAK else fixed


def pick_follower(c: FaultCluster, rng: random.Random) -> str:
    leader = c.wait_for_leader(30, c.running_ids())
    return rng.choice(sorted(set(c.running_ids()) - {leader}))


@dataclass
class FailStop:
    """What the nemesis saw of the failing node (checked by the test afterwards)."""

    node: str = ""
    exit_code: int | None = None
    seconds_to_exit: float | None = None
    log_line: str = ""
    # "raft tick failed; retrying" lines of the failed boot: a storage error must stop
    # the node, not be retried (a retried fsync can "succeed" on lost data).
    tick_retries: int = 0
    write_elsewhere_ok: bool = False


def wait_for_exit(c: FaultCluster, nid: str, since: float, seen: FailStop) -> None:
    """Poll the node's process until it exits (deadline FAIL_STOP_DEADLINE_S).

    Records its exit code (the node exited by itself: nothing here signals it), and
    from the log of this boot its FAIL-STOP line and its tick retries. Raises
    AssertionError if it is still running at the deadline.
    """
    proc = c.nodes[nid].proc
    assert proc is not None
    deadline = since + FAIL_STOP_DEADLINE_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        raise AssertionError(
            f"{nid} still running {FAIL_STOP_DEADLINE_S:g} s after its disk failed "
            f"(hung or retrying instead of fail-stopping):\n{c.tail(nid)}"
        )
    seen.node = nid
    seen.exit_code = proc.returncode
    seen.seconds_to_exit = round(time.monotonic() - since, 3)
    log = c.nodes[nid].log_path.read_text(errors="replace")
    boot = log.rsplit(f"node {nid} started", 1)[-1].splitlines()
    seen.log_line = next((ln for ln in boot if "FAIL-STOP" in ln), "")
    seen.tick_retries = sum("raft tick failed" in ln for ln in boot)
    print(f"  {nid} exited {seen.exit_code} after {seen.seconds_to_exit} s: {seen.log_line}")


def check_others_take_writes(c: FaultCluster, seen: FailStop) -> None:
    """While the failed node is down, an append succeeds on one of the others."""
    seen.write_elsewhere_ok = first_ok_write_after(c, time.monotonic(), 15.0) is not None


def assert_fail_stopped(seen: FailStop, *errno_texts: str) -> None:
    assert seen.exit_code == EXIT_FAIL_STOP, (
        f"{seen.node} exited {seen.exit_code}, not {EXIT_FAIL_STOP} (fail-stop)"
    )
    assert "CRITICAL" in seen.log_line, seen.log_line
    assert seen.tick_retries == 0, f"{seen.node} retried {seen.tick_retries} failed ticks"
    assert any(t in seen.log_line for t in errno_texts), (
        f"the FAIL-STOP line names none of {errno_texts}: {seen.log_line!r}"
    )
    assert seen.write_elsewhere_ok, "the two healthy nodes took no write while it was down"


def assert_healthy_outcome(outcome: Outcome) -> None:
    assert not outcome.violations, [str(v) for v in outcome.violations[:10]]
    ok_appends = sum(1 for op in outcome.history.ops if op.kind == "append" and op.outcome == "ok")
    assert ok_appends > 20, "too little load reached the cluster to mean anything"


# -- S16a: disk full (tmpfs) -----------------------------------------------------------


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


class Tmpfs:
    """A tmpfs mounted on ``path`` (inside the test's tmp_path). ``unmount()`` is
    idempotent and is called by the context manager whatever happens; it falls back to
    a lazy unmount if some process still holds a file there."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        r = _run(
            "mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)
        )
        if r.returncode != 0:
            raise OSError(f"mount -t tmpfs on {self.path} failed: {r.stderr.strip()}")

    def unmount(self) -> None:
        if not is_mountpoint(self.path):
            return
        r = _run("umount", str(self.path))
        if r.returncode != 0:
            _run("umount", "-l", str(self.path))
        assert not is_mountpoint(self.path), f"{self.path} is still mounted"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def tmpfs_guard(mounts: list[Tmpfs]) -> Iterator[None]:
    """Unmount every tmpfs of ``mounts`` on the way out, even after a failure."""
    try:
        yield
    finally:
        for m in mounts:
            m.unmount()


def can_mount_tmpfs(probe: Path) -> str | None:
    """None if this process may mount a tmpfs, else the reason it may not."""
    if os.geteuid() != 0:
        return "S16a needs root to mount a tmpfs (not root)"
    t = Tmpfs(probe, "1m")
    try:
        t.mount()
    except OSError as exc:
        return f"S16a cannot mount a tmpfs here: {exc}"
    finally:
        t.unmount()
    return None


def fill(path: Path, tmpfs: Tmpfs, margin: int) -> int:
    """Write zeros to ``path`` until at most ``margin`` bytes are free; returns the size.

    The node keeps writing meanwhile, so ENOSPC here just means "full already"."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while (free := tmpfs.free_bytes()) > margin:
            chunk = min(1 << 20, free - margin)
            try:
                written += os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return written


def disk_full(mounts: list[Tmpfs], seen: FailStop) -> Any:
    def nemesis(c: FaultCluster, rng: random.Random) -> None:
        nid = pick_follower(c, rng)
        data = c.nodes[nid].data_dir  # the cluster restarts the node from this path
        on_disk = data.with_name("data.before-tmpfs")
        tmpfs = Tmpfs(data, TMPFS_SIZE)
        mounts.append(tmpfs)
        c.kill9(nid)
        data.rename(on_disk)
        on_tmpfs = False  # True once the node's data lives (only) on the tmpfs
        try:
            tmpfs.mount()
            shutil.copytree(on_disk, data, dirs_exist_ok=True)
            on_tmpfs = True
            c.start(nid)
            c.wait_ready(timeout=30)
            size = fill(data / "filler", tmpfs, DISK_FULL_MARGIN)
            print(f"  {nid}: {size >> 20} MiB of filler, {tmpfs.free_bytes() >> 10} KiB left")
            wait_for_exit(c, nid, time.monotonic(), seen)
            check_others_take_writes(c, seen)
        finally:
            # Repair: stop the node (a no-op if it exited), free the space, move its data
            # back to the real disk and unmount. run_scenario restarts it from `data`.
            c.kill9(nid)
            if on_tmpfs:
                (data / "filler").unlink(missing_ok=True)
                repaired = data.with_name("data.repaired")
                shutil.copytree(data, repaired)
                tmpfs.unmount()
                data.rmdir()  # the empty mount point
                repaired.rename(data)
                shutil.rmtree(on_disk)
            else:  # never got that far: put the untouched data back
                tmpfs.unmount()
                shutil.rmtree(data, ignore_errors=True)
                on_disk.rename(data)

    return nemesis


def test_s16a_disk_full_fail_stops_the_node(tmp_path: Path) -> None:
    reason = can_mount_tmpfs(tmp_path / "mount-probe")
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    name, seed = "S16a-disk-full", seed_for(161)
    mounts: list[Tmpfs] = []
    seen = FailStop()
    started = time.monotonic()
    with tmpfs_guard(mounts):
        outcome = run_scenario(tmp_path, name, disk_full(mounts, seen), seed=seed)
    print(f"{name}: {time.monotonic() - started:.1f} s")
    # The journal and raft.meta report ENOSPC; LMDB turns a short page write (the
    # tmpfs filled mid-write) into EIO ("mdb_txn_commit: Input/output error").
    assert_fail_stopped(seen, "ENOSPC", "No space left on device", "Input/output error")
    assert_healthy_outcome(outcome)


# -- S16b: disk errors (libfiu) ---------------------------------------------------------


def fiu_missing() -> str | None:
    for tool in ("fiu-run", "fiu-ctrl"):
        if shutil.which(tool) is None:
            return f"S16b needs {tool} (Debian package fiu-utils), which is not installed"
    return None


def disk_errors(fifo_prefix: Path, points: tuple[str, ...], seen: FailStop) -> Any:
    def nemesis(c: FaultCluster, rng: random.Random) -> None:
        nid = pick_follower(c, rng)
        plain_command = c.command
        under_fiu = {nid}

        def command(node: Any, data_dir: Path) -> list[str]:
            base = plain_command(node, data_dir)
            if node.id not in under_fiu:
                return base
            # fiu-run execs the node: the Popen pid is the node's, and the control
            # fifos are <prefix>-<pid>.in/.out. No failure point is enabled yet.
            return ["fiu-run", "-x", "-f", str(fifo_prefix), *base]

        c.command = command
        try:
            c.kill9(nid)
            c.start(nid)
            c.wait_ready(timeout=30)
            proc = c.nodes[nid].proc
            assert proc is not None
            enable = [
                arg
                for point in points
                for arg in (
                    "-c",
                    f"enable_random name={point},probability={FIU_EIO_PROBABILITY},"
                    f"failinfo={errno.EIO}",
                )
            ]
            r = _run("fiu-ctrl", "-f", str(fifo_prefix), *enable, str(proc.pid))
            assert r.returncode == 0, f"fiu-ctrl failed: {r.stdout} {r.stderr}"
            wait_for_exit(c, nid, time.monotonic(), seen)
            check_others_take_writes(c, seen)
        finally:
            # Repair: the errors end with the process; run_scenario restarts it plain.
            c.kill9(nid)
            under_fiu.clear()
            c.command = plain_command

    return nemesis


@pytest.mark.parametrize("name", list(FIU_VARIANTS))
def test_s16b_disk_errors_fail_stop_the_node(tmp_path: Path, name: str) -> None:
    reason = fiu_missing()
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    points, fixed_seed = FIU_VARIANTS[name]
    seed = seed_for(fixed_seed)
    fifo_dir = tmp_path / "fiu"
    fifo_dir.mkdir()
    seen = FailStop()
    started = time.monotonic()
    nemesis = disk_errors(fifo_dir / "ctrl", points, seen)
    outcome = run_scenario(tmp_path, name, nemesis, seed=seed)
    print(f"{name}: {time.monotonic() - started:.1f} s")
    assert_fail_stopped(seen, "EIO", "Input/output error")
    assert_healthy_outcome(outcome)
