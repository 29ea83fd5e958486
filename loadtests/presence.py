"""The end-of-run presence check: every acknowledged write is in its log exactly once, at
the offset it was acknowledged at; nothing else is there.

Per log the recorded appends (``loadtests.records``) become a fault-suite History and the
log read back with ``consistency=quorum`` becomes the final log; the fault suite's own
checkers judge them (``tests/fault/harness/checker.py``):

* H0 well-formed history (unique values), I1 no acknowledged append lost, I2 each at its
  acknowledged offset, I3 no value twice and no value nobody sent, I7 a definitely refused
  append is absent.

So an append whose outcome is unknown (504 ``outcome_unknown``, ``ack=leader``'s 202, a
request in flight when the run stopped) may be present at most once, or absent. Besides,
the log read back must be dense from offset 0 (offsets are its positions). The repository
root must be importable (``tests`` is a package there); ``run.py`` sees to it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests.records import AppendRecord
from tests.fault.harness.checker import (
    Violation,
    check_duplicates_phantoms,
    check_failed_absent,
    check_history,
    check_lost,
    check_offsets,
)
from tests.fault.harness.history import History, Op

__all__ = ["LogReport", "PresenceReport", "check_presence", "final_values", "history_of"]

# (offset, value) pairs of one log in offset order, as read back.
ReadBack = Sequence[tuple[int, Any]]
# log name -> its entries from offset 0 (raises when the log cannot be read).
Reader = Callable[[str], ReadBack]


def value_id(value: Any) -> str:
    """The id a load writer put in ``value["w"]``; any other value (something nobody in
    this run wrote) is named by its JSON text, so I3 reports it as a phantom."""
    if isinstance(value, dict) and isinstance(value.get("w"), str):
        return str(value["w"])
    return "not-a-load-value:" + json.dumps(value, sort_keys=True)[:200]


def final_values(entries: ReadBack) -> tuple[list[str], list[Violation]]:
    """The value ids in offset order, and a violation for each offset out of place (the
    checkers take position i for offset i)."""
    out: list[str] = []
    bad: list[Violation] = []
    for position, (offset, value) in enumerate(entries):
        if offset != position:
            bad.append(Violation("DENSE", f"entry {position} read back has offset {offset}"))
        out.append(value_id(value))
    return out, bad


def history_of(records: Iterable[AppendRecord]) -> History:
    """The fault-suite History of these appends (kind "append", value = its id)."""
    return History(
        [
            Op(
                process=r.user,
                kind="append",
                value=r.value,
                invoke=r.invoke,
                complete=r.complete,
                outcome=r.outcome,
                offset=r.offset,
                node=r.node,
                error=r.error,
            )
            for r in records
        ]
    )


@dataclass
class LogReport:
    log: str
    entries: int
    acknowledged: int  # ok appends: must be present once, at their offset
    maybe_written: int  # unknown outcome: present at most once, or absent
    maybe_present: int  # of those, how many are in the log
    refused: int  # definite failures: must be absent
    violations: list[str] = field(default_factory=list)


@dataclass
class PresenceReport:
    logs: list[LogReport]

    @property
    def ok(self) -> bool:
        return all(not log.violations for log in self.logs)

    @property
    def acknowledged(self) -> int:
        return sum(log.acknowledged for log in self.logs)

    @property
    def maybe_written(self) -> int:
        return sum(log.maybe_written for log in self.logs)

    @property
    def maybe_present(self) -> int:
        return sum(log.maybe_present for log in self.logs)

    @property
    def violations(self) -> list[str]:
        return [f"{log.log}: {v}" for log in self.logs for v in log.violations]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "acknowledged_checked": self.acknowledged,
            "maybe_written": self.maybe_written,
            "maybe_written_present": self.maybe_present,
            "logs": [vars(log) for log in self.logs],
            "violations": self.violations,
        }


def check_log(log: str, records: Sequence[AppendRecord], entries: ReadBack) -> LogReport:
    """Judge one log's read-back against the appends sent to it (module docstring)."""
    final, problems = final_values(entries)
    history = history_of(records)
    violations = problems + check_history(history)
    for check in (check_lost, check_offsets, check_duplicates_phantoms, check_failed_absent):
        violations += check(history, final)
    present = set(final)
    maybe = [r for r in records if r.outcome == "unknown"]
    return LogReport(
        log=log,
        entries=len(final),
        acknowledged=sum(r.outcome == "ok" for r in records),
        maybe_written=len(maybe),
        maybe_present=sum(r.value in present for r in maybe),
        refused=sum(r.outcome == "fail" for r in records),
        violations=[str(v) for v in violations],
    )


def check_presence(records: Iterable[AppendRecord], read: Reader) -> PresenceReport:
    """Check every log the records name, reading each with ``read`` (a read that raises
    is a violation of that log: its acknowledged writes could not be shown present)."""
    by_log: dict[str, list[AppendRecord]] = defaultdict(list)
    for record in records:
        by_log[record.log].append(record)
    reports = []
    for log in sorted(by_log):
        ops = by_log[log]
        try:
            entries = read(log)
        except Exception as exc:  # any failure to read back fails the check, with the cause
            reports.append(
                LogReport(
                    log=log,
                    entries=0,
                    acknowledged=sum(r.outcome == "ok" for r in ops),
                    maybe_written=sum(r.outcome == "unknown" for r in ops),
                    maybe_present=0,
                    refused=sum(r.outcome == "fail" for r in ops),
                    violations=[f"could not read the log back: {exc!r}"],
                )
            )
            continue
        reports.append(check_log(log, ops, entries))
    return PresenceReport(reports)
