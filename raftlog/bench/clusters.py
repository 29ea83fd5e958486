"""The two clusters under test, each 3 members on 127.0.0.1 with temp data dirs.

Contracts (both classes; main thread, except ``leadership`` and ``probe_write``, which
any thread may call):

* ``start()`` spawns the members through the run's ``Spawner`` (so ``stop_all`` stops
  them on every exit path); ``wait_ready(timeout)`` returns once every running member
  is healthy and they agree on a leader, else raises ``TimeoutError``; it raises
  ``RuntimeError`` as soon as a member process has exited.
* ``leadership()`` is ``(leader id, term)`` as the running members report it, or
  ``None`` when they do not agree on one (mid-election, say). Steady-state points
  compare it before and after.
* ``kill9(member)`` SIGKILLs that member's process group; ``restart(member)`` starts it
  again on the same data dir.
* ``probe_write(url, timeout)`` is one write of a ``VALUE_BYTES`` value: True only for
  an acknowledged write (raftlog: 201; etcd: 200 with a header). Never raises.
* raftlog runs with the production timing defaults and ``durability = "fsync"``; etcd
  with its defaults (fsync on, ``--unsafe-no-fsync`` never set).
"""

from __future__ import annotations

import base64
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

from raftlog.bench.control import http_json
from raftlog.bench.procs import Spawner
from raftlog.cli.local_config import generate_local_config, serve_command
from raftlog.ports import free_port

__all__ = [
    "APPEND_LOG",
    "ETCD_BINARY",
    "READ_KEYS",
    "READ_LOG",
    "VALUE_BYTES",
    "EtcdCluster",
    "Leadership",
    "RaftlogCluster",
    "etcd_key",
    "value_text",
]

VALUE_BYTES = 100
APPEND_LOG = "bench"
READ_LOG = "bench-read"
READ_KEYS = 1000  # entries (raftlog) and keys (etcd) the read workloads pick from
ETCD_BINARY = "etcd"
HOST = "127.0.0.1"
POLL_S = 0.05


def value_text() -> str:
    """The 100-character value every write carries (ASCII: 100 bytes too)."""
    return ("raftlog-bench-" * 8)[:VALUE_BYTES]


