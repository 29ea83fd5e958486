"""A local 3-node cluster for ``run.py`` when no ``--url`` is given.

The cluster file comes from ``raftlog.cli.local_config`` (127.0.0.1, free ports, a
generated ``cluster_secret``, the default timing) and each node is one ``raftlog serve``
child in its own process group, as ``raftlog demo`` starts them.

Contracts: ``start`` returns once every node answers ``/readyz`` 200, or raises
``RuntimeError`` (a node exited, or not ready within ``ready_timeout_s``) after which
``stop`` must still be called. ``stop`` ends only the processes this object started, by
process group: SIGTERM (a node shuts down gracefully), SIGKILL after ``STOP_TIMEOUT_S``;
it may be called more than once and blocks at most about twice that per node.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from raftlog.cli.local_config import generate_local_config, serve_command

__all__ = ["STOP_TIMEOUT_S", "LocalCluster"]

NODE_COUNT = 3
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20


@dataclass
class LocalCluster:
    """``data_root``: config and data dirs (the caller removes it); ``log_dir``: each
    node's output, ``<id>.log``."""

    data_root: Path
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)

    def start(self, ready_timeout_s: float = 60.0) -> list[str]:
        cluster = generate_local_config(
            NODE_COUNT, name="loadtest", header=["written by loadtests/run.py"]
        )
        config = self.data_root / "cluster.toml"
        config.write_text(cluster.toml, encoding="utf-8")
        config.chmod(0o600)  # it holds the cluster secret
        self.log_dir.mkdir(parents=True, exist_ok=True)
        program = [sys.executable, "-m", "raftlog"]
        for node in cluster.nodes:
            words = shlex.split(serve_command(program, config, node.id, self.data_root / node.id))
            with open(self.log_dir / f"{node.id}.log", "ab") as out:
                self.procs[node.id] = subprocess.Popen(
                    words,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C reaches run.py only; it stops these
                )
        self.urls = cluster.urls
        self._wait_ready(ready_timeout_s)
        return self.urls

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = dict(zip(self.procs, self.urls, strict=True))
        with httpx.Client(timeout=1.0, trust_env=False) as http:
            while pending:
                for node_id, url in list(pending.items()):
                    code = self.procs[node_id].poll()
                    if code is not None:
                        raise RuntimeError(
                            f"node {node_id} exited with {code}\n{self.tail(node_id)}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{url}/readyz").status_code == 200:
                            del pending[node_id]
                if not pending:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nodes {sorted(pending)} not ready after {timeout_s:g} s")
                time.sleep(0.1)

    def tail(self, node_id: str) -> str:
        try:
            lines = (self.log_dir / f"{node_id}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  {node_id}| {line}" for line in lines[-LOG_TAIL_LINES:])

    def _signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def stop(self) -> dict[str, int | None]:
        """Stop every node started here; node id -> its exit code."""
        for proc in self.procs.values():
            self._signal(proc, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for node_id, proc in self.procs.items():
            try:
                codes[node_id] = proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                codes[node_id] = proc.wait(timeout=STOP_TIMEOUT_S)
        return codes
