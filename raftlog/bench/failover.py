"""Writes unavailable after kill -9 of the leader: SIGKILL to the first acknowledged write.

Contract of ``measure_failover``: with the cluster ready, it finds the leader, takes
the clock (``time.monotonic``) and SIGKILLs the leader's process group, then a client
of ``PROBE_WORKERS`` threads cycles over the survivors (each thread one write at a
time, ``PROBE_TIMEOUT_S`` each, a short pause after a fast refusal; the threads start
staggered) until a write is acknowledged (raftlog: 201; etcd: a successful put). The
figure is the time from the SIGKILL to that answer. The killed member is then
restarted on its data dir and the cluster is waited on until ready again, so the next
trial starts from three healthy members. Raises
``TimeoutError`` when no write succeeds within ``deadline_s``. Called from the main
thread; its probe threads end within ``PROBE_TIMEOUT_S`` of the first success.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from raftlog.bench.clusters import Leadership

__all__ = ["FailoverResult", "FailoverSystem", "measure_failover"]

PROBE_TIMEOUT_S = 0.5
PROBE_WORKERS = 4
REFUSAL_PAUSE_S = 0.01
READY_TIMEOUT_S = 90.0


class FailoverSystem(Protocol):
    name: str
    urls: dict[str, str]

    def leadership(self) -> Leadership | None: ...
    def wait_ready(self, timeout: float) -> None: ...
    def kill9(self, member: str) -> None: ...
    def restart(self, member: str) -> None: ...
    def probe_write(self, url: str, timeout: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class FailoverResult:
    system: str
    trial: int
    killed: str
    term_before: int
    seconds: float
    attempts: int
    new_leader: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "trial": self.trial,
            "killed": self.killed,
            "term_before": self.term_before,
            "seconds": self.seconds,
            "attempts": self.attempts,
            "new_leader": self.new_leader,
        }


class _Probe:
    """``PROBE_WORKERS`` threads cycling over the survivors, each one write at a time;
    started ``PROBE_TIMEOUT_S / PROBE_WORKERS`` apart so that a new write is sent at
    least that often even while every earlier one hangs (an etcd put waits for a
    leader). The first acknowledged answer ends the probe."""

    def __init__(self, system: FailoverSystem, survivors: list[str], deadline_s: float) -> None:
        self.system = system
        self.survivors = survivors
        self.deadline_s = deadline_s
        self.killed_at = 0.0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.first: float | None = None
        self.attempts = 0

    def _worker(self, index: int) -> None:
        self.done.wait(index * PROBE_TIMEOUT_S / PROBE_WORKERS)
        urls = itertools.cycle(self.survivors[index % len(self.survivors) :] + self.survivors)
        while not self.done.is_set():
            if time.monotonic() - self.killed_at > self.deadline_s:
                return
            started = time.monotonic()
            ok = self.system.probe_write(next(urls), PROBE_TIMEOUT_S)
            with self.lock:
                self.attempts += 1
                if ok and self.first is None:
                    self.first = time.monotonic() - self.killed_at
                    self.done.set()
            if not ok and time.monotonic() - started < REFUSAL_PAUSE_S:
                self.done.wait(REFUSAL_PAUSE_S)

    def run(self) -> tuple[float, int]:
        """(seconds from the kill to the first acknowledged write, writes sent)."""
        threads = [
            threading.Thread(target=self._worker, args=(i,), daemon=True, name=f"probe-{i}")
            for i in range(PROBE_WORKERS)
        ]
        for t in threads:
            t.start()
        self.done.wait(self.deadline_s + PROBE_TIMEOUT_S)
        self.done.set()  # the workers stop after their current write (<= PROBE_TIMEOUT_S)
        for t in threads:
            t.join(PROBE_TIMEOUT_S + 1.0)
        if self.first is None:
            raise TimeoutError(
                f"{self.system.name}: no write acknowledged {self.deadline_s:g} s after the kill"
            )
        return self.first, self.attempts


def measure_failover(
    system: FailoverSystem, trial: int, deadline_s: float = 60.0
) -> FailoverResult:
    """One kill -9 of the leader and the time to the first acknowledged write."""
    system.wait_ready(READY_TIMEOUT_S)
    before = system.leadership()
    if before is None:
        raise RuntimeError(f"{system.name}: no leader before the failover trial")
    survivors = [url for member, url in system.urls.items() if member != before.leader]
    probe = _Probe(system, survivors, deadline_s)
    probe.killed_at = time.monotonic()
    system.kill9(before.leader)
    try:
        seconds, attempts = probe.run()
        after = system.leadership()
    finally:
        system.restart(before.leader)
    system.wait_ready(READY_TIMEOUT_S)
    return FailoverResult(
        system=system.name,
        trial=trial,
        killed=before.leader,
        term_before=before.term,
        seconds=seconds,
        attempts=attempts,
        new_leader=None if after is None else after.leader,
    )
