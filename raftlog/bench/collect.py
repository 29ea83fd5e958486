"""Everything a run measured, and what is made of it: rows, curves, CDFs, JSON, plots.

Contracts: ``figures(system, key, metric)`` maps repetition -> figure over *valid*
points only (``metric`` "ops", "p50" or "p99"; key "failover" maps trial -> seconds).
``rows()`` builds every row of ``report.ROWS``; a row without figures says why (etcd
not run, client rows skipped, every attempt invalid). ``report(say)`` prints the
table and the notes, writes the JSON (``options.json_path``) with every raw figure
and the plots (``options.plots_dir``); a missing matplotlib is a note, not a failure.
Main thread.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raftlog import __version__
from raftlog.bench.failover import FailoverResult
from raftlog.bench.plots import matplotlib_missing, render_plots
from raftlog.bench.report import ROWS, Row, Spread, build_row, ratios, render_table
from raftlog.bench.workloads import CURVE_CONNECTIONS, PointResult

if TYPE_CHECKING:
    from raftlog.bench.runner import BenchOptions

__all__ = ["Collected"]

_METRICS: dict[str, Callable[[PointResult], float]] = {
    "ops": lambda r: r.ops_per_s,
    "p50": lambda r: r.p50_ms,
    "p99": lambda r: r.p99_ms,
}
LABELS = {"raftlog": "raftlog appends", "etcd": "etcd puts"}


def _spread_json(s: Spread | None) -> dict[str, float] | None:
    return None if s is None else {"min": s.low, "median": s.median, "max": s.high}


@dataclass
class Collected:
    options: BenchOptions
    attempts: list[PointResult] = field(default_factory=list)
    failovers: list[FailoverResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    etcd_skipped: str | None = None
    pids: list[int] = field(default_factory=list)
    started_utc: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )

    def describe(self, system: Any, root: Path) -> None:
        """Record a cluster's members and commands (for the JSON), with the run's temp
        dir written as ``$BENCH_DIR`` and this interpreter as ``python``, so a shared
        JSON names no path of the machine it ran on."""

        def portable(word: str) -> str:
            if word == sys.executable:
                return "python"
            return word.replace(str(root), "$BENCH_DIR")

        self.systems[system.name] = {
            "members": dict(system.urls),
            "commands": {m: [portable(w) for w in system.command(m)] for m in system.urls},
        }

    def figures(self, system: str, key: str, metric: str) -> dict[int, float]:
        if key == "failover":
            return {f.trial: f.seconds for f in self.failovers if f.system == system}
        pick = _METRICS[metric]
        return {
            r.repetition: pick(r)
            for r in self.attempts
            if r.system == system and r.key == key and r.valid
        }

    def _why_empty(self, key: str) -> str:
        if key.startswith(("async_client", "sync_client")):
            return next((n for n in self.notes if "client" in n), "not run")
        if any(r.key == key for r in self.attempts):
            return "every attempt had a leader change"
        return "not run"

    def rows(self) -> list[Row]:
        rows = []
        for spec in ROWS:
            subject = self.figures("raftlog", *spec.subject)
            baseline = self.figures(spec.baseline_system, *spec.baseline) if spec.baseline else {}
            rows.append(build_row(spec, subject, baseline, self._why_empty(spec.subject[0])))
        return rows

    def curves(self) -> dict[str, dict[int, tuple[float, float, float]]]:
        curves = {}
        for system, label in LABELS.items():
            points = {}
            for c in CURVE_CONNECTIONS:
                s = Spread.of(list(self.figures(system, f"append@{c}", "ops").values()))
                if s is not None:
                    points[c] = (s.low, s.median, s.high)
            if points:
                curves[label] = points
        return curves

    def cdfs(self) -> dict[str, list[tuple[float, float]]]:
        """Latency percentiles of the median repetition of appends/puts at 1 and 64."""
        cdfs = {}
        for system, label in LABELS.items():
            for c in (1, 64):
                valid = [
                    r for r in self.attempts
                    if r.system == system and r.key == f"append@{c}" and r.valid
                ]  # fmt: skip
                if valid:
                    valid.sort(key=lambda r: r.ops_per_s)
                    cdfs[f"{label}, {c} conn"] = valid[len(valid) // 2].percentiles_ms
        return cdfs

    def to_json(self, rows: list[Row], table: str) -> dict[str, Any]:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()}
        return {
            "tool": "raftlog bench",
            "raftlog_version": __version__,
            "started_utc": self.started_utc,
            "options": options,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "systems": self.systems,
            "etcd_skipped": self.etcd_skipped,
            "pids": self.pids,
            "rows": [
                {
                    "name": row.spec.name,
                    "unit": row.spec.unit,
                    "raftlog": _spread_json(row.subject),
                    "baseline_system": row.spec.baseline_system,
                    "baseline": _spread_json(row.baseline),
                    "ratio": _spread_json(row.ratio),
                    "ratios": ratios(
                        self.figures("raftlog", *row.spec.subject),
                        self.figures(row.spec.baseline_system, *row.spec.baseline)
                        if row.spec.baseline
                        else {},
                    ),
                    "floor": row.spec.target_text("floor"),
                    "goal": row.spec.target_text("goal"),
                    "met": row.met,
                    "note": row.note if row.subject is None else "",
                }
                for row in rows
            ],
            "points": [r.to_json() for r in self.attempts],
            "invalid_points": sum(1 for r in self.attempts if not r.valid),
            "failovers": [f.to_json() for f in self.failovers],
            "curves": {k: {str(c): v for c, v in p.items()} for k, p in self.curves().items()},
            "notes": self.notes,
            "table": table,
        }

    def report(self, say: Callable[[str], None]) -> None:
        rows = self.rows()
        table = render_table(rows)
        invalid = [r for r in self.attempts if not r.valid]
        if invalid:
            self.notes.append(
                f"{len(invalid)} point attempt(s) saw a leader change and were redone or "
                "left out: "
                + ", ".join(f"{r.system} {r.key} rep {r.repetition + 1}" for r in invalid)
            )
        say("\n" + table)
        say(
            "\nmet? is judged on the median ratio: goal, floor (floor met, goal not), no, "
            "n/a (nothing to compare)."
        )
        for note in self.notes:
            say(f"note: {note}")
        if self.options.plots_dir is not None:
            missing = matplotlib_missing()
            if missing:
                self.notes.append(missing)
                say(f"note: {missing}")
            else:
                for path in render_plots(self.curves(), self.cdfs(), self.options.plots_dir):
                    say(f"wrote {path}")
        if self.options.json_path is not None:
            data = self.to_json(rows, table)
            self.options.json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            say(f"wrote {self.options.json_path}")
