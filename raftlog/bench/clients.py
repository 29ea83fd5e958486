"""The Python client rows: ``AsyncClient`` (32 tasks) and the sync ``Client`` beside wrk.

The load loops live in ``raftlog.client.load`` (written beside this package); it is
imported lazily so a tree without it still benchmarks everything else. Contracts:

* ``client_load_missing()`` is ``None`` when ``raftlog.client.load`` has both
  ``run_async_appends`` and ``run_sync_appends``, else a sentence saying what is
  missing (the rows are then skipped with that message).
* ``client_measure(kind, connections, duration_s)`` returns a ``Measure`` for
  ``raftlog.bench.workloads.run_point``: it calls the loader with keyword arguments
  ``urls, connections, duration_s, value_bytes`` and reads the result's successes
  (``ok`` or ``ops``), ``errors`` (a count, or a mapping code -> count), latencies in
  seconds (``latencies_s`` or ``latencies``) and its duration (``elapsed_s`` or
  ``duration_s``, else the time the call took), from attributes or mapping keys
  (``raftlog.client.load.LoadFigures`` has the first of each). A result of another shape
  raises ``TypeError``.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import time
from collections.abc import Sequence
from typing import Any

from raftlog.bench.clusters import VALUE_BYTES
from raftlog.bench.workloads import Measure, PointResult

__all__ = ["ASYNC", "SYNC", "client_load_missing", "client_measure", "figures_of"]

ASYNC, SYNC = "async_client", "sync_client"
_FUNCTIONS = {ASYNC: "run_async_appends", SYNC: "run_sync_appends"}


def _module() -> Any:
    return importlib.import_module("raftlog.client.load")


def client_load_missing() -> str | None:
    try:
        module = _module()
    except ImportError as exc:
        return f"raftlog.client.load is not available ({exc}); client rows skipped"
    absent = [name for name in _FUNCTIONS.values() if not callable(getattr(module, name, None))]
    if absent:
        return f"raftlog.client.load has no {', '.join(absent)}; client rows skipped"
    return None


def _field(result: Any, name: str) -> Any:
    if isinstance(result, dict):
        return result.get(name)
    return getattr(result, name, None)


def _quantile(sorted_ms: Sequence[float], p: float) -> float:
    if not sorted_ms:
        return 0.0
    index = min(len(sorted_ms) - 1, max(0, round(p / 100.0 * len(sorted_ms)) - 1))
    return sorted_ms[index]


def _first(result: Any, *names: str) -> Any:
    for name in names:
        value = _field(result, name)
        if value is not None:
            return value
    return None


def figures_of(result: Any, elapsed_s: float) -> tuple[float, int, list[float]]:
    """(ops/s, errors, sorted latencies in ms) from a loader's result (module docstring)."""
    ops = _first(result, "ok", "ops")
    errors = _first(result, "errors")
    latencies = _first(result, "latencies_s", "latencies")
    if isinstance(errors, dict):  # errors by code -> count
        errors = sum(int(n) for n in errors.values())
    if not isinstance(ops, int) or not isinstance(errors, int):
        raise TypeError(f"unexpected result from raftlog.client.load: {result!r:.200}")
    duration = _first(result, "elapsed_s", "duration_s")
    seconds = float(duration) if isinstance(duration, int | float) and duration > 0 else elapsed_s
    ms = sorted(float(x) * 1000.0 for x in (latencies or []))
    return ops / seconds if seconds > 0 else 0.0, errors, ms


def client_measure(kind: str, connections: int, duration_s: float) -> Measure:
    """A ``Measure`` running the Python client ``kind`` (ASYNC or SYNC)."""
    function = getattr(_module(), _FUNCTIONS[kind])

    def measure(urls: list[str]) -> PointResult:
        kwargs = {
            "urls": urls,
            "connections": connections,
            "duration_s": duration_s,
            "value_bytes": VALUE_BYTES,
        }
        started = time.monotonic()
        result = asyncio.run(function(**kwargs)) if kind == ASYNC else function(**kwargs)
        ops_per_s, errors, ms = figures_of(result, time.monotonic() - started)
        return PointResult(
            system="raftlog",
            key=f"{kind}@{connections}",
            repetition=0,
            attempt=0,
            valid=False,
            before=None,
            after=None,
            ops_per_s=ops_per_s,
            p50_ms=statistics.median(ms) if ms else 0.0,
            p99_ms=_quantile(ms, 99.0),
            raw=[{"ops_per_s": ops_per_s, "errors": errors, "samples": len(ms)}],
        )

    return measure
