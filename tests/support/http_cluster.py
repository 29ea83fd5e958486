"""Real ``raftlog serve`` processes on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster import NodeProc, ProcessCluster, wait_until


class HttpCluster(ProcessCluster):
    def command(self, node: NodeProc, data_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "raftlog",
            "serve",
            "--config",
            str(self.config_path),
            "--id",
            node.id,
            "--data-dir",
            str(data_dir),
        ]

    def _control_ready(self, node: NodeProc) -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(
                f"{node.id} exited with {node.proc.returncode}:\n{self.tail(node.id)}"
            )
        try:
            return httpx.get(f"{self.url(node.id)}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def url(self, nid: str) -> str:
        return f"http://{self.host(nid)}:{self.nodes[nid].http_port}"

    def urls(self, among: list[str] | None = None) -> list[str]:
        return [self.url(n) for n in (among or list(self.nodes))]

    def http(self, nid: str, method: str, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("timeout", 30)
        return httpx.request(method, self.url(nid) + path, **kw)

    def status(self, nid: str) -> dict[str, Any]:
        """The node's own view, shaped like the control protocol's status."""
        r = self.http(nid, "GET", "/v1/cluster", headers={"X-Raftlog-No-Forward": "1"})
        r.raise_for_status()
        view = r.json()
        me = next(n for n in view["nodes"] if n["id"] == nid)
        return {
            "leader_id": view["leader"] or None,
            "role": me["role"],
            "commit_index": view["commit_index"],
            "applied_index": me["applied_index"],
            "term": view["term"],
            "cluster_id": view["cluster_id"],
        }

    def wait_ready(self, among: list[str] | None = None, timeout: float = 30) -> str:
        leader = self.wait_for_leader(timeout, among)
        for nid in among or self.running_ids():
            wait_until(
                lambda n=nid: self.http(n, "GET", "/readyz").status_code == 200,
                timeout,
                f"{nid} ready",
            )
        return leader

    def signal(self, nid: str, sig: signal.Signals) -> None:
        proc = self.nodes[nid].proc
        assert proc is not None
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def http_cluster(root: Path, **kwargs: Any) -> Iterator[HttpCluster]:
    cluster = HttpCluster(root, **kwargs)
    try:
        yield cluster
    except BaseException:
        print(cluster.describe(), file=sys.stderr)
        raise
    finally:
        for nid, node in cluster.nodes.items():
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)
                cluster.kill9(nid)
