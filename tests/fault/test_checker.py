"""Unit tests of the fault suite's invariant checkers on hand-built and generated histories."""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path

import pytest

from tests.fault.harness.checker import (
    Violation,
    check_all,
    check_leaders,
    check_liveness,
    check_quorum_reads,
    parse_raft_events,
)
from tests.fault.harness.history import History, Op, Outcome

pytestmark = pytest.mark.unit

NODES = ("n1", "n2", "n3")


# -- builders ---------------------------------------------------------------------------------


def ap(
    value: str,
    invoke: float,
    complete: float,
    outcome: Outcome = "ok",
    offset: int | None = None,
    process: int = 0,
) -> Op:
    return Op(
        process=process,
        kind="append",
        value=value,
        invoke=invoke,
        complete=complete,
        outcome=outcome,
        offset=offset,
        read_values=None,
        consistency=None,
        node="n1",
        error="boom" if outcome == "fail" else None,
    )


def rd(
    values: list[str],
    invoke: float,
    complete: float,
    consistency: str = "quorum",
    process: int = 9,
) -> Op:
    return Op(
        process=process,
        kind="read",
        value=None,
        invoke=invoke,
        complete=complete,
        outcome="ok",
        offset=None,
        read_values=list(values),
        consistency=consistency,
        node="n2",
        error=None,
    )


