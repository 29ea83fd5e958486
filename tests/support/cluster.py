"""Multi-process test clusters on 127.0.0.1: free ports, temp dirs, process groups.

Each node runs ``tests.support.nodeproc`` in its own session (process group), so
kill -9 reaches the whole group and nothing outlives the test. Logs stay in the
node's directory and are printed when a test fails (see ``describe()``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftlog.ports import free_port

REPO = Path(__file__).resolve().parents[2]

FAST_TIMING = {
    "heartbeat_ms": 50,
    "election_timeout_min_ms": 400,
    "election_timeout_max_ms": 800,
    "leader_lease_ms": 200,
    "leader_fallback_ms": 600,
    "connection_retry_ms": 100,
    "connection_timeout_ms": 1000,
}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError) as exc:
            last_exc = exc
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_exc})")


class ControlClient:
    """A blocking JSON-lines client for one node's control port."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def call(self, **req: Any) -> dict[str, Any]:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self._buf = b""
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("control connection closed")
                self._buf += chunk
        except OSError:
            self.close()
            raise
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass
class NodeProc:
    id: str
    raft_port: int
    http_port: int
    control_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    client: ControlClient | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ProcessCluster:
    root: Path
    size: int = 3
    name: str = "test"
    settings: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, NodeProc] = field(default_factory=dict)
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)  # extra env per node
    # node -> the address its raft and HTTP sockets bind (127.0.0.1 unless given)
    hosts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(1, self.size + 1):
            nid = f"n{i}"
            self.nodes[nid] = NodeProc(
                id=nid,
                raft_port=free_port(),
                http_port=free_port(),
                control_port=free_port(),
                data_dir=self.root / nid / "data",
                log_path=self.root / nid / "node.log",
            )
        self.config_path = self.root / "cluster.toml"
        self.write_config()

    def write_config(self) -> None:
        lines = ["[cluster]", f'name = "{self.name}"', ""]
        for n in self.nodes.values():
            lines += [
                "[[cluster.nodes]]",
                f'id = "{n.id}"',
                f'raft = "{self.host(n.id)}:{n.raft_port}"',
                f'http = "{self.host(n.id)}:{n.http_port}"',
                "",
            ]
        lines.append("[node]")
        for key, value in {**FAST_TIMING, **self.settings}.items():
            lines.append(f"{key} = {json.dumps(value)}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def host(self, nid: str) -> str:
        return self.hosts.get(nid, "127.0.0.1")

    # -- processes ---------------------------------------------------------------------

    def start(self, nid: str, *, data_dir: Path | None = None, wait: bool = True) -> NodeProc:
        node = self.nodes[nid]
        if node.running:
            raise RuntimeError(f"{nid} is already running")
        if self.host(nid) == "127.0.0.1":  # a node elsewhere has its own port space
            for port in (node.raft_port, node.control_port, node.http_port):
                wait_until(lambda p=port: _port_free(p), 10, f"port {port} to be free")
        node.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(node.log_path, "ab")  # noqa: SIM115 (the child owns it)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            **self.node_env.get(nid, {}),
        }
        node.proc = subprocess.Popen(
            self.command(node, data_dir or node.data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        log.close()
        if wait:
            wait_until(lambda: self._control_ready(node), 30, f"{nid} control port", step=0.05)
        return node

    def command(self, node: NodeProc, data_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.support.nodeproc",
            str(self.config_path),
            node.id,
            str(data_dir),
            str(node.control_port),
        ]

    def _control_ready(self, node: NodeProc) -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(
                f"{node.id} exited with {node.proc.returncode}:\n{self.tail(node.id)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", node.control_port), timeout=1):
                return True
        except OSError:
            return False

    def start_all(self) -> None:
        for nid in self.nodes:
            self.start(nid, wait=False)
        for node in self.nodes.values():
            wait_until(lambda n=node: self._control_ready(n), 30, f"{node.id} control port")

    def kill9(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(10)
        if node.client:
            node.client.close()
        node.client = None
        node.proc = None

    def terminate(self, nid: str, timeout: float = 15) -> int:
        node = self.nodes[nid]
        assert node.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGTERM)
        code = node.proc.wait(timeout)
        if node.client:
            node.client.close()
        node.client = None
        node.proc = None
        return code

    def stop_all(self) -> None:
        for nid, node in self.nodes.items():
            if node.proc is not None:
                self.kill9(nid)

    # -- talking to nodes -------------------------------------------------------------

    def client(self, nid: str) -> ControlClient:
        node = self.nodes[nid]
        if node.client is None:
            node.client = ControlClient(node.control_port)
        return node.client

    def call(self, nid: str, **req: Any) -> dict[str, Any]:
        return self.client(nid).call(**req)

    def status(self, nid: str) -> dict[str, Any]:
        return self.call(nid, op="status")["status"]  # type: ignore[no-any-return]

    def running_ids(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.running]

    def wait_for_leader(self, timeout: float = 20, among: list[str] | None = None) -> str:
        ids = among or self.running_ids()

        def agreed() -> str | None:
            views = [self.status(nid) for nid in ids]
            leaders = {v["leader_id"] for v in views}
            if len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                if leader in ids and self.status(leader)["role"] == "leader":
                    return str(leader)
            return None

        return str(wait_until(agreed, timeout, f"one leader agreed by {ids}"))

    def wait_converged(self, timeout: float = 30, among: list[str] | None = None) -> str:
        """Commit a barrier, wait until every node applied it; return the common digest."""
        ids = among or self.running_ids()
        leader = self.wait_for_leader(timeout, ids)
        barrier = self.call(leader, op="barrier", timeout=timeout)
        assert barrier["ok"], barrier
        for nid in ids:
            reply = self.call(nid, op="wait_applied", index=barrier["index"], timeout=timeout)
            assert reply["ok"], f"{nid} did not apply {barrier['index']}: {reply}"
        digests = {}

        def same_digest() -> bool:
            for nid in ids:
                d = self.call(nid, op="digest")
                digests[nid] = (d["index"], d["digest"])
            return len({v for v in digests.values()}) == 1

        wait_until(same_digest, timeout, f"identical digests (last: {digests})", step=0.2)
        return next(iter(digests.values()))[1]

    def read_all(self, nid: str, log: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            batch = self.call(nid, op="read", log=log, **{"from": len(out)}, limit=5000)
            if not batch["entries"]:
                return out
            out.extend(batch["entries"])

    def tail(self, nid: str, lines: int = 40) -> str:
        path = self.nodes[nid].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def describe(self) -> str:
        return "\n\n".join(f"--- {nid} log tail ---\n{self.tail(nid)}" for nid in self.nodes)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def running_cluster(root: Path, **kwargs: Any) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(root, **kwargs)
    try:
        yield cluster
    except BaseException:
        print(cluster.describe(), file=sys.stderr)
        raise
    finally:
        cluster.stop_all()
