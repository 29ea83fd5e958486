"""The steady-state points of a benchmark run, and the leader-change check.

A point is one workload at one concurrency against one system: wrk processes (or a
Python client) run for ``duration_s`` against the leader, or against every member
for the spread reads. Contracts:

* ``requests_for(system, workload)`` is what wrk sends (the same sizes for both:
  100-byte values; reads pick one of ``READ_KEYS`` prefilled entries/keys at random).
* ``run_point`` reads ``leadership()`` before and after the load. A point during which
  the leader or the term changed (or no leader was known) is invalid: the cluster is
  given time to settle and the point is redone, up to ``retries`` times; the last
  attempt is returned as invalid if none was valid. Every attempt is kept.
* Figures: ``ops_per_s`` is acknowledged operations (status < 400) per second, summed
  over the wrk processes of a point, times the entries per request for batches;
  ``p50_ms``/``p99_ms`` are those of the first (for spread reads: the median p50 and
  the highest p99 of the three) wrk process.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from raftlog.bench.clusters import (
    APPEND_LOG,
    READ_KEYS,
    READ_LOG,
    Leadership,
    etcd_key,
    value_text,
)
from raftlog.bench.procs import Spawner
from raftlog.bench.wrk import RequestSpec, WrkResult, finish_wrk, lua_script, start_wrk

__all__ = [
    "ANY_READ",
    "APPEND",
    "BATCH",
    "BATCH_SIZE",
    "CLIENT_TASKS",
    "CURVE_CONNECTIONS",
    "QUORUM_READ",
    "Measure",
    "Point",
    "PointResult",
    "System",
    "leadership_unchanged",
    "requests_for",
    "run_point",
    "steady_points",
    "wrk_measure",
]

APPEND, BATCH, QUORUM_READ, ANY_READ = "append", "batch", "quorum_read", "any_read"
BATCH_SIZE = 100
CURVE_CONNECTIONS = (1, 4, 16, 64)
CLIENT_TASKS = 32  # the AsyncClient row's tasks
SETTLE_TIMEOUT_S = 60.0


class System(Protocol):
    """What a point needs of a cluster (``raftlog.bench.clusters``)."""

    name: str
    urls: dict[str, str]

    def leadership(self) -> Leadership | None: ...
    def wait_ready(self, timeout: float) -> None: ...
    def check_alive(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Point:
    """One workload at one concurrency. ``spread``: ``connections`` to every member at
    once (three wrk processes), else all of them to the leader."""

    workload: str
    connections: int
    spread: bool = False

    @property
    def key(self) -> str:
        return f"{self.workload}@{self.connections}{'x3' if self.spread else ''}"


def steady_points(system: str) -> list[Point]:
    """Every wrk point of one repetition for ``system``, in run order."""
    points = [Point(APPEND, c) for c in CURVE_CONNECTIONS]
    if system == "raftlog":
        # wrk at the AsyncClient's concurrency, for its row; batches have no etcd twin
        points += [Point(APPEND, CLIENT_TASKS), Point(BATCH, 16)]
    points += [Point(QUORUM_READ, 16), Point(ANY_READ, 6, spread=True)]
    return points


@dataclass
class PointResult:
    """One attempt at a point (raw figures kept for the JSON)."""

    system: str
    key: str
    repetition: int
    attempt: int
    valid: bool
    before: Leadership | None
    after: Leadership | None
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    percentiles_ms: list[tuple[float, float]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def lead(v: Leadership | None) -> dict[str, Any] | None:
            return None if v is None else {"leader": v.leader, "term": v.term}

        return {
            "system": self.system,
            "point": self.key,
            "repetition": self.repetition,
            "attempt": self.attempt,
            "valid": self.valid,
            "leadership_before": lead(self.before),
            "leadership_after": lead(self.after),
            "ops_per_s": self.ops_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "percentiles_ms": [[p, ms] for p, ms in self.percentiles_ms],
            "raw": self.raw,
        }


def leadership_unchanged(before: Leadership | None, after: Leadership | None) -> bool:
    """True when a leader was known before and after and it is the same one, same term."""
    return before is not None and after is not None and before == after


def requests_for(system: str, workload: str) -> RequestSpec:
    """What wrk sends for ``workload`` to ``system`` ("raftlog" or "etcd")."""
    value = value_text()
    if system == "raftlog":
        if workload == APPEND:
            body = json.dumps({"value": value})
            return RequestSpec("POST", (f"/v1/logs/{APPEND_LOG}/entries",), (body,))
        if workload == BATCH:
            body = json.dumps({"entries": [{"value": value}] * BATCH_SIZE})
            return RequestSpec("POST", (f"/v1/logs/{APPEND_LOG}/entries",), (body,))
        if workload in (QUORUM_READ, ANY_READ):
            level = "quorum" if workload == QUORUM_READ else "any"
            paths = tuple(
                f"/v1/logs/{READ_LOG}/entries/{i}?consistency={level}" for i in range(READ_KEYS)
            )
            return RequestSpec("GET", paths)
    elif system == "etcd":
        if workload == APPEND:
            body = json.dumps({"key": etcd_key("bench-put"), "value": etcd_key(value)})
            return RequestSpec("POST", ("/v3/kv/put",), (body,))
        if workload in (QUORUM_READ, ANY_READ):
            extra = {"serializable": True} if workload == ANY_READ else {}
            bodies = tuple(
                json.dumps({"key": etcd_key(f"bench-read-{i:04d}"), **extra})
                for i in range(READ_KEYS)
            )
            return RequestSpec("POST", ("/v3/kv/range",), bodies)
    raise ValueError(f"no {workload!r} workload for {system!r}")


Measure = Callable[[list[str]], PointResult]


def _from_wrk(system: str, point: Point, results: list[WrkResult]) -> PointResult:
    scale = BATCH_SIZE if point.workload == BATCH else 1
    first = results[0]
    p50 = statistics.median(r.percentile(50.0) for r in results)
    p99 = max(r.percentile(99.0) for r in results)
    return PointResult(
        system=system,
        key=point.key,
        repetition=0,
        attempt=0,
        valid=False,
        before=None,
        after=None,
        ops_per_s=sum(r.ok_per_s for r in results) * scale,
        p50_ms=p50,
        p99_ms=p99,
        percentiles_ms=list(first.percentiles),
        raw=[r.to_json() for r in results],
    )


def wrk_measure(
    spawner: Spawner, scripts_dir: Path, system: str, point: Point, duration_s: float
) -> Measure:
    """A ``Measure`` running wrk for ``point`` against the URLs it is given."""
    script = scripts_dir / f"{system}-{point.workload}.lua"
    if not script.exists():
        script.write_text(lua_script(requests_for(system, point.workload)), encoding="utf-8")

    def measure(urls: list[str]) -> PointResult:
        procs = [start_wrk(spawner, u, script, point.connections, duration_s) for u in urls]
        return _from_wrk(system, point, [finish_wrk(p, duration_s) for p in procs])

    return measure


def run_point(
    system: System,
    point: Point,
    measure: Measure,
    *,
    repetition: int,
    retries: int,
    attempts: list[PointResult],
) -> PointResult:
    """Measure ``point`` with the leadership check (module docstring). Every attempt is
    appended to ``attempts``; returns the valid one, or the last invalid one."""
    result: PointResult | None = None
    for attempt in range(retries + 1):
        system.wait_ready(SETTLE_TIMEOUT_S)
        before = system.leadership()
        if before is None:
            continue
        urls = list(system.urls.values()) if point.spread else [system.urls[before.leader]]
        result = measure(urls)
        system.check_alive()
        result.after = system.leadership()
        result.before, result.repetition, result.attempt = before, repetition, attempt
        result.valid = leadership_unchanged(before, result.after)
        attempts.append(result)
        if result.valid:
            return result
    if result is None:
        raise RuntimeError(f"{system.name}: no stable leader for {point.key}")
    return result