def same(log: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    return {n: list(log) for n in NODES}, dict.fromkeys(NODES, f"{len(log)}:d")


def check(ops: list[Op], log: list[str]) -> list[Violation]:
    logs, digests = same(log)
    violations = check_all(History(ops), logs, digests)
    # I5's catch-all means its explanation of a conflict missed it: a checker bug.
    assert not any(v.message.startswith("no linearization") for v in violations)
    return violations


def invariants(violations: list[Violation]) -> set[str]:
    return {v.invariant for v in violations}


def good_ops() -> list[Op]:
    return [
        ap("a", 0.0, 1.0, offset=0, process=1),
        ap("b", 0.5, 2.0, offset=1, process=2),
        ap("x", 0.6, 0.7, outcome="fail", process=3),
        ap("c", 2.5, 3.0, outcome="unknown", process=1),
        ap("y", 2.6, 3.0, outcome="unknown", process=3),  # never took effect: fine
        rd([], 0.0, 0.2),
        rd(["a"], 1.1, 1.5),
        rd(["a", "b"], 2.1, 2.4),
        rd(["a", "b", "c"], 5.0, 6.0),
        rd(["a"], 5.0, 6.0, consistency="any"),  # stale, allowed for "any"
    ]


# -- passing and failing hand-built histories ------------------------------------------------


def test_good_history_passes() -> None:
    assert check(good_ops(), ["a", "b", "c"]) == []


def test_lost_acknowledged_append() -> None:
    violations = check(good_ops(), ["a", "c"])
    assert "I1" in invariants(violations)
    assert any("'b'" in v.message for v in violations if v.invariant == "I1")


def test_moved_offset() -> None:
    ops = [ap("a", 0, 1, offset=0), ap("b", 0, 1, offset=1)]
    violations = check(ops, ["b", "a"])
    assert invariants(violations) == {"I2"}
    assert len(violations) == 2


def test_ok_append_without_offset() -> None:
    assert invariants(check([ap("a", 0, 1, offset=None)], ["a"])) == {"I2"}


def test_duplicate() -> None:
    ops = [ap("a", 0, 1, offset=0), ap("b", 2, 3, offset=1)]
    violations = check(ops, ["a", "b", "a"])
    assert invariants(violations) == {"I3"}
    assert "[0, 2]" in violations[0].message


def test_phantom() -> None:
    ops = [ap("a", 0, 1, offset=0)]
    violations = check(ops, ["a", "ghost"])
    assert invariants(violations) == {"I3"}
    assert "ghost" in violations[0].message


def test_failed_append_that_appears() -> None:
    ops = [ap("a", 0, 1, offset=0), ap("f", 0, 1, outcome="fail")]
    violations = check(ops, ["a", "f"])
    assert invariants(violations) == {"I7"}  # not also a phantom


def test_divergent_replicas() -> None:
    ops = [ap("a", 0, 1, offset=0), ap("b", 0, 1, offset=1)]
    logs = {"n1": ["a", "b"], "n2": ["a", "b"], "n3": ["a"]}
    violations = check_all(History(ops), logs, {"n1": "2:x", "n2": "2:x", "n3": "1:y"})
    assert invariants(violations) == {"I4"}
    assert len(violations) == 2  # the log and the digests
    assert any("n3" in v.message for v in violations)


def test_no_final_logs() -> None:
    assert invariants(check_all(History([ap("a", 0, 1, offset=0)]), {}, {})) == {"I4"}


def test_read_that_is_not_a_prefix() -> None:
    ops = [ap("a", 0, 1, offset=0), ap("b", 0, 1, offset=1), rd(["b"], 2, 3, "leader")]
    violations = check(ops, ["a", "b"])
    assert invariants(violations) == {"I4"}


def test_duplicate_append_values_in_history() -> None:
    ops = [ap("a", 0, 1, offset=0), ap("a", 2, 3, offset=0, process=1)]
    assert "H0" in invariants(check(ops, ["a"]))


def test_stale_quorum_read() -> None:
    ops = [ap("A", 0, 1, offset=0), rd([], 2, 3)]
    violations = check(ops, ["A"])
    assert invariants(violations) == {"I5"}
    assert len(violations) == 1
    msg = violations[0].message
    assert "stale" in msg and "2.000000" in msg and "3.000000" in msg and "0 entries" in msg


def test_stale_read_is_fine_for_weaker_consistency() -> None:
    for consistency in ("leader", "any"):
        assert check([ap("A", 0, 1, offset=0), rd([], 2, 3, consistency)], ["A"]) == []


def test_concurrent_append_reads_are_fine() -> None:
    ops = [ap("A", 0, 5, offset=0), rd([], 1, 2), rd(["A"], 3, 4)]
    assert check(ops, ["A"]) == []


def test_stale_read_after_a_read_that_saw_more() -> None:
    ops = [ap("A", 0, 10, offset=0), rd(["A"], 1, 2, process=1), rd([], 3, 4, process=2)]
    violations = check(ops, ["A"])
    assert invariants(violations) == {"I5"}
    assert len(violations) == 1  # reported once, at the stale read
    assert "process 2" in violations[0].message.split(":")[0]


def test_overlapping_reads_may_disagree() -> None:
    ops = [ap("A", 0, 10, offset=0), rd(["A"], 1, 3), rd([], 2, 4)]
    assert check(ops, ["A"]) == []


def test_read_from_the_future() -> None:
    ops = [rd(["A"], 0, 1), ap("A", 2, 3, offset=0)]
    violations = check(ops, ["A"])
    assert invariants(violations) == {"I5"}
    assert "invoked only at 2.000000" in violations[0].message


def test_log_order_contradicts_real_time() -> None:
    ops = [ap("A", 5, 6, offset=0), ap("B", 0, 1, offset=1)]
    violations = check(ops, ["A", "B"])
    assert invariants(violations) == {"I5"}
    assert "log order" in violations[0].message


def test_boundary_ties_are_exact() -> None:
    """Windows are closed: an op completing at the instant another is invoked precedes it."""
    assert check([ap("A", 0, 1, offset=0), ap("B", 1, 2, offset=1)], ["A", "B"]) == []
    ops = [ap("A", 1, 2, offset=0), ap("B", 0, 1, offset=1)]
    assert invariants(check(ops, ["A", "B"])) == {"I5"}
    assert invariants(check([ap("A", 0, 1, offset=0), rd([], 1, 2)], ["A"])) == {"I5"}
    assert invariants(check([rd(["A"], 0, 1), ap("A", 1, 2, offset=0)], ["A"])) == {"I5"}
    assert invariants(check([ap("A", 0, 9, offset=0), rd(["A"], 0, 1), rd([], 1, 2)], ["A"])) == {
        "I5"
    }
    assert check([ap("A", 1, 1, offset=0), rd([], 0, 1), rd(["A"], 1, 2)], ["A"]) == []


def test_unknown_append_that_appears_later() -> None:
    ops = [
        ap("A", 0, 1, outcome="unknown"),
        rd([], 2, 3),
        rd(["A"], 4, 5),
        ap("B", 6, 7, offset=1),
    ]
    assert check(ops, ["A", "B"]) == []


def test_unknown_append_cannot_take_effect_before_invoke() -> None:
    ops = [rd(["A"], 0, 1), ap("A", 2, 3, outcome="unknown")]
    assert invariants(check(ops, ["A"])) == {"I5"}


def test_unknown_append_that_never_appears() -> None:
    ops = [ap("A", 0, 1, outcome="unknown"), rd([], 2, 3)]
    assert check(ops, []) == []


def test_every_stale_read_reported() -> None:
    ops = [ap("A", 0, 1, offset=0), ap("B", 0, 1, offset=1)]
    ops += [rd(["A"], 2, 3, process=p) for p in range(3)]
    violations = check(ops, ["A", "B"])
    assert [v.invariant for v in violations] == ["I5"] * 3


# -- I5 against a brute-force definition ----------------------------------------------------


def brute_force_linearizable(ops: list[Op], final: list[str]) -> bool:
    """Definition: some total order obeying the spec and real time. The spec fixes it up
    to the order of reads of equal length (free), so check every pair for real time."""
    pos = {v: i for i, v in enumerate(final)}
    rank: list[tuple[float, Op]] = []  # appends at 2p+1, reads of length L at 2L
    for op in ops:
        if op.kind == "append":
            rank.append((2 * pos[op.value or ""] + 1, op))
        elif op.consistency == "quorum":
            rank.append((2 * len(op.read_values or ()), op))

    def end(op: Op) -> float:
        return op.complete if op.kind == "read" or op.outcome == "ok" else float("inf")

    return not any(ry < rx and end(x) < y.invoke for rx, x in rank for ry, y in rank)


@pytest.mark.parametrize("seed", range(4))
def test_quorum_reads_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = {True: 0, False: 0}
    for _ in range(500):
        n = rng.randint(0, 4)
        final = [f"v{i}" for i in range(n)]
        ops: list[Op] = []
        for i, v in enumerate(final):
            start = rng.uniform(0, 10)
            outcome: Outcome = "unknown" if rng.random() < 0.25 else "ok"
            ops.append(ap(v, start, start + rng.uniform(0, 4), outcome, offset=i))
        for _ in range(rng.randint(0, 4)):
            start = rng.uniform(0, 10)
            ops.append(rd(final[: rng.randint(0, n)], start, start + rng.uniform(0, 3)))
        expected = brute_force_linearizable(ops, final)
        violations = check_quorum_reads(ops, final)
        assert (not violations) == expected, (ops, final, violations)
        assert not any(v.message.startswith("no linearization") for v in violations)
        assert check_all(History(ops), *same(final)) == violations
        outcomes[expected] += 1
    assert min(outcomes.values()) > 50, outcomes


# -- generated linearizable histories ----------------------------------------------------------


def simulate(
    seed: int, n_ops: int, processes: int = 6, read_ratio: float = 0.3
) -> tuple[list[Op], list[str]]:
    """A linearizable history of a sequential log: each op takes effect at a random point
    in its window (an unknown append maybe never, or after its client gave up)."""
    rng = random.Random(seed)
    clocks = [rng.uniform(0, 0.01) for _ in range(processes)]
    planned: list[tuple[float, Op]] = []
    for seq in range(n_ops):
        proc = rng.randrange(processes)
        invoke = clocks[proc] + rng.expovariate(1000)
        complete = invoke + rng.expovariate(200)
        clocks[proc] = complete
        point = rng.uniform(invoke, complete)
        if rng.random() < read_ratio:
            consistency = rng.choice(("quorum", "quorum", "quorum", "leader", "any"))
            planned.append((point, rd([], invoke, complete, consistency, process=proc)))
            continue
        r = rng.random()
        outcome: Outcome = "fail" if r < 0.05 else "unknown" if r < 0.1 else "ok"
        op = ap(f"p{proc}-{seq}", invoke, complete, outcome, process=proc)
        if outcome == "fail":
            point = math.inf  # recorded, never takes effect
        elif outcome == "unknown":
            # Maybe never takes effect, maybe after the client gave up.
            gone = rng.random() < 0.5
            point = math.inf if gone else invoke + rng.uniform(0, 3) * (complete - invoke)
        planned.append((point, op))
    planned.sort(key=lambda t: t[0])
    log: list[str] = []
    lengths: list[tuple[Op, int]] = []
    ops: list[Op] = []
    for point, op in planned:
        ops.append(op)
        if op.kind == "append":
            if point != math.inf:
                op.offset = len(log) if op.outcome == "ok" else None
                log.append(op.value or "")
        else:
            seen = len(log) if op.consistency == "quorum" else rng.randint(0, len(log))
            lengths.append((op, seen))
    for op, seen in lengths:
        op.read_values = log[:seen]
    ops.sort(key=lambda o: o.invoke)
    return ops, log


def corrupt_stale_read(ops: list[Op], rng: random.Random) -> Op | None:
    """Make a quorum read return less than an earlier quorum read that finished before it
    started; return the corrupted read, or None if the history has no such pair."""
    reads = [op for op in ops if op.kind == "read" and op.consistency == "quorum"]
    pairs = [
        (a, b)
        for a in reads
        for b in reads
        if a.complete < b.invoke and len(a.read_values or ()) > 0
    ]
    if not pairs:
        return None
    earlier, later = rng.choice(pairs)
    later.read_values = (earlier.read_values or [])[: rng.randrange(len(earlier.read_values or ()))]
    return later


def rng_size(seed: int) -> int:
    return random.Random(seed).randint(30, 400)


@pytest.mark.parametrize("seed", range(30))
def test_generated_history_passes_then_corrupted_fails(seed: int) -> None:
    ops, log = simulate(seed, n_ops=rng_size(seed))
    assert check(ops, log) == []
    corrupted = corrupt_stale_read(ops, random.Random(seed))
    assert corrupted is not None
    violations = check(ops, log)
    assert invariants(violations) == {"I5"}, violations
    assert any(f"process {corrupted.process}" in v.message for v in violations)


def test_performance_20000_ops() -> None:
    ops, log = simulate(12345, n_ops=20_000, processes=16, read_ratio=0.15)
    logs, digests = same(log)
    history = History(ops)
    started = time.perf_counter()
    violations = check_all(history, logs, digests)
    elapsed = time.perf_counter() - started
    reads = sum(1 for op in ops if op.kind == "read")
    print(f"\ncheck_all: {len(ops)} ops ({reads} reads), log {len(log)}: {elapsed:.3f} s")
    assert violations == []
    assert elapsed < 10.0


# -- I6: leaders ------------------------------------------------------------------------------


def ev(node: str, role: str, term: int, wall_ms: int, boot: int = 1) -> dict[str, object]:
    return {"node": node, "role": role, "term": term, "wall_ms": wall_ms, "boot": boot}


def test_leaders_ok() -> None:
    events = [
        ev("n1", "candidate", 1, 100),
        ev("n1", "leader", 1, 110),
        ev("n2", "follower", 1, 105),
        ev("n1", "follower", 2, 300),
        ev("n2", "leader", 2, 290),
        ev("n1", "follower", 2, 10, boot=2),  # a restart: wall clock is not compared
        ev("n1", "leader", 3, 20, boot=2),
    ]
    assert check_leaders(events) == []


def test_two_leaders_in_one_term() -> None:
    events = [ev("n1", "leader", 4, 100), ev("n2", "leader", 4, 200), ev("n1", "leader", 4, 300)]
    violations = check_leaders(events)
    assert invariants(violations) == {"I6"}
    assert len(violations) == 1
    assert "term 4" in violations[0].message and "n1" in violations[0].message


def test_decreasing_term_across_boots() -> None:
    events = [
        ev("n1", "leader", 5, 1000, boot=1),
        ev("n1", "follower", 3, 50, boot=2),  # lost its persisted term on restart
    ]
    violations = check_leaders(events)
    assert invariants(violations) == {"I6"}
    assert "from 5" in violations[0].message and "to 3" in violations[0].message


def test_events_ordered_by_boot_then_wall_clock() -> None:
    events = [ev("n1", "follower", 7, 10, boot=2), ev("n1", "follower", 6, 900, boot=1)]
    assert check_leaders(events) == []
    events = [ev("n1", "follower", 7, 10, boot=1), ev("n1", "follower", 6, 9, boot=1)]
    assert check_leaders(events) == []
    events = [ev("n1", "follower", 7, 10, boot=1), ev("n1", "follower", 6, 11, boot=1)]
    assert invariants(check_leaders(events)) == {"I6"}


def test_parse_raft_events() -> None:
    text = "\n".join(
        [
            "2024-01-01 00:00:00,000 INFO raftlog: node n1 started",
            '2024-01-01 00:00:01,000 INFO raftlog.events: RAFT_EVENT {"node": "n1", '
            '"role": "candidate", "from": "follower", "term": 2, "wall_ms": 1000}',
            'RAFT_EVENT {"node": "n1", "role": "leader", "term": 2, "wall_ms": 1001} trailer',
            "some other line mentioning term 3",
            'RAFT_EVENT {"node": "n1", "role": "leader", "te',  # killed mid-write
            'RAFT_EVENT {"node": "n1"}',
        ]
    )
    events = parse_raft_events(text, boot=3)
    assert events == [
        {
            "node": "n1",
            "role": "candidate",
            "from": "follower",
            "term": 2,
            "wall_ms": 1000,
            "boot": 3,
        },
        {"node": "n1", "role": "leader", "term": 2, "wall_ms": 1001, "boot": 3},
    ]
    assert parse_raft_events("", boot=1) == []
    assert check_leaders(events) == []


# -- I8: liveness -----------------------------------------------------------------------------


def test_liveness() -> None:
    assert check_liveness(10.0, 12.0, 5.0) == []
    assert invariants(check_liveness(10.0, 16.0, 5.0)) == {"I8"}
    assert invariants(check_liveness(10.0, None, 5.0)) == {"I8"}


# -- History ----------------------------------------------------------------------------------


def test_history_add_is_thread_safe_and_summarised() -> None:
    history = History()

    def worker(p: int) -> None:
        for i in range(500):
            history.add(ap(f"{p}-{i}", i, i + 1, "ok" if i % 2 else "unknown", i, p))
            history.add(rd([], i, i + 1, process=p))

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history.ops) == 8000
    assert history.summary() == {
        "total": 8000,
        "append": {"ok": 2000, "fail": 0, "unknown": 2000, "total": 4000},
        "read": {"ok": 4000, "fail": 0, "unknown": 0, "total": 4000},
    }


