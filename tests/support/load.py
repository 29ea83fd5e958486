"""Bounded concurrent writers against a ProcessCluster, recording every outcome."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from tests.support.cluster import ControlClient, ProcessCluster


@dataclass
class History:
    acked: dict[str, int] = field(default_factory=dict)  # value -> acknowledged offset
    unknown: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # definite failures
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, value: str, reply: dict[str, object] | None) -> None:
        with self.lock:
            if reply is None or (not reply.get("ok") and not reply.get("definite")):
                self.unknown.add(value)
            elif reply.get("ok"):
                self.acked[value] = int(reply["offset"])  # type: ignore[call-overload]
            else:
                self.failed.add(value)


class Writers:
    """``count`` threads appending unique values to ``log`` on random running nodes.

    Bounded: each thread stops after ``max_ops`` appends or ``max_seconds``.
    """

    def __init__(
        self,
        cluster: ProcessCluster,
        log: str,
        count: int = 4,
        max_ops: int = 5000,
        max_seconds: float = 60,
    ) -> None:
        self.cluster = cluster
        self.log = log
        self.history = History()
        self._stop = threading.Event()
        self._max_ops = max_ops
        self._deadline = time.monotonic() + max_seconds
        self._threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(count)
        ]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> History:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.history

    def _run(self, wid: int) -> None:
        rng = random.Random(wid)
        clients: dict[str, ControlClient] = {}
        try:
            for seq in range(self._max_ops):
                if self._stop.is_set() or time.monotonic() > self._deadline:
                    return
                running = [n.id for n in self.cluster.nodes.values() if n.running]
                if not running:
                    time.sleep(0.05)
                    continue
                nid = rng.choice(running)
                value = f"w{wid}-{seq}"
                client = clients.setdefault(
                    nid, ControlClient(self.cluster.nodes[nid].control_port, 10)
                )
                try:
                    reply = client.call(op="append", log=self.log, values=[value], timeout=3)
                except OSError:
                    client.close()
                    clients.pop(nid, None)
                    # Sent or not, we cannot tell: a broken connection is an unknown outcome.
                    self.history.record(value, None)
                    time.sleep(0.02)
                    continue
                self.history.record(value, reply)
                if not reply.get("ok"):
                    time.sleep(0.02)
        finally:
            for c in clients.values():
                c.close()


def check_log(cluster: ProcessCluster, log: str, history: History, nodes: list[str]) -> int:
    """Every acknowledged value exactly once at its offset on every node; no phantoms."""
    reference: list[str] | None = None
    for nid in nodes:
        entries = cluster.read_all(nid, log)
        values = [e["value"] for e in entries]
        assert [e["offset"] for e in entries] == list(range(len(entries))), f"{nid}: gaps"
        assert len(values) == len(set(values)), f"{nid}: duplicate values"
        for value, offset in history.acked.items():
            assert offset < len(values) and values[offset] == value, (
                f"{nid}: acknowledged {value} at offset {offset} lost or moved"
            )
        attempted = set(history.acked) | history.unknown
        phantoms = set(values) - attempted
        assert not phantoms, (
            f"{nid}: values never acknowledged nor in doubt: {sorted(phantoms)[:5]}"
        )
        lost_definite = set(values) & history.failed
        assert not lost_definite, (
            f"{nid}: definite failures were applied: {sorted(lost_definite)[:5]}"
        )
        if reference is None:
            reference = values
        assert values == reference, f"{nid} differs from {nodes[0]}"
    return len(reference or [])
