"""The load test's end-of-run presence check (loadtests/presence.py) and the pure pieces
under the Locust users: the record file, the reading of answers by the error contract,
the step plan and the summary. Nothing here imports Locust (it monkey-patches the
process).

The negative controls feed the check a fabricated read-back in which an acknowledged
write is missing, duplicated, moved, joined by a value nobody sent, or in which a
refused write appears, and assert that it fails naming the fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.outcomes import classify_append, classify_head, classify_read
from loadtests.presence import ReadBack, check_presence
from loadtests.records import AppendRecord, OpRecorder, load_records
from loadtests.steps import StepPlan
from loadtests.summary import RunSummary, StatRow, parse_timespan, read_stats_json

pytestmark = pytest.mark.unit

LOG = "load-run-0"


def rec(value: str, outcome: str, offset: int | None = None, t: float = 0.0) -> AppendRecord:
    return AppendRecord(
        value=value,
        log=LOG,
        node="http://127.0.0.1:1",
        ack="quorum",
        user=1,
        invoke=t,
        complete=t + 0.01,
        outcome=outcome,  # type: ignore[arg-type]
        offset=offset,
        finished=True,
    )


def entries(*values: Any) -> ReadBack:
    return [(i, {"w": v, "pad": "x"} if isinstance(v, str) else v) for i, v in enumerate(values)]


def judge(records: list[AppendRecord], read_back: ReadBack) -> list[str]:
    report = check_presence(records, lambda log: read_back)
    assert report.ok == (not report.violations)
    return report.violations


ACKED = [rec("a", "ok", 0), rec("b", "ok", 1, 1.0), rec("c", "ok", 2, 2.0)]


def test_every_acknowledged_write_present_once_at_its_offset_passes() -> None:
    report = check_presence(ACKED, lambda log: entries("a", "b", "c"))
    assert report.ok
    assert report.acknowledged == 3


def test_a_missing_acknowledged_write_fails() -> None:
    violations = judge(ACKED, entries("a", "b"))
    assert any(v.startswith(f"{LOG}: I1") and "'c'" in v for v in violations), violations


def test_a_duplicated_acknowledged_write_fails() -> None:
    violations = judge(ACKED, entries("a", "b", "c", "b"))
    assert any("I3" in v and "'b' appears 2 times" in v for v in violations), violations


def test_a_write_at_another_offset_than_acknowledged_fails() -> None:
    violations = judge(ACKED, entries("b", "a", "c"))
    assert any("I2" in v and "'a'" in v for v in violations), violations


def test_a_value_nobody_sent_fails() -> None:
    assert any("I3" in v and "phantom" in v for v in judge(ACKED, entries("a", "b", "c", "z")))
    foreign = [*entries("a", "b", "c"), (3, {"something": "else"})]
    assert any("phantom" in v for v in judge(ACKED, foreign))


def test_a_refused_write_that_is_present_fails() -> None:
    refused = [*ACKED, rec("r", "fail", t=3.0)]
    assert any("I7" in v and "'r'" in v for v in judge(refused, entries("a", "b", "c", "r")))


def test_a_gap_in_the_offsets_read_back_fails() -> None:
    gapped = [(0, {"w": "a"}), (1, {"w": "b"}), (3, {"w": "c"})]
    assert any("DENSE" in v for v in judge(ACKED, gapped))


def test_a_maybe_written_append_may_be_absent_or_present_once_but_not_twice() -> None:
    records = [*ACKED, rec("u", "unknown", t=3.0)]
    absent = check_presence(records, lambda log: entries("a", "b", "c"))
    assert absent.ok and absent.maybe_written == 1 and absent.maybe_present == 0
    present = check_presence(records, lambda log: entries("a", "b", "c", "u"))
    assert present.ok and present.maybe_present == 1
    assert any("'u' appears 2 times" in v for v in judge(records, entries("a", "b", "c", "u", "u")))


def test_a_log_that_cannot_be_read_back_fails() -> None:
    def broken(log: str) -> ReadBack:
        raise ConnectionError("no node answered")

    report = check_presence(ACKED, broken)
    assert not report.ok
    assert report.acknowledged == 3
    assert "could not read the log back" in report.violations[0]


def test_each_log_is_judged_against_its_own_writes() -> None:
    other = AppendRecord("x", "load-run-1", "n", "quorum", 2, 0.0, 0.1, "ok", 0, None, True)
    logs = {LOG: entries("a", "b", "c"), "load-run-1": entries("x")}
    assert check_presence([*ACKED, other], lambda log: logs[log]).ok
    swapped = {LOG: entries("x"), "load-run-1": entries("a", "b", "c")}
    assert not check_presence([*ACKED, other], lambda log: swapped[log]).ok


# -- the record file ----------------------------------------------------------------------


def test_records_round_trip_and_an_append_in_flight_stays_unknown(tmp_path: Path) -> None:
    recorder = OpRecorder(tmp_path)
    recorder.invoke("a", LOG, "http://n1", "quorum", 1, 1.0)
    recorder.done("a", "ok", 1.5, 0, None)
    recorder.invoke("b", LOG, "http://n2", "all", 2, 2.0)  # never finished
    recorder.invoke("c", LOG, "http://n3", "leader", 3, 3.0)
    recorder.done("c", "fail", 3.5, None, "503 no_leader")
    recorder.close()
    with open(recorder.path, "a", encoding="utf-8") as f:
        f.write('{"e":"done","v":"b"')  # a torn last line: skipped
    got = {r.value: r for r in load_records(tmp_path)}
    assert (got["a"].outcome, got["a"].offset, got["a"].complete) == ("ok", 0, 1.5)
    assert (got["b"].outcome, got["b"].finished, got["b"].ack) == ("unknown", False, "all")
    assert (got["c"].outcome, got["c"].error) == ("fail", "503 no_leader")


# -- answers by the error contract -------------------------------------------------------


def err(code: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": "m", **details}}


@pytest.mark.parametrize(
    ("status", "body", "history", "event", "failed"),
    [
        (201, {"offset": 4, "index": 9}, "ok", None, False),
        (202, {"log": LOG, "accepted": True}, "unknown", None, False),
        (504, err("outcome_unknown"), "unknown", "outcome_unknown", False),
        (
            504,
            err("not_fully_replicated", committed=True, offset=7),
            "ok",
            "not_fully_replicated",
            False,
        ),
        (503, err("no_leader"), "fail", None, True),
        (429, err("overloaded"), "fail", None, True),
        (409, err("offset_mismatch"), "fail", None, True),
        (400, err("invalid_request"), "fail", None, True),
        (507, err("insufficient_storage"), "fail", None, True),
        (500, err("internal"), "unknown", None, True),
        (504, err("timeout"), "unknown", None, True),
        (None, None, "unknown", None, True),
    ],
)
def test_appends_are_read_by_the_error_contract(
    status: int | None, body: Any, history: str, event: str | None, failed: bool
) -> None:
    outcome = classify_append(status, body, None if status else "ReadTimeout")
    assert (outcome.history, outcome.event, outcome.failure is not None) == (history, event, failed)
    if history == "ok":
        assert outcome.offset is not None


def test_reads_of_acknowledged_offsets() -> None:
    good = {"offset": 3, "value": {"w": "a", "pad": ""}}
    assert classify_read(200, good, "a", "quorum").failure is None
    assert "wrong value" in str(classify_read(200, good, "b", "any").failure)
    assert classify_read(404, err("offset_not_found"), "a", "quorum").failure is not None
    stale = classify_read(404, err("offset_not_found"), "a", "any")
    assert stale.failure is None and stale.event is not None


def test_head_reads_must_show_what_was_acknowledged_before_them() -> None:
    assert classify_head(200, {"next_offset": 5}, 4, "quorum").failure is None
    assert "stale" in str(classify_head(200, {"next_offset": 4}, 4, "leader").failure)
    assert classify_head(200, {"next_offset": 0}, 4, "any").failure is None
    assert classify_head(404, err("log_not_found"), None, "quorum").failure is None
    assert classify_head(404, err("log_not_found"), 0, "quorum").failure is not None


# -- step plan, time spans, summary --------------------------------------------------------


def test_the_step_plan_adds_users_per_step_up_to_the_ceiling_and_stops() -> None:
    plan = StepPlan(step_users=4, step_seconds=10, max_users=10, total_seconds=35)
    assert [plan.target(t) for t in (0, 9.9, 10, 25, 34.9)] == [
        (4, 4.0),
        (4, 4.0),
        (8, 4.0),
        (10, 4.0),
        (10, 4.0),
    ]
    assert plan.target(35) is None
    assert StepPlan.from_environ({"RAFTLOG_STEP_USERS": "2"}).step_users == 2
    with pytest.raises(ValueError, match="RAFTLOG_STEP_SECONDS"):
        StepPlan.from_environ({"RAFTLOG_STEP_SECONDS": "0"})


def test_time_spans() -> None:
    assert [parse_timespan(t) for t in ("20", "20s", "3m", "1h30m", "1m5s")] == [
        20,
        20,
        180,
        5400,
        65,
    ]
    with pytest.raises(ValueError):
        parse_timespan("20 s")


def test_the_summary_fails_on_a_failure_or_a_failed_presence_check_not_on_outcome_unknown() -> None:
    def summary(failures: int, presence_ok: bool) -> RunSummary:
        stats = [
            StatRow("APPEND", "outcome_unknown", 2, 0, 0.1, 5, 9, 9),
            StatRow("", "Aggregated", 100, failures, 10.0, 5, 9, 9),
        ]
        return RunSummary(["u"], "r", "mixed", 0, stats, [], [], {"ok": presence_ok})

    assert summary(0, True).ok
    assert summary(0, True).to_dict()["outcome_unknown"] == 2
    assert not summary(1, True).ok
    assert not summary(0, False).ok
    assert json.loads(json.dumps(summary(0, True).to_dict()))["ok"] is True


def test_final_stats_are_read_from_locusts_json_with_an_aggregated_row(tmp_path: Path) -> None:
    def entry(method: str, name: str, times: dict[str, int], failures: int) -> dict[str, Any]:
        return {
            "name": name,
            "method": method,
            "start_time": 100.0,
            "last_request_timestamp": 110.0,
            "num_requests": sum(times.values()),
            "num_failures": failures,
            "response_times": times,
        }

    path = tmp_path / "locust.json"
    path.write_text(
        json.dumps(
            [
                entry("POST", "append ack=quorum", {"10": 50, "20": 45, "90": 5}, 1),
                entry("APPEND", "outcome_unknown", {"5000": 2}, 0),
            ]
        )
    )
    rows = read_stats_json(path)
    assert [(r.type, r.name) for r in rows] == [
        ("POST", "append ack=quorum"),
        ("APPEND", "outcome_unknown"),
        ("", "Aggregated"),
    ]
    append, _, total = rows
    assert (append.requests, append.failures, append.rps) == (100, 1, 10.0)
    assert (append.p50_ms, append.p95_ms, append.p99_ms) == (10.0, 20.0, 90.0)
    assert (total.requests, total.failures) == (102, 1)
