"""Locust's CSV statistics, read back, and the run's summary (pure; no Locust).

Locust's ``--csv PREFIX`` writes ``PREFIX_stats.csv`` (one row per request type and
name, then ``Aggregated``), ``PREFIX_failures.csv`` and ``PREFIX_exceptions.csv``,
rewriting them about once a second while it runs and not again at the end, so they can
miss the last second's requests; ``--json-file PREFIX`` writes ``PREFIX.json`` once the
users have stopped: the verdict's figures come from there (requests/s over the whole
run, percentiles from Locust's rounded response times).
Events this load test reports under names of their own (``APPEND outcome_unknown``,
``APPEND not_fully_replicated``) are successes there; the summary counts them apart.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RunSummary",
    "StatRow",
    "parse_timespan",
    "read_failures",
    "read_stats_json",
]

OUTCOME_UNKNOWN = ("APPEND", "outcome_unknown")
NOT_FULLY_REPLICATED = ("APPEND", "not_fully_replicated")


def parse_timespan(text: str) -> int:
    """Seconds in a Locust time span: ``20``, ``20s``, ``3m``, ``1h30m``, ``1m30s``."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or match is None:
        raise ValueError(f"not a time span: {text!r} (e.g. 20s, 3m, 1h30m)")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class StatRow:
    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def _percentile(times: dict[float, int], share: float) -> float:
    """The smallest (Locust-rounded) response time with at least ``share`` of the samples
    at or below it; 0 without samples."""
    total = sum(times.values())
    seen = 0
    for ms in sorted(times):
        seen += times[ms]
        if seen >= share * total:
            return ms
    return 0.0


def _span(entries: list[dict[str, Any]]) -> float:
    """Seconds from the first entry's start to the last request of any."""
    start = min(float(e["start_time"]) for e in entries)
    return max(float(e.get("last_request_timestamp") or start) for e in entries) - start


def _row(type_: str, name: str, entries: list[dict[str, Any]], span_s: float) -> StatRow:
    times: dict[float, int] = {}
    for e in entries:
        for ms, count in e.get("response_times", {}).items():
            times[float(ms)] = times.get(float(ms), 0) + int(count)
    requests = sum(int(e["num_requests"]) for e in entries)
    return StatRow(
        type=type_,
        name=name,
        requests=requests,
        failures=sum(int(e["num_failures"]) for e in entries),
        rps=requests / span_s if span_s > 0 else 0.0,
        p50_ms=_percentile(times, 0.50),
        p95_ms=_percentile(times, 0.95),
        p99_ms=_percentile(times, 0.99),
    )


def read_stats_json(path: Path) -> list[StatRow]:
    """The final statistics of ``--json-file PREFIX`` (``PREFIX.json``, written once the
    users have stopped), one row per request type and name, then ``Aggregated``."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not entries:
        return []
    span = _span(entries)  # every row's rate is over the whole run
    by_name = sorted(entries, key=lambda e: (e["name"], e["method"]))
    rows = [_row(e["method"], e["name"], [e], span) for e in by_name]
    return [*rows, _row("", "Aggregated", entries, span)]


def read_failures(path: Path) -> list[dict[str, str]]:
    """The rows of ``PREFIX_failures.csv`` / ``PREFIX_exceptions.csv`` (empty if absent)."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass
class RunSummary:
    """What ``run.py`` prints and writes to ``summary.json``. ``ok`` is the verdict:
    Locust ended normally with no failure and no exception, and the presence check
    passed (outcome-unknown events are listed, never failures)."""

    urls: list[str]
    run_id: str
    profile: str
    locust_exit_code: int | None
    stats: list[StatRow]
    failures: list[dict[str, str]]
    exceptions: list[dict[str, str]]
    presence: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def _count(self, key: tuple[str, str]) -> int:
        return sum(r.requests for r in self.stats if (r.type, r.name) == key)

    @property
    def total(self) -> StatRow | None:
        return next((r for r in self.stats if r.name == "Aggregated"), None)

    @property
    def ok(self) -> bool:
        total = self.total
        return (
            not self.problems
            and self.locust_exit_code == 0
            and total is not None
            and total.requests > 0
            and total.failures == 0
            and not self.exceptions
            and bool(self.presence.get("ok"))
        )

    def to_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "ok": self.ok,
            "urls": self.urls,
            "run_id": self.run_id,
            "profile": self.profile,
            "locust_exit_code": self.locust_exit_code,
            "requests": total.requests if total else 0,
            "failures": total.failures if total else 0,
            "requests_per_s": total.rps if total else 0.0,
            "outcome_unknown": self._count(OUTCOME_UNKNOWN),
            "not_fully_replicated": self._count(NOT_FULLY_REPLICATED),
            "exceptions": len(self.exceptions),
            "stats": [asdict(r) for r in self.stats],
            "failure_list": self.failures,
            "exception_list": self.exceptions,
            "presence": self.presence,
            "problems": self.problems,
        }

    def lines(self) -> list[str]:
        d = self.to_dict()
        out = [
            f"{'type':<7} {'name':<40} {'reqs':>7} {'fail':>5} {'req/s':>8} {'p50':>6} {'p95':>6}"
        ]
        for r in self.stats:
            out.append(
                f"{r.type:<7} {r.name:<40} {r.requests:>7} {r.failures:>5} {r.rps:>8.1f} "
                f"{r.p50_ms:>6.0f} {r.p95_ms:>6.0f}"
            )
        presence = self.presence
        out += [
            f"requests {d['requests']}, failures {d['failures']}, "
            f"{d['requests_per_s']:.1f} req/s; outcome_unknown {d['outcome_unknown']}, "
            f"not_fully_replicated {d['not_fully_replicated']}, exceptions {d['exceptions']}",
            f"presence check: {'passed' if presence.get('ok') else 'FAILED'}: "
            f"{presence.get('acknowledged_checked', 0)} acknowledged writes present once at "
            f"their offsets; {presence.get('maybe_written_present', 0)} of "
            f"{presence.get('maybe_written', 0)} maybe-written (202 ack=leader, "
            f"outcome_unknown, in flight at the end) present",
        ]
        out += [
            f"  failure: {f.get('Name')}: {f.get('Error')} x{f.get('Occurrences')}"
            for f in self.failures
        ]
        out += [f"  exception: {e.get('Message', e)}" for e in self.exceptions[:5]]
        out += [f"  violation: {v}" for v in presence.get("violations", [])[:20]]
        out += [f"  problem: {p}" for p in self.problems]
        out.append("RESULT: " + ("ok" if self.ok else "FAILED"))
        return out
