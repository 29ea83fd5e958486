"""One ``raftlog bench`` run, from starting the clusters to removing their files.

Contracts of ``run_bench(options)``:

* Needs ``wrk`` (exit 1 with a message naming the Debian package when it is missing).
  etcd is benchmarked when ``etcd`` is installed and not disabled; otherwise its
  columns say why and the run goes on with raftlog alone.
* Per repetition the systems are interleaved workload by workload (raftlog first on
  even repetitions, etcd first on odd ones); failover trials come last, alternating
  the same way. Every steady-state point carries the leadership check of
  ``raftlog.bench.workloads.run_point``; invalid points are redone, then reported.
* Exit codes: 0 the table was printed (targets met or not: it is a benchmark); 1 a
  cluster or wrk failed (the table of what was measured is still printed); 130 after
  SIGINT, 143 after SIGTERM, 129 after SIGHUP.
* On every exit path, Ctrl-C included, it stops every process it started (by process
  group, through ``Spawner``) and removes its temp dir; a signal during that cleanup is
  ignored (the cleanup is bounded by ``Spawner.stop_all``'s grace period).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from raftlog.bench.clients import ASYNC, SYNC, client_load_missing, client_measure
from raftlog.bench.clusters import ETCD_BINARY, EtcdCluster, RaftlogCluster
from raftlog.bench.collect import Collected
from raftlog.bench.failover import measure_failover
from raftlog.bench.procs import Spawner
from raftlog.bench.workloads import (
    APPEND,
    CLIENT_TASKS,
    Point,
    PointResult,
    run_point,
    steady_points,
    wrk_measure,
)

__all__ = ["BenchInterrupted", "BenchOptions", "run_bench"]

READY_TIMEOUT_S = 90.0
LOG_TAIL_LINES = 12
CLIENT_POINTS = ((ASYNC, CLIENT_TASKS), (SYNC, 1))
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True, slots=True)
class BenchOptions:
    repeat: int = 3
    duration_s: float = 5.0
    failovers: int = 5
    retries: int = 2  # redo a point with a leader change this many times
    etcd: bool = True
    clients: bool = True
    warmup_s: float = 1.0
    json_path: Path | None = None
    plots_dir: Path | None = None
    quick: bool = False


class BenchInterrupted(BaseException):
    """A signal arrived (BaseException, so no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int) -> None:
    raise BenchInterrupted(signum)


