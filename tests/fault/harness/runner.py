"""Scenario runner: an HTTP cluster on a fault network, bounded workers, a nemesis, checks.

Two network back-ends (``backend=``):

* ``"proxy"`` (no root): each Raft link A->B (A dials B, as PySyncObj does when A's
  address sorts higher) goes through a LinkProxy; nodes learn the proxy ports through
  the test-only RAFTLOG_TEST_DIAL_OVERRIDES switch. Nodes listen on 127.0.0.1.
* ``"netns"`` (root): each node runs in its own network namespace and faults are
  nftables drops in the kernel (harness/netns.py). The whole scenario driver (workers,
  probes, checks over HTTP) runs on a thread inside the client namespace.

Workers talk HTTP to random nodes, one attempt per operation (no client retries: the
history must show what really happened).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from raftlog.state.machine import StateMachine
from tests.fault.harness.checker import (
    Violation,
    check_all,
    check_leaders,
    check_liveness,
    parse_raft_events,
)
from tests.fault.harness.history import History, Op
from tests.fault.harness.netns import NamespaceNet
from tests.fault.harness.proxy import ProxyNet
from tests.support.cluster import wait_until
from tests.support.http_cluster import HttpCluster

LOG = "jepsen"
DEFINITE_WRITE_FAILURES = {400, 401, 403, 409, 413, 429, 503, 507}
LIVENESS_BOUND_S = 15.0

Backend = Literal["proxy", "netns"]
_T = TypeVar("_T")


class FaultCluster(HttpCluster):
    """An HttpCluster on a fault network: a ProxyNet or a NamespaceNet.

    Both nets offer isolate, partition, partition_pair, stall and heal_all; delay and
    reset are proxy-only (``c.net.links``), random loss is namespace-only."""

    net: Any  # ProxyNet | NamespaceNet; scenarios use the methods their back-end has

    def __init__(self, root: Path, net: ProxyNet | NamespaceNet, **kwargs: Any) -> None:
        hosts: dict[str, str] = {}
        if isinstance(net, NamespaceNet):
            hosts = dict(net.addresses)
            # Off loopback the node insists on an authenticated Raft and an explicit
            # choice about plain HTTP, as it would on a real network.
            kwargs["settings"] = {
                "cluster_secret": "fault-suite-secret",
                "allow_insecure_http": True,
                **kwargs.get("settings", {}),
            }
        super().__init__(root, hosts=hosts, **kwargs)
        self.net = net
        self.boots: dict[str, int] = dict.fromkeys(self.nodes, 0)
        # node -> libfaketime spec (e.g. "+0 x0.5": its clocks run at half speed)
        self.faketime: dict[str, str] = {}
        if isinstance(net, ProxyNet):
            self._route_through_proxies(net)

    def _route_through_proxies(self, net: ProxyNet) -> None:
        addr = {nid: f"127.0.0.1:{n.raft_port}" for nid, n in self.nodes.items()}
        for a in self.nodes:
            overrides = {}
            for b in self.nodes:
                if a != b and addr[a] > addr[b]:  # a dials b
                    link = net.add(f"{a}->{b}", "127.0.0.1", self.nodes[b].raft_port)
                    overrides[addr[b]] = f"127.0.0.1:{link.listen_port}"
            self.node_env[a] = {"RAFTLOG_TEST_DIAL_OVERRIDES": json.dumps(overrides)}

    def command(self, node: Any, data_dir: Path) -> list[str]:
        base = super().command(node, data_dir)
        spec = self.faketime.get(node.id)
        if spec:
            base = ["faketime", "-f", spec, *base]
        if isinstance(self.net, NamespaceNet):
            base = [*self.net.exec_prefix(node.id), *base]
        return base

    def drive(self, fn: Callable[[], _T]) -> _T:
        """Run the scenario driver where it can reach the nodes (see module docstring)."""
        if isinstance(self.net, NamespaceNet):
            return self.net.in_client(fn)
        return fn()

    def start(self, nid: str, **kwargs: Any) -> Any:
        self.boots[nid] += 1
        return super().start(nid, **kwargs)

    def raft_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for nid, node in self.nodes.items():
            if not node.log_path.exists():
                continue
            boot = 0
            identity = nid
            for line in node.log_path.read_text(errors="replace").splitlines():
                if f"node {nid} started" in line:
                    boot += 1
                    # Terms are per data dir: a boot on another data dir is another node.
                    own = str(node.data_dir) in line
                    identity = nid if own else f"{nid}@{line.rsplit('data dir ', 1)[-1]}"
                for event in parse_raft_events(line, boot):
                    event["node"] = identity
                    events.append(event)
        return events


@dataclass
class Workers:
    """``count`` threads doing appends and quorum reads on random nodes, bounded."""

    cluster: FaultCluster
    history: History
    count: int = 4
    read_ratio: float = 0.3
    leader_read_ratio: float = 0.0  # share of reads made with consistency=leader
    max_ops: int = 3000
    max_seconds: float = 120.0
    seed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for w in range(self.count):
            t = threading.Thread(target=self._run, args=(w,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, wid: int) -> None:
        rng = random.Random(self.seed * 1000 + wid)
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
            for seq in range(self.max_ops):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                nid = rng.choice(list(self.cluster.nodes))
                if rng.random() < self.read_ratio:
                    level = "leader" if rng.random() < self.leader_read_ratio else "quorum"
                    self.history.add(self._read(http, wid, nid, level))
                else:
                    self.history.add(self._append(http, wid, nid, f"p{wid}-{seq}"))

    def _append(self, http: httpx.Client, wid: int, nid: str, value: str) -> Op:
        invoke = time.monotonic()
        op = Op(wid, "append", value, invoke, invoke, "unknown", node=nid)
        try:
            r = http.post(
                f"{self.cluster.url(nid)}/v1/logs/{LOG}/entries",
                json={"value": value},
                params={"timeout": 3},
            )
        except httpx.ConnectError as exc:  # never sent
            op.outcome, op.error = "fail", f"connect: {exc}"
        except httpx.HTTPError as exc:  # sent; fate unknown
            op.error = f"{type(exc).__name__}: {exc}"
        else:
            if r.status_code == 201:
                op.outcome, op.offset = "ok", int(r.json()["offset"])
            elif r.status_code in DEFINITE_WRITE_FAILURES:
                op.outcome, op.error = "fail", r.text[:200]
            else:
                op.error = f"{r.status_code}: {r.text[:200]}"
        op.complete = time.monotonic()
        return op

    def _read(self, http: httpx.Client, wid: int, nid: str, level: str = "quorum") -> Op:
        invoke = time.monotonic()
        op = Op(wid, "read", None, invoke, invoke, "fail", consistency=level, node=nid)
        try:
            r = http.get(
                f"{self.cluster.url(nid)}/v1/logs/{LOG}/entries",
                params={"from": 0, "limit": 10000, "timeout": 3, "consistency": level},
            )
        except httpx.HTTPError as exc:
            op.error = f"{type(exc).__name__}: {exc}"
        else:
            if r.status_code == 200:
                op.outcome = "ok"
                op.read_values = [e["value"] for e in r.json()["entries"]]
            else:
                op.error = f"{r.status_code}: {r.text[:200]}"
        op.complete = time.monotonic()
        return op


def leader_read_staleness(history: History, final_log: list[str]) -> tuple[int, float]:
    """(number of consistency=leader reads, worst staleness in seconds).

    A read that returned L entries is stale by ``read.invoke - complete(append L)`` when
    the append at offset L had been acknowledged before the read began (0 otherwise).
    """
    completed: dict[str, float] = {
        op.value: op.complete
        for op in history.ops
        if op.kind == "append" and op.outcome == "ok" and op.value is not None
    }
    reads = [
        o
        for o in history.ops
        if o.kind == "read" and o.outcome == "ok" and o.consistency == "leader"
    ]
    worst = 0.0
    for read in reads:
        length = len(read.read_values or [])
        missed = [completed[v] for v in final_log[length:] if v in completed]
        if missed:
            worst = max(worst, read.invoke - min(missed))
    return len(reads), worst


@dataclass
class Outcome:
    history: History
    violations: list[Violation]
    recovery_s: float | None
    final_length: int
    leader_reads: int = 0
    leader_staleness_s: float = 0.0

    def table_row(self, name: str, seed: int) -> str:
        s = self.history.summary()
        return (
            f"{name} seed={seed} ops={len(self.history.ops)} summary={s} "
            f"final={self.final_length} recovery={self.recovery_s} "
            f"leader_reads={self.leader_reads} "
            f"leader_staleness_ms={self.leader_staleness_s * 1000:.0f} "
            f"violations={len(self.violations)}"
        )


def first_ok_write_after(cluster: FaultCluster, since: float, bound_s: float) -> float | None:
    """Liveness probe: time until an append succeeds somewhere after ``since``."""
    deadline = since + bound_s
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            for nid in cluster.running_ids():
                with contextlib.suppress(httpx.HTTPError):
                    r = http.post(
                        f"{cluster.url(nid)}/v1/logs/liveness/entries",
                        json={"value": time.time()},
                        params={"timeout": 1},
                    )
                    if r.status_code == 201:
                        return time.monotonic()
            time.sleep(0.05)
    return None


def converge_and_collect(cluster: FaultCluster) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Wait until every node applied the same index, kill all, digest LMDB offline."""
    ids = list(cluster.nodes)
    leader = cluster.wait_ready(ids, timeout=60)
    barrier = httpx.get(
        f"{cluster.url(leader)}/v1/logs/{LOG}/entries", params={"from": 0, "limit": 1}, timeout=30
    )
    target = int(barrier.headers["X-Raftlog-Applied-Index"])
    logs: dict[str, list[str]] = {}
    for nid in ids:
        r = httpx.get(
            f"{cluster.url(nid)}/v1/logs/{LOG}/entries",
            params={
                "from": 0,
                "limit": 10000,
                "consistency": "any",
                "min_index": target,
                "timeout": 30,
            },
            timeout=40,
        )
        r.raise_for_status()
        logs[nid] = [e["value"] for e in r.json()["entries"]]

    def same_applied() -> bool:
        applied = {cluster.status(n)["applied_index"] for n in ids}
        return len(applied) == 1

    wait_until(same_applied, 30, "every node at the same applied index", step=0.1)
    for nid in ids:
        cluster.kill9(nid)
    digests = {}
    for nid in ids:
        sm = StateMachine(cluster.nodes[nid].data_dir / "state")
        try:
            index, digest = sm.digest()
            digests[nid] = f"{index}:{digest}"
        finally:
            sm.close()
    return logs, digests