def etcd_key(name: str) -> str:
    """``name`` base64-encoded, as etcd's JSON gateway wants keys and values."""
    return base64.b64encode(name.encode()).decode()


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who leads, in which term; equal before and after a valid steady-state point."""

    leader: str
    term: int


def _wait(
    predicate: Callable[[], bool], timeout: float, what: str, alive: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


class _Members:
    """What both clusters share: member ids, URLs and processes."""

    name = ""

    def __init__(self, spawner: Spawner, root: Path) -> None:
        self.spawner = spawner
        self.root = root
        self.urls: dict[str, str] = {}
        self.procs: dict[str, Popen[bytes] | None] = {}

    @property
    def members(self) -> list[str]:
        return list(self.urls)

    def running(self) -> list[str]:
        return [m for m, p in self.procs.items() if p is not None and p.poll() is None]

    def check_alive(self) -> None:
        for member, proc in self.procs.items():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} member {member} exited with {proc.returncode} "
                    f"(log: {self.root / (member + '.log')})"
                )

    def kill9(self, member: str) -> None:
        proc = self.procs[member]
        if proc is not None:
            self.spawner.kill9(proc)
        self.procs[member] = None

    def restart(self, member: str) -> None:
        self._spawn(member)

    def _spawn(self, member: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        for member in self.urls:
            self._spawn(member)

    def leader_url(self) -> str:
        lead = self.leadership()
        if lead is None:
            raise RuntimeError(f"{self.name} has no leader")
        return self.urls[lead.leader]

    def leadership(self) -> Leadership | None:
        raise NotImplementedError


class RaftlogCluster(_Members):
    """A local 3-node raftlog cluster from ``raftlog.cli.local_config``."""

    name = "raftlog"

    def __init__(self, spawner: Spawner, root: Path) -> None:
        super().__init__(spawner, root)
        root.mkdir(parents=True, exist_ok=True)
        cluster = generate_local_config(3, name="bench", header=["written by raftlog bench"])
        self.config_path = root / "cluster.toml"
        self.config_path.write_text(cluster.toml, encoding="utf-8")
        self.config_path.chmod(0o600)  # it holds the cluster secret
        for node, url in zip(cluster.nodes, cluster.urls, strict=True):
            self.urls[node.id] = url
            self.procs[node.id] = None

    def command(self, member: str) -> list[str]:
        """The ``raftlog serve`` command of ``member`` (shown in logs and the JSON)."""
        line = serve_command(
            [sys.executable, "-m", "raftlog"], str(self.config_path), member, self.root / member
        )
        return shlex.split(line)

    def _spawn(self, member: str) -> None:
        self.procs[member] = self.spawner.spawn(
            self.command(member), log_path=self.root / f"{member}.log"
        )

    def _view(self, member: str) -> Leadership | None:
        status, body = http_json("GET", f"{self.urls[member]}/v1/cluster", timeout=2.0)
        if status != 200 or not isinstance(body, dict) or not body.get("leader"):
            return None
        return Leadership(str(body["leader"]), int(body["term"]))

    def leadership(self) -> Leadership | None:
        views = set()
        for member in self.running():
            try:
                views.add(self._view(member))
            except OSError:
                return None
        if len(views) != 1:
            return None
        (view,) = views
        if view is None or view.leader not in self.running():
            return None
        return view

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            for member in self.running():
                status, _ = http_json("GET", f"{self.urls[member]}/readyz", timeout=2.0)
                if status != 200:
                    return False
            return self.leadership() is not None

        _wait(ready, timeout, "raftlog ready with a leader", self.check_alive)

    def prefill(self) -> None:
        """Write ``READ_KEYS`` entries to ``READ_LOG`` (offsets 0 .. READ_KEYS - 1)."""
        url = self.leader_url()
        batch = {"entries": [{"value": value_text()} for _ in range(100)]}
        for _ in range(READ_KEYS // 100):
            status, body = http_json(
                "POST", f"{url}/v1/logs/{READ_LOG}/entries", batch, timeout=15.0
            )
            if status != 201:
                raise RuntimeError(f"raftlog prefill answered {status}: {body}")

    def probe_write(self, url: str, timeout: float) -> bool:
        try:
            status, _ = http_json(
                "POST",
                f"{url}/v1/logs/{APPEND_LOG}/entries?timeout={timeout:g}",
                {"value": value_text()},
                timeout=timeout,
            )
        except (OSError, ValueError):
            return False
        return status == 201


class EtcdCluster(_Members):
    """A local 3-member etcd cluster from Debian's ``etcd-server`` (its defaults)."""

    name = "etcd"

    def __init__(self, spawner: Spawner, root: Path) -> None:
        super().__init__(spawner, root)
        root.mkdir(parents=True, exist_ok=True)
        binary = shutil.which(ETCD_BINARY)
        if binary is None:
            raise FileNotFoundError("etcd is not installed (Debian package etcd-server)")
        self.binary = binary
        self.peer_urls: dict[str, str] = {}
        for i in range(1, 4):
            member = f"m{i}"
            self.urls[member] = f"http://{HOST}:{free_port()}"
            self.peer_urls[member] = f"http://{HOST}:{free_port()}"
            self.procs[member] = None
        self.token = f"raftlog-bench-{free_port()}"
        self.member_ids: dict[str, str] = {}  # etcd's member id (decimal text) -> name

    def command(self, member: str) -> list[str]:
        """The etcd command of ``member``: its names and addresses; every other setting
        (fsync, timing, logging) is etcd's default."""
        initial = ",".join(f"{m}={u}" for m, u in self.peer_urls.items())
        return [
            self.binary,
            "--name", member,
            "--data-dir", str(self.root / member),
            "--listen-client-urls", self.urls[member],
            "--advertise-client-urls", self.urls[member],
            "--listen-peer-urls", self.peer_urls[member],
            "--initial-advertise-peer-urls", self.peer_urls[member],
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
        ]  # fmt: skip

    def _spawn(self, member: str) -> None:
        self.procs[member] = self.spawner.spawn(
            self.command(member), log_path=self.root / f"{member}.log"
        )

    def _status(self, member: str) -> dict[str, Any] | None:
        status, body = http_json(
            "POST", f"{self.urls[member]}/v3/maintenance/status", {}, timeout=2.0
        )
        return body if status == 200 and isinstance(body, dict) else None

    def leadership(self) -> Leadership | None:
        views = set()
        for member in self.running():
            try:
                body = self._status(member)
            except OSError:
                return None
            if body is None:
                return None
            own = str(body.get("header", {}).get("member_id", ""))
            self.member_ids[own] = member
            views.add((str(body.get("leader", "0")), int(body.get("raftTerm", 0))))
        if len(views) != 1:
            return None
        ((leader_id, term),) = views
        leader = self.member_ids.get(leader_id)
        if leader is None or leader not in self.running():
            return None
        return Leadership(leader, term)

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            for member in self.running():
                status, body = http_json("GET", f"{self.urls[member]}/health", timeout=2.0)
                if status != 200 or not isinstance(body, dict) or body.get("health") != "true":
                    return False
            return self.leadership() is not None

        _wait(ready, timeout, "etcd healthy with a leader", self.check_alive)

    def prefill(self) -> None:
        """Put ``READ_KEYS`` keys ``bench-read-NNNN`` with 100-byte values."""
        url = self.leader_url()
        value = etcd_key(value_text())
        for i in range(READ_KEYS):
            body = {"key": etcd_key(f"bench-read-{i:04d}"), "value": value}
            status, answer = http_json("POST", f"{url}/v3/kv/put", body, timeout=15.0)
            if status != 200:
                raise RuntimeError(f"etcd prefill answered {status}: {answer}")

    def probe_write(self, url: str, timeout: float) -> bool:
        body = {"key": etcd_key("bench-put"), "value": etcd_key(value_text())}
        try:
            status, answer = http_json("POST", f"{url}/v3/kv/put", body, timeout=timeout)
        except (OSError, ValueError):
            return False
        return status == 200 and isinstance(answer, dict) and "header" in answer
