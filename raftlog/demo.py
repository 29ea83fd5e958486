"""``raftlog demo``: a local 3-node cluster (three processes) and a narrated tour.

Every step is a check; the demo exits 1 if any check fails. With ``--keep`` the
cluster stays up and the demo prints how to reach and stop it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftlog.client import Client, RaftlogClientError
from raftlog.ports import free_port

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


@dataclass
class Demo:
    root: Path
    fast: bool
    nodes: dict[str, DemoNode] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # value -> offset
    in_doubt: set[str] = field(default_factory=set)

    # -- narration and checks -------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, flush=True)

    def check(self, ok: bool, what: str) -> bool:
        self.say(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            self.failures.append(what)
        return ok

    # -- processes ------------------------------------------------------------------------

    def write_config(self) -> Path:
        lines = ["[cluster]", 'name = "demo"', ""]
        for i in (1, 2, 3):
            nid = f"n{i}"
            node = DemoNode(
                nid,
                f"127.0.0.1:{free_port()}",
                f"127.0.0.1:{free_port()}",
                self.root / nid,
                self.root / f"{nid}.log",
            )
            self.nodes[nid] = node
            lines += [
                "[[cluster.nodes]]",
                f'id = "{nid}"',
                f'raft = "{node.raft}"',
                f'http = "{node.http}"',
                "",
            ]
        lines.append("[node]")
        if self.fast:
            lines += [f"{k} = {v}" for k, v in DEMO_TIMING.items()]
        path = self.root / "cluster.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, node: DemoNode, config: Path) -> None:
        with open(node.log_path, "ab") as out:
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
                start_new_session=True,
            )

    def kill9(self, node: DemoNode) -> None:
        if node.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
            node.proc = None

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.kill9(node)
                node.proc = None

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RaftlogClientError, OSError):
                value = predicate()
                if value:
                    return value
            for node in self.nodes.values():
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(
                        f"{node.id} exited with {node.proc.returncode}; see {node.log_path}"
                    )
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    def client(self, *nodes: DemoNode) -> Client:
        chosen = nodes or tuple(self.nodes.values())
        return Client([n.url for n in chosen], timeout=5.0, retries=20, backoff=0.05)

    def leader_seen_by(self, node: DemoNode) -> str | None:
        with self.client(node) as c:
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

    def run(self, keep: bool) -> int:
        config = self.write_config()
        self.say(f"raftlog demo: three nodes in {self.root}")
        for node in self.nodes.values():
            self.start(node, config)
            pid = node.proc.pid if node.proc else "-"
            self.say(f"  started {node.id}: http {node.url}  raft {node.raft}  (pid {pid})")
        self.say("\n1. Waiting for the nodes to elect a leader...")
        t0 = time.monotonic()
        leader_id = self.wait(lambda: self.leader_seen_by(self.nodes["n1"]), 30, "a leader")
        for node in self.nodes.values():
            with self.client(node) as c:
                self.wait(c.ready, 30, f"{node.id} ready")
        self.say(f"  leader is {leader_id}, elected in {time.monotonic() - t0:.2f} s")
        leader = self.nodes[leader_id]
        followers = [n for n in self.nodes.values() if n.id != leader_id]

        self.say("\n2. Appending through a follower (it forwards to the leader):")
        with self.client(followers[0]) as c:
            for i in range(5):
                r = self.append(c, f"event-{i}")
                if r is not None:
                    self.say(
                        f"  appended event-{i}: offset {r.offset}, "
                        f"raft index {r.index}, term {r.term}"
                    )
            last = self.append(c, "event-5")
        self.check(
            len(self.acked) == 6, "six writes acknowledged (committed on a majority, fsynced)"
        )

        self.say("\n3. Reading at each consistency level:")
        with self.client(followers[1]) as c:
            t = time.monotonic()
            page = c.read(LOG, 0, 100, consistency="quorum")
            self.check(
                len(page.entries) == 6,
                f"quorum read on follower {followers[1].id}: "
                f"{len(page.entries)} entries, linearizable "
                f"({(time.monotonic() - t) * 1000:.1f} ms)",
            )
            t = time.monotonic()
            page = c.read(LOG, 0, 100, consistency="leader")
            self.check(
                len(page.entries) == 6,
                "leader read (forwarded to the leader, lease-checked): "
                f"{len(page.entries)} entries ({(time.monotonic() - t) * 1000:.1f} ms)",
            )
            if last is not None:
                t = time.monotonic()
                page = c.read(LOG, 0, 100, consistency="any", min_index=last.index)
                self.check(
                    len(page.entries) == 6,
                    "any read with min_index="
                    f"{last.index} "
                    f"(read-your-writes, local): {len(page.entries)} entries "
                    f"({(time.monotonic() - t) * 1000:.1f} ms)",
                )

        self.say(f"\n4. kill -9 of the leader {leader_id} ...")
        killed_at = time.monotonic()
        self.kill9(leader)
        new_leader_id = self.wait(lambda: self.leader_seen_by(followers[0]), 30, "a new leader")
        elapsed = time.monotonic() - killed_at
        self.check(new_leader_id != leader_id, f"new leader {new_leader_id} after {elapsed:.2f} s")

        self.say("\n5. Writing while the old leader is down:")
        with self.client(*followers) as c:
            for i in range(6, 26):
                self.append(c, f"event-{i}")
        self.check(len(self.acked) >= 26, f"{len(self.acked)} writes acknowledged in total")

        self.say(f"\n6. Restarting {leader_id}; it rejoins as a follower and catches up:")
        restart_at = time.monotonic()
        self.start(leader, config)
        with self.client(self.nodes[new_leader_id]) as c:
            target = c.cluster().commit_index

        def applied_on_restarted() -> int | None:
            with self.client(leader) as c:
                if not c.ready():
                    return None
                applied = c.read(LOG, 0, 1, consistency="any").meta.applied_index
                return applied if applied >= target else None

        applied = self.wait(applied_on_restarted, 30, f"{leader_id} to catch up")
        with self.client(leader) as c:
            count = len(c.read(LOG, 0, 10_000, consistency="any").entries)
        self.check(
            count >= len(self.acked),
            f"{leader_id} caught up: applied index {applied} (target {target}), {count} entries, "
            f"{time.monotonic() - restart_at:.2f} s after restart (process start included)",
        )

        self.say("\n7. Final check: every acknowledged write, exactly once, on every node:")
        logs = {}
        for node in self.nodes.values():
            with self.client(node) as c:
                entries = c.read(LOG, 0, 10_000, consistency="any", min_index=target).entries
            logs[node.id] = [e.value for e in entries]
        reference = logs["n1"]
        self.check(all(v == reference for v in logs.values()), "all three nodes hold the same log")
        lost = [v for v, off in self.acked.items() if off >= len(reference) or reference[off] != v]
        self.check(not lost, f"no acknowledged write lost or moved ({len(self.acked)} checked)")
        self.check(len(reference) == len(set(reference)), "no duplicates")
        phantoms = set(reference) - set(self.acked) - self.in_doubt
        self.check(not phantoms, "nothing that was never written")

        if self.failures:
            self.say(f"\nDEMO FAILED: {len(self.failures)} check(s) failed; logs in {self.root}")
        else:
            self.say("\nAll checks passed.")
        if keep:
            self.say("\nThe cluster keeps running (--keep):")
            for node in self.nodes.values():
                self.say(
                    f"  {node.id}: {node.url}  pid {node.proc.pid if node.proc else '-'}  "
                    f"log {node.log_path}"
                )
            urls = ",".join(n.url for n in self.nodes.values())
            pids = " ".join(str(n.proc.pid) for n in self.nodes.values() if n.proc)
            self.say(f"  try:  RAFTLOG_URL={urls} raftlog status")
            self.say(f"        curl -s '{followers[0].url}/v1/logs/{LOG}/entries?from=0'")
            self.say(f"  stop: kill {pids}")
        return 1 if self.failures else 0


def run_demo(*, keep: bool = False, base_dir: str | None = None, fast: bool = True) -> int:
    root = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="raftlog-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root, fast)
    code = 1
    try:
        code = demo.run(keep)
    except (TimeoutError, RuntimeError, RaftlogClientError) as exc:
        print(f"\nDEMO FAILED: {exc}; node logs in {root}", flush=True)
    finally:
        if not keep or code != 0:
            demo.stop_all()
    return code