@contextlib.contextmanager
def fault_cluster(root: Path, backend: Backend = "proxy", **kwargs: Any) -> Iterator[FaultCluster]:
    size = int(kwargs.get("size", 3))
    net_cm: contextlib.AbstractContextManager[ProxyNet | NamespaceNet] = (
        NamespaceNet([f"n{i}" for i in range(1, size + 1)]) if backend == "netns" else ProxyNet()
    )
    with net_cm as net:
        cluster = FaultCluster(root, net, **kwargs)
        try:
            yield cluster
        except BaseException:
            print(cluster.describe())
            raise
        finally:
            for nid, node in cluster.nodes.items():
                if node.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(node.proc.pid, signal.SIGCONT)
                    cluster.kill9(nid)


def run_scenario(
    root: Path,
    name: str,
    nemesis: Callable[[FaultCluster, random.Random], None],
    *,
    seed: int,
    settings: dict[str, Any] | None = None,
    workers: int = 4,
    warmup_s: float = 1.0,
    env: dict[str, str] | None = None,
    leader_read_ratio: float = 0.0,
    backend: Backend = "proxy",
    history: History | None = None,
) -> Outcome:
    """Start, load, run the nemesis (it must heal before returning), check everything.

    A nemesis that makes requests of its own records them in ``history`` (pass one in)
    so the checkers judge them with the workers' operations."""
    rng = random.Random(seed)
    print(f"\nscenario {name}: seed {seed}, {backend} back-end")
    history = History() if history is None else history
    with fault_cluster(root, backend, settings=settings or {}) as c:
        if env:
            for nid in c.nodes:
                c.node_env.setdefault(nid, {}).update(env)

        def drive() -> tuple[float, float | None, dict[str, list[str]], dict[str, str]]:
            c.start_all()
            c.wait_ready(timeout=60)
            load = Workers(
                c, history, count=workers, seed=seed, leader_read_ratio=leader_read_ratio
            )
            load.start()
            try:
                time.sleep(warmup_s)
                nemesis(c, rng)
                c.net.heal_all()
                for nid, node in c.nodes.items():
                    if node.proc is None:
                        c.start(nid)
                healed_at = time.monotonic()
                ok_at = first_ok_write_after(c, healed_at, LIVENESS_BOUND_S)
                time.sleep(1.0)  # some load after the heal
            finally:
                load.stop()
            logs, digests = converge_and_collect(c)
            return healed_at, ok_at, logs, digests

        healed_at, ok_at, logs, digests = c.drive(drive)
        events = c.raft_events()
    violations = check_all(history, logs, digests)
    violations += check_leaders(events)
    violations += check_liveness(healed_at, ok_at, LIVENESS_BOUND_S)
    recovery = None if ok_at is None else round(ok_at - healed_at, 3)
    final = next(iter(logs.values()))
    leader_reads, staleness = leader_read_staleness(history, final)
    outcome = Outcome(history, violations, recovery, len(final), leader_reads, staleness)
    history.to_jsonl(root / f"{name}-history.jsonl")
    print(outcome.table_row(name, seed))
    for v in violations[:20]:
        print(f"  VIOLATION {v.invariant}: {v.message}")
    return outcome
