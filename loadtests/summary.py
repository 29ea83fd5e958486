"""Locust's CSV statistics, read back, and the run's summary (pure; no Locust).

Locust's ``--csv PREFIX`` writes ``PREFIX_stats.csv`` (one row per request type and
name, then ``Aggregated``), ``PREFIX_failures.csv`` and ``PREFIX_exceptions.csv``.
Events this load test reports under names of their own (``APPEND outcome_unknown``,
``APPEND not_fully_replicated``) are successes there; the summary counts them apart.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunSummary", "StatRow", "parse_timespan", "read_failures", "read_stats"]

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


def _float(row: dict[str, str], key: str) -> float:
    text = row.get(key, "")
    try:
        return float(text)
    except ValueError:
        return 0.0  # Locust writes "N/A" where a percentile has no samples


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


def read_stats(path: Path) -> list[StatRow]:
    """Every row of ``PREFIX_stats.csv``, ``Aggregated`` last (as Locust writes it)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [
            StatRow(
                type=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=_float(row, "Requests/s"),
                p50_ms=_float(row, "50%"),
                p95_ms=_float(row, "95%"),
                p99_ms=_float(row, "99%"),
            )
            for row in csv.DictReader(f)
        ]


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
            f"{'type':<7} {'name':<36} {'reqs':>7} {'fail':>5} {'req/s':>8} {'p50':>6} {'p95':>6}"
        ]
        for r in self.stats:
            out.append(
                f"{r.type:<7} {r.name:<36} {r.requests:>7} {r.failures:>5} {r.rps:>8.1f} "
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
