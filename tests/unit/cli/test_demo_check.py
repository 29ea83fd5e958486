"""The demo's final check (raftlog.cli.demo.final_checks) on fabricated logs: the passing
case, and each way a run can fail it (diverged replicas, a lost or moved acknowledged
write, a duplicate, a value nobody wrote), each failing only its own check."""

from __future__ import annotations

from typing import Any

import pytest

from raftlog.cli.demo import final_checks

pytestmark = pytest.mark.unit

WHAT = (
    "all 3 nodes hold the same log",
    "no acknowledged write lost or moved",
    "no duplicates",
    "nothing that was never written",
)
ACKED = {"w0": 0, "w1": 1, "w2": 2}
GOOD = ["w0", "w1", "w2"]


def failed(logs: dict[str, list[Any]], acked: dict[str, int], in_doubt: set[str]) -> list[str]:
    """The checks that failed, by the start of their narration."""
    results = final_checks(logs, acked, in_doubt)
    assert len(results) == len(WHAT)
    for (_, what), expected in zip(results, WHAT, strict=True):
        assert what.startswith(expected), what
    return [what for ok, what in results if not ok]


def same(log: list[Any]) -> dict[str, list[Any]]:
    return {"n1": list(log), "n2": list(log), "n3": list(log)}


def test_every_acknowledged_write_once_on_every_node_passes() -> None:
    results = final_checks(same(GOOD), ACKED, set())
    assert all(ok for ok, _ in results)
    assert results[0][1] == "all 3 nodes hold the same log (3 entries)"
    assert results[1][1] == "no acknowledged write lost or moved (3 checked)"


def test_in_doubt_writes_may_be_present_or_absent() -> None:
    # an unknown outcome that committed (w3 at offset 3), and one that did not (w4)
    assert failed(same([*GOOD, "w3"]), ACKED, {"w3", "w4"}) == []
    assert failed(same(GOOD), ACKED, {"w3"}) == []
    # nothing acknowledged at all is a pass too (empty logs)
    assert failed(same([]), {}, set()) == []


def test_a_diverged_replica_fails() -> None:
    logs = same(GOOD)
    logs["n3"] = ["w0", "w1"]  # n3 misses the last entry
    assert failed(logs, ACKED, set()) == ["all 3 nodes hold the same log (3 entries)"]
    logs["n3"] = ["w0", "w2", "w1"]  # same values, another order
    assert failed(logs, ACKED, set()) == ["all 3 nodes hold the same log (3 entries)"]


def test_an_acknowledged_write_missing_fails() -> None:
    # every node agrees, but the write acknowledged at offset 2 is gone
    result = failed(same(["w0", "w1"]), ACKED, set())
    assert result == ["no acknowledged write lost or moved (3 checked)"]


def test_an_acknowledged_write_at_another_offset_fails() -> None:
    result = failed(same(["w0", "w2", "w1"]), ACKED, set())
    assert result == ["no acknowledged write lost or moved (3 checked)"]


def test_a_lost_write_replaced_by_an_in_doubt_one_fails() -> None:
    # offset 1 holds an in-doubt value, not the acknowledged w1
    result = failed(same(["w0", "w9", "w2"]), ACKED, {"w9"})
    assert result == ["no acknowledged write lost or moved (3 checked)"]


def test_a_duplicate_fails() -> None:
    assert failed(same([*GOOD, "w1"]), ACKED, set()) == ["no duplicates"]


def test_a_value_never_written_fails() -> None:
    assert failed(same([*GOOD, "ghost"]), ACKED, set()) == ["nothing that was never written"]


def test_the_reference_is_n1() -> None:
    """Every node is compared with n1's log, and the other checks read n1's."""
    logs = {"n1": ["w0", "w1"], "n2": GOOD, "n3": GOOD}
    assert failed(logs, ACKED, set()) == [
        "all 3 nodes hold the same log (2 entries)",
        "no acknowledged write lost or moved (3 checked)",
    ]