def test_history_jsonl_round_trip(tmp_path: Path) -> None:
    history = History(good_ops())
    path = tmp_path / "history.jsonl"
    history.to_jsonl(path)
    loaded = History.from_jsonl(path)
    assert loaded.ops == history.ops
    assert loaded.summary() == history.summary()
    assert check(loaded.ops, ["a", "b", "c"]) == []


def test_history_jsonl_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"process": 1, "kind": "write"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        History.from_jsonl(path)


# -- I11: damaged values answered 200 ----------------------------------------------------


def test_i11_flags_a_read_value_no_client_appended() -> None:
    from tests.fault.harness.checker import check_no_damaged_reads

    ops = [
        Op(1, "append", "v-00001-abc", 0.0, 1.0, "ok", offset=0),
        Op(2, "read", None, 2.0, 3.0, "ok", read_values=["v-00001-abc"], consistency="any"),
        Op(2, "read", None, 4.0, 5.0, "ok", read_values=["v-00001-abb"], consistency="any"),
    ]
    found = check_no_damaged_reads(ops)
    assert [v.invariant for v in found] == ["I11"]
    assert "'v-00001-abb' at offset 0" in found[0].message


def test_frame_corrupter_flips_one_byte_inside_the_needle_and_keeps_frames_valid() -> None:
    import pickle
    import struct
    import zlib

    from tests.fault.harness.proxy import FrameCorrupter, _FrameStream

    needle = b"value-00042-abcdefghijklmnopqrstuvwxyz"
    big = pickle.dumps({"serialized": (b"RLRAFT02" + b"x" * 8000 + needle, True, True)})
    small = pickle.dumps({"type": "append_entries", "entries": [needle]})
    frames = [zlib.compress(m, 3) for m in (small, big, big)]
    wire = b"".join(struct.pack("<i", len(f)) + f for f in frames)
    stream = _FrameStream(FrameCorrupter(needle, require=b"RLRAFT02", min_bytes=4096))
    out = b"".join(stream.feed(wire[i : i + 1000]) for i in range(0, len(wire), 1000))
    messages, pos = [], 0
    while pos < len(out):
        (n,) = struct.unpack_from("<i", out, pos)
        messages.append(zlib.decompress(out[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    assert messages[0] == small  # too small: untouched
    assert messages[2] == big  # times=1: only the first qualifying frame
    diff = [i for i, (a, b) in enumerate(zip(messages[1], big, strict=True)) if a != b]
    assert len(diff) == 1 and big[diff[0] - len(needle) // 2 :].startswith(needle)
