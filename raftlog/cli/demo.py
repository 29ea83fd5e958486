"""``raftlog demo``: a local 3-node cluster (three processes) and a narrated tour.

Contracts:

* Every step is a check; the demo exits 0 when all pass, 1 when one fails or the tour
  cannot go on, 128 + the signal's number after SIGINT (Ctrl-C), SIGTERM or SIGHUP.
* Every figure it prints is one it measured or counted in this run.
* Without ``keep`` it leaves nothing behind on any of those exits: it stops every node
  process it started (SIGTERM, SIGKILL after ``STOP_TIMEOUT_S`` or a second signal)
  and removes what it created: the temp folder, or with ``base_dir`` the files it made
  there (and ``base_dir`` itself if it made that too). On a failure the tail of each
  node's log is printed first. Only a SIGKILL of the demo itself can leave its nodes
  and files behind.
* With ``keep`` nothing is stopped or removed, on success or not; the demo prints each
  node's URL, PID, data dir and log, and the commands that stop them and remove the
  files.
* The cluster file comes from ``raftlog.cli.local_config``: 127.0.0.1, free ports, a
  generated ``cluster_secret``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from raftlog.cli.local_config import generate_local_config
from raftlog.client import Client, RaftlogClientError
from raftlog.config import NodeAddress, NodeSettings

__all__ = [
    "DEMO_TIMING",
    "STOP_TIMEOUT_S",
    "Demo",
    "DemoInterrupted",
    "DemoNode",
    "final_checks",
    "run_demo",
]

DEMO_TIMING = {
    "heartbeat_ms": 50,
    "election_timeout_min_ms": 400,
    "election_timeout_max_ms": 800,
    "leader_lease_ms": 200,
    "leader_fallback_ms": 600,
    "connection_retry_ms": 100,
    "connection_timeout_ms": 1000,
}
LOG = "demo"
NODE_COUNT = 3
FIRST_WRITES = 6  # step 2, through a follower
DOWN_WRITES = 20  # step 5, while the old leader is down
STOP_TIMEOUT_S = 10.0  # graceful stop, then SIGKILL
LOG_TAIL_LINES = 15
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DemoInterrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: stop the tour and clean up (BaseException, so
    no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _SignalGuard:
    """Turns the three signals into DemoInterrupted in the main thread, except inside
    ``deferred()`` (raised at its end) and once ``cleaning`` is set, when a signal only
    sets ``hurry`` (the cleanup then kills instead of waiting)."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.deferring = 0
        self.cleaning = False
        self.hurry = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.cleaning:
            self.hurry.set()
        elif self.deferring:
            self.pending = signum
        else:
            raise DemoInterrupted(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there; the caller handles signals
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """No DemoInterrupted inside (so a started process is always recorded)."""
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1
        if not self.deferring and self.pending is not None and not self.cleaning:
            signum, self.pending = self.pending, None
            raise DemoInterrupted(signum)


@dataclass
class DemoNode:
    id: str
    raft: str
    http: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def pid(self) -> str:
        return str(self.proc.pid) if self.proc is not None else "-"


def final_checks(
    logs: Mapping[str, Sequence[Any]],
    acked: Mapping[str, int],
    in_doubt: Collection[str],
    reference_id: str = "n1",
) -> list[tuple[bool, str]]:
    """The demo's final check, as (passed, what) in the order they are narrated. Pure.

    ``logs``: node id -> the values of its log, in offset order (every node, read after
    it applied the leader's commit index); ``acked``: value -> the offset its write was
    acknowledged at; ``in_doubt``: values whose write had an unknown outcome (they may
    or may not be present). Checks: every node holds the same log as ``reference_id``;
    every acknowledged value is in it at its acknowledged offset; no value appears twice;
    every value in it was acknowledged or in doubt."""
    reference = list(logs[reference_id])
    lost = [v for v, off in acked.items() if off >= len(reference) or reference[off] != v]
    phantoms = set(reference) - set(acked) - set(in_doubt)
    return [
        (
            all(list(v) == reference for v in logs.values()),
            f"all {NODE_COUNT} nodes hold the same log ({len(reference)} entries)",
        ),
        (not lost, f"no acknowledged write lost or moved ({len(acked)} checked)"),
        (len(reference) == len(set(reference)), "no duplicates"),
        (not phantoms, "nothing that was never written"),
    ]


@dataclass
class Demo:
    root: Path
    fast: bool
    guard: _SignalGuard = field(default_factory=_SignalGuard)
    nodes: dict[str, DemoNode] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # value -> offset
    in_doubt: set[str] = field(default_factory=set)
    config_path: Path | None = None

    @property
    def timing(self) -> dict[str, int]:
        """The timing settings the nodes run with."""
        if self.fast:
            return dict(DEMO_TIMING)
        defaults = NodeSettings()
        return {name: int(getattr(defaults, name)) for name in DEMO_TIMING}

    def paths(self) -> list[Path]:
        """Everything the demo creates under ``root``."""
        names = ["cluster.toml"]
        for i in range(1, NODE_COUNT + 1):
            names += [f"n{i}", f"n{i}.log"]
        return [self.root / n for n in names]

    # -- narration and checks -------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print a line. A closed stdout (``raftlog demo | head``) never stops the tour or
        its cleanup: further output is dropped."""
        try:
            print(text, flush=True)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # also for the flush at exit
            os.close(devnull)

    def check(self, ok: bool, what: str) -> bool:
        self.say(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            self.failures.append(what)
        return ok

    # -- processes ------------------------------------------------------------------------

    def write_config(self) -> Path:
        cluster = generate_local_config(
            NODE_COUNT,
            name="demo",
            node_settings=DEMO_TIMING if self.fast else None,
            header=["written by `raftlog demo`"],
        )
        for addr in cluster.nodes:
            self.add_node(addr)
        path = self.root / "cluster.toml"
        path.write_text(cluster.toml, encoding="utf-8")
        path.chmod(0o600)  # it holds the cluster secret
        self.config_path = path
        return path

    def add_node(self, addr: NodeAddress) -> None:
        self.nodes[addr.id] = DemoNode(
            addr.id, addr.raft, addr.http, self.root / addr.id, self.root / f"{addr.id}.log"
        )

    def start(self, node: DemoNode, config: Path) -> None:
        with open(node.log_path, "ab") as out, self.guard.deferred():
            node.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "raftlog",
                    "serve",
                    "--config",
                    str(config),
                    "--id",
                    node.id,
                    "--data-dir",
                    str(node.data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches the demo only
            )

    def _signal(self, node: DemoNode, sig: int) -> None:
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, sig)

    def kill9(self, node: DemoNode) -> None:
        if node.proc is not None:
            self._signal(node, signal.SIGKILL)
            node.proc.wait()
            node.proc = None

    def stop_all(self) -> None:
        """SIGTERM every node, wait until each exits; SIGKILL what is left after
        STOP_TIMEOUT_S or as soon as ``guard.hurry`` is set. Returns with none running."""
        running = [n for n in self.nodes.values() if n.proc is not None]
        for node in running:
            self._signal(node, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(n.proc is not None and n.proc.poll() is None for n in running):
            if time.monotonic() >= deadline or self.guard.hurry.is_set():
                break
            self.guard.hurry.wait(0.05)
        for node in running:
            self.kill9(node)  # reaps the ones that exited; kills the rest

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``predicate`` until it returns something true; raise TimeoutError after
        ``timeout`` s, or RuntimeError as soon as a node process has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.id} exited with {node.proc.returncode}")
            with contextlib.suppress(RaftlogClientError, OSError):
                value = predicate()
                if value:
                    return value
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    def client(self, *nodes: DemoNode, retries: int = 20) -> Client:
        chosen = nodes or tuple(self.nodes.values())
        return Client([n.url for n in chosen], timeout=5.0, retries=retries, backoff=0.05)

    def probe(self, node: DemoNode) -> Client:
        """A client for ``wait`` predicates: one attempt, as ``wait`` does the retrying."""
        return self.client(node, retries=0)

    def leader_seen_by(self, node: DemoNode) -> str | None:
        with self.probe(node) as c:
            leader = c.cluster().leader
        return leader if leader and self.nodes[leader].proc is not None else None

    # -- the tour -------------------------------------------------------------------------

    def append(self, client: Client, value: str) -> Any:
        try:
            result = client.append(LOG, value)
        except RaftlogClientError as exc:
            if exc.definitely_not_applied:
                self.say(f"  write {value!r} refused ({exc.code}): definitely not applied")
            else:
                self.in_doubt.add(value)
                self.say(f"  write {value!r}: outcome unknown ({exc.code})")
            return None
        self.acked[value] = result.offset
        return result

    def expected_values(self) -> list[str]:
        """The acknowledged values in offset order."""
        return [v for v, _ in sorted(self.acked.items(), key=lambda item: item[1])]

    def run(self) -> int:
        config = self.write_config()
        t = self.timing
        self.say(f"raftlog demo: a {NODE_COUNT}-node cluster in {self.root}")
        self.say(
            f"  {config.name}: 127.0.0.1, free ports, a generated cluster_secret, "
            f"{'fast' if self.fast else 'default'} timing (heartbeat {t['heartbeat_ms']} ms, "
            f"election timeout {t['election_timeout_min_ms']}-{t['election_timeout_max_ms']} "
            f"ms, leader_lease_ms {t['leader_lease_ms']})"
        )
        started_at = time.monotonic()
        for node in self.nodes.values():
            self.start(node, config)
            self.say(f"  started {node.id}: http {node.url}  raft {node.raft}  (pid {node.pid})")

        self.say("\n1. Waiting for the nodes to elect a leader...")
        leader_id = self.wait(lambda: self.leader_seen_by(self.nodes["n1"]), 30, "a leader")
        for node in self.nodes.values():
            with self.probe(node) as c:
                self.wait(c.ready, 30, f"{node.id} ready")
        self.say(
            f"  leader {leader_id} elected and all {NODE_COUNT} nodes ready "
            f"{time.monotonic() - started_at:.2f} s after the processes were started"
        )
        leader = self.nodes[leader_id]
        followers = [n for n in self.nodes.values() if n.id != leader_id]

        self.say(
            f"\n2. Appending {FIRST_WRITES} entries through follower {followers[0].id} "
            f"(it forwards them to the leader {leader_id}):"
        )
        last = None
        with self.client(followers[0]) as c:
            for i in range(FIRST_WRITES):
                r = self.append(c, f"event-{i}")
                if r is not None:
                    last = r
                    self.say(
                        f"  appended event-{i}: offset {r.offset}, "
                        f"raft index {r.index}, term {r.term}"
                    )
        acked = len(self.acked)
        self.check(
            acked == FIRST_WRITES,
            f"{acked} of {FIRST_WRITES} writes acknowledged (committed on a majority, fsynced)",
        )

        reader = followers[1]
        self.say(f"\n3. Reading at each consistency level from follower {reader.id}:")
        expected = self.expected_values()
        with self.client(reader) as c:
            started = time.monotonic()
            page = c.read(LOG, 0, 100, consistency="quorum")
            self.check(
                [e.value for e in page.entries] == expected,
                f"quorum read: {len(page.entries)} entries, linearizable "
                f"({(time.monotonic() - started) * 1000:.1f} ms)",
            )
            started = time.monotonic()
            page = c.read(LOG, 0, 100, consistency="leader")
            self.check(
                [e.value for e in page.entries] == expected,
                f"leader read (forwarded to the leader, lease-checked): "
                f"{len(page.entries)} entries ({(time.monotonic() - started) * 1000:.1f} ms)",
            )
            if last is not None:
                started = time.monotonic()
                page = c.read(LOG, 0, 100, consistency="any", min_index=last.index)
                self.check(
                    [e.value for e in page.entries] == expected,
                    f"any read with min_index={last.index} (read-your-writes, local): "
                    f"{len(page.entries)} entries ({(time.monotonic() - started) * 1000:.1f} ms)",
                )

        self.say(f"\n4. kill -9 of the leader {leader_id} (pid {leader.pid})...")
        killed_at = time.monotonic()
        self.kill9(leader)
        new_leader_id = self.wait(lambda: self.leader_seen_by(followers[0]), 30, "a new leader")
        elapsed = time.monotonic() - killed_at
        self.check(
            new_leader_id != leader_id,
            f"new leader {new_leader_id}, as {followers[0].id} reports {elapsed:.2f} s after "
            f"the kill (election timeout {t['election_timeout_min_ms']}-"
            f"{t['election_timeout_max_ms']} ms)",
        )

        survivors = " and ".join(n.id for n in followers)
        self.say(
            f"\n5. Appending {DOWN_WRITES} entries through {survivors} while {leader_id} is down:"
        )
        before = len(self.acked)
        with self.client(*followers) as c:
            for i in range(FIRST_WRITES, FIRST_WRITES + DOWN_WRITES):
                self.append(c, f"event-{i}")
        acked = len(self.acked) - before
        self.check(
            acked == DOWN_WRITES,
            f"{acked} of {DOWN_WRITES} writes acknowledged; {len(self.acked)} in total",
        )

        self.say(f"\n6. Restarting {leader_id}; it rejoins as a follower and catches up:")
        restart_at = time.monotonic()
        self.start(leader, config)
        self.say(f"  started {leader_id} again (pid {leader.pid})")
        with self.client(self.nodes[new_leader_id]) as c:
            target = c.cluster().commit_index

        def applied_on_restarted() -> int | None:
            with self.probe(leader) as c:
                if not c.ready():
                    return None
                applied = c.read(LOG, 0, 1, consistency="any").meta.applied_index
                return applied if applied >= target else None

        applied = self.wait(applied_on_restarted, 30, f"{leader_id} to catch up")
        with self.client(leader) as c:
            count = len(c.read(LOG, 0, 10_000, consistency="any").entries)
        self.check(
            count >= len(self.acked),
            f"{leader_id} caught up {time.monotonic() - restart_at:.2f} s after its restart "
            f"(process start included): applied index {applied} >= the leader's commit index "
            f"{target}, {count} entries",
        )

        self.say("\n7. Final check: every acknowledged write, exactly once, on every node:")
        logs = {}
        for node in self.nodes.values():
            with self.client(node) as c:
                entries = c.read(LOG, 0, 10_000, consistency="any", min_index=target).entries
            logs[node.id] = [e.value for e in entries]
        for ok, what in final_checks(logs, self.acked, self.in_doubt):
            self.check(ok, what)

        if self.failures:
            self.say(f"\nDEMO FAILED: {len(self.failures)} check(s) failed")
        else:
            self.say("\nAll checks passed.")
        return 1 if self.failures else 0

    # -- the end --------------------------------------------------------------------------

    def show_log_tails(self) -> None:
        for node in self.nodes.values():
            try:
                lines = node.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            self.say(f"--- last lines of {node.id}'s log ---")
            for line in lines[-LOG_TAIL_LINES:]:
                self.say(f"  {line}")

    def report_kept(self) -> None:
        running = [n for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]
        self.say("\nThe cluster keeps running (--keep):")
        for node in self.nodes.values():
            state = f"pid {node.pid}" if node in running else "not running"
            self.say(f"  {node.id}: {node.url}  {state}  data {node.data_dir}  log {node.log_path}")
        urls = ",".join(n.url for n in self.nodes.values())
        self.say(f"  config: {self.config_path}")
        self.say(f"  try:    RAFTLOG_URL={urls} raftlog status")
        self.say(f"          curl -s '{self.nodes['n1'].url}/v1/logs/{LOG}/entries?from=0'")
        if running:
            self.say(f"  stop:   kill {' '.join(n.pid for n in running)}")
        self.say(f"  then:   rm -rf {shlex.quote(str(self.root))}")

    def remove_files(self, whole_root: bool) -> None:
        targets = [self.root] if whole_root else self.paths()
        for path in targets:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as exc:
                self.say(f"  could not remove {path}: {exc}")


def run_demo(*, keep: bool = False, base_dir: str | None = None, fast: bool = True) -> int:
    """Run the tour; returns the exit code (module docstring)."""
    created_root = True
    if base_dir:
        root = Path(base_dir)
        created_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="raftlog-demo-"))
    demo = Demo(root, fast)
    taken = [p for p in demo.paths() if p.exists() or p.is_symlink()]
    if taken:
        print(f"raftlog demo: {taken[0]} already exists; give --dir an empty folder", flush=True)
        return 1
    demo.guard.install()
    code = 1
    try:
        try:
            code = demo.run()
        except (TimeoutError, RuntimeError, RaftlogClientError, OSError) as exc:
            demo.say(f"\nDEMO FAILED: {exc}")
        except DemoInterrupted as exc:
            code = 128 + exc.signum
            demo.say(f"\ninterrupted by {exc}")
    except DemoInterrupted as exc:  # a second signal while the first outcome was printed
        code = 128 + exc.signum
    finally:
        demo.guard.cleaning = True  # from here a signal only hurries the cleanup
        try:
            if keep:
                demo.report_kept()
            else:
                try:
                    if code != 0:
                        demo.show_log_tails()
                finally:  # whatever printing did, stop the nodes and remove the files
                    demo.stop_all()
                    demo.remove_files(whole_root=created_root)
                gone = "removed" if created_root else "removed the demo's files from"
                demo.say(f"stopped the nodes and {gone} {root}")
        finally:
            demo.guard.restore()
    return code