@contextmanager
def _signals_raise(spawner: Spawner) -> Iterator[Callable[[], None]]:
    """SIGINT/SIGTERM/SIGHUP raise BenchInterrupted in the main thread (deferred while
    ``spawner`` records a new process); the yielded function switches to ignoring them
    (for the cleanup). Restored on exit."""
    spawner.on_pending = _interrupt
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        if spawner.deferring:
            spawner.pending = signum
        else:
            _interrupt(signum)

    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}

    def ignore() -> None:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    try:
        yield ignore
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _tails(root: Path, say: Callable[[str], None]) -> None:
    for log in sorted(root.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        say(f"--- last lines of {log.relative_to(root)} ---")
        for line in lines:
            say(f"  {line}")


def _start_clusters(
    opts: BenchOptions, root: Path, spawner: Spawner, out: Collected, say: Callable[[str], None]
) -> list[Any]:
    """Start raftlog (and etcd when it can run), wait until ready, prefill, warm up."""
    raftlog = RaftlogCluster(spawner, root / "raftlog")
    systems: list[Any] = [raftlog]
    if not opts.etcd:
        out.etcd_skipped = "etcd disabled (--no-etcd)"
    elif shutil.which(ETCD_BINARY) is None:
        out.etcd_skipped = "etcd is not installed (Debian package etcd-server): etcd not run"
    else:
        systems.append(EtcdCluster(spawner, root / "etcd"))
    if out.etcd_skipped:
        say(f"raftlog bench: {out.etcd_skipped}")
    for system in systems:
        system.start()
        out.describe(system, root)
    for system in systems:
        started = time.monotonic()
        system.wait_ready(READY_TIMEOUT_S)
        system.prefill()
        pids = ", ".join(str(p.pid) for p in system.procs.values() if p is not None)
        say(f"{system.name}: 3 members ready and prefilled in "
            f"{time.monotonic() - started:.1f} s (pids {pids})")  # fmt: skip
    scripts = root / "scripts"
    scripts.mkdir()
    if opts.warmup_s > 0:
        for system in systems:
            warm = Point(APPEND, 16)
            wrk_measure(spawner, scripts, system.name, warm, opts.warmup_s)([system.leader_url()])
    return systems


def _measure_all(
    opts: BenchOptions, root: Path, spawner: Spawner, out: Collected, say: Callable[[str], None]
) -> None:
    """Every repetition of every point, interleaved, then the failover trials."""
    systems = _start_clusters(opts, root, spawner, out, say)
    raftlog = systems[0]
    scripts = root / "scripts"
    client_reason = client_load_missing() if opts.clients else "client rows disabled"
    if client_reason:
        out.notes.append(client_reason)
        say(f"raftlog bench: {client_reason}")

    for rep in range(opts.repeat):
        order = systems if rep % 2 == 0 else systems[::-1]
        say(f"\nrepetition {rep + 1} of {opts.repeat} ({' then '.join(s.name for s in order)}):")
        for point in steady_points("raftlog"):
            for system in order:
                if point not in steady_points(system.name):
                    continue
                measure = wrk_measure(spawner, scripts, system.name, point, opts.duration_s)
                result = run_point(
                    system, point, measure, repetition=rep, retries=opts.retries,
                    attempts=out.attempts,
                )  # fmt: skip
                say(_point_line(result))
        for kind, connections in CLIENT_POINTS if client_reason is None else ():
            point = Point(kind, connections)
            measure = client_measure(kind, connections, opts.duration_s)
            try:
                result = run_point(
                    raftlog, point, measure, repetition=rep, retries=opts.retries,
                    attempts=out.attempts,
                )  # fmt: skip
            except Exception as exc:  # the loader's failure ends only its rows...
                raftlog.check_alive()  # ...unless a node died: that ends the run
                client_reason = f"raftlog.client.load failed ({exc!r:.200}); client rows skipped"
                out.notes.append(client_reason)
                say(f"raftlog bench: {client_reason}")
                break
            say(_point_line(result))

    say(f"\nfailover: kill -9 of the leader, {opts.failovers} trial(s) per system")
    for trial in range(opts.failovers):
        order = systems if trial % 2 == 0 else systems[::-1]
        for system in order:
            failover = measure_failover(system, trial)
            out.failovers.append(failover)
            say(f"  {system.name:8s} trial {trial + 1}: killed {failover.killed} (term "
                f"{failover.term_before}), first acknowledged write after "
                f"{failover.seconds:.3f} s ({failover.attempts} attempts), new leader "
                f"{failover.new_leader}")  # fmt: skip


def _point_line(r: PointResult) -> str:
    state = "ok" if r.valid else f"INVALID (leader {r.before} -> {r.after})"
    errors = sum(
        int(w.get(k, 0)) for w in r.raw for k in ("status_errors", "socket_errors", "errors")
    )
    if errors:
        state += f", {errors} errors"
    return (
        f"  {r.system:8s} {r.key:18s} {r.ops_per_s:10,.0f}/s  p50 {r.p50_ms:7.2f} ms  "
        f"p99 {r.p99_ms:7.2f} ms  {state}"
    )


def run_bench(opts: BenchOptions, say: Callable[[str], None] | None = None) -> int:
    """The whole run (module docstring)."""

    def echo(text: str) -> None:
        print(text, flush=True)

    emit = say or echo
    if shutil.which("wrk") is None:
        emit("raftlog bench: wrk is not installed (Debian package wrk); nothing was run")
        return 1
    root = Path(tempfile.mkdtemp(prefix="raftlog-bench-"))
    spawner = Spawner()
    out = Collected(opts)
    code = 1
    with _signals_raise(spawner) as ignore_signals:
        try:
            try:
                _measure_all(opts, root, spawner, out, emit)
                code = 0
            except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                emit(f"\nraftlog bench FAILED: {exc}")
                _tails(root, emit)
            except (BenchInterrupted, KeyboardInterrupt) as exc:
                signum = exc.signum if isinstance(exc, BenchInterrupted) else signal.SIGINT
                code = 128 + signum
                emit(f"\nraftlog bench interrupted ({signal.Signals(signum).name})")
            out.pids = list(spawner.pids)
            if code in (0, 1):
                try:
                    out.report(emit)
                except OSError as exc:  # --json or --plots could not be written
                    emit(f"raftlog bench: could not write the report: {exc}")
                    code = 1
        finally:
            ignore_signals()
            stop_and_clean(spawner, root, emit)
    return code


def stop_and_clean(spawner: Spawner, root: Path, emit: Callable[[str], None]) -> None:
    """Stop every process ``spawner`` started, remove ``root`` and say whether any is
    still running (main thread, at the end of a run, signals already ignored)."""
    spawner.stop_all()
    shutil.rmtree(root, ignore_errors=True)
    left = [p for p in spawner.pids if _running(p)]
    emit(
        f"stopped the {len(spawner.pids)} processes it started "
        f"({'none' if not left else 'STILL RUNNING: ' + str(left)} left) "
        f"and removed {root}"
    )


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
