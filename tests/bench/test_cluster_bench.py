"""Cluster figures: group commit under load, and failover time with default timing.

Prints fsyncs per committed Raft entry on every node under concurrent load, and the
election time after kill -9 of the leader (min/median/max over 5 runs) with the
production timing defaults (election timeout 1000-2000 ms), beside the fast test
timing measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from tests.support.cluster import FAST_TIMING, running_cluster, wait_until
from tests.support.load import Writers

pytestmark = [pytest.mark.bench, pytest.mark.timeout(300)]

DEFAULT_TIMING = {
    "heartbeat_ms": 100,
    "election_timeout_min_ms": 1000,
    "election_timeout_max_ms": 2000,
    "leader_lease_ms": 500,
    "leader_fallback_ms": 1000,
    "connection_retry_ms": 250,
    "connection_timeout_ms": 3000,
}


def test_fsyncs_per_committed_entry_under_load(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        c.start_all()
        c.wait_for_leader()
        before = {nid: c.status(nid) for nid in c.nodes}
        with Writers(c, "load", count=16, max_seconds=8) as writers:
            time.sleep(6)
            history = writers.stop()
        c.wait_converged()
        after = {nid: c.status(nid) for nid in c.nodes}
    committed = after["n1"]["commit_index"] - before["n1"]["commit_index"]
    lines = []
    for nid in after:
        fsyncs = after[nid]["journal_fsyncs"] - before[nid]["journal_fsyncs"]
        lines.append(f"{nid} ({after[nid]['role']}): {fsyncs / committed:.3f}")
    print(
        f"\n{len(history.acked)} acknowledged appends from 16 writers, {committed} Raft entries "
        f"committed; journal fsyncs per committed entry: {', '.join(lines)}"
    )
    assert committed > 100


@pytest.mark.parametrize("timing", ["default", "fast"])
def test_election_time_after_leader_kill9(tmp_path: Path, timing: str) -> None:
    settings = DEFAULT_TIMING if timing == "default" else FAST_TIMING
    times: list[float] = []
    with running_cluster(tmp_path, settings=settings) as c:
        c.start_all()
        c.wait_for_leader(30)
        for _ in range(5):
            leader = c.wait_for_leader(30)
            wait_until(
                lambda lead=leader: all(
                    c.status(n)["applied_index"] >= c.status(lead)["commit_index"]
                    for n in c.running_ids()
                ),
                30,
                "followers caught up",
            )
            killed = time.monotonic()
            c.kill9(leader)
            c.wait_for_leader(30, c.running_ids())
            times.append(time.monotonic() - killed)
            c.start(leader)
    print(
        f"\nelection after leader kill -9, {timing} timing "
        f"({settings['election_timeout_min_ms']}-{settings['election_timeout_max_ms']} ms): "
        f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s over {len(times)} runs"
    )


def test_catch_up_rate_of_a_restarted_follower(tmp_path: Path) -> None:
    entries = 3000
    with running_cluster(tmp_path) as c:
        c.start_all()
        leader = c.wait_for_leader()
        follower = next(n for n in c.nodes if n != leader)
        applied_before = c.status(follower)["applied_index"]
        c.kill9(follower)
        with Writers(c, "catchup", count=8, max_ops=entries // 8, max_seconds=120) as writers:
            wait_until(
                lambda: len(writers.history.acked) >= entries - 8 * 2, 120, "writes while down"
            )
            history = writers.stop()
        target = c.status(leader)["commit_index"]
        start = time.monotonic()
        c.start(follower)
        started = time.monotonic() - start
        reply = c.call(follower, op="wait_applied", index=target, timeout=120)
        elapsed = time.monotonic() - start
        assert reply["ok"], reply
    behind = target - applied_before
    print(
        f"\nrestarted follower: {len(history.acked)} appends ({behind} Raft entries) behind; "
        f"caught up {elapsed:.2f} s after restart (process up after {started:.2f} s): "
        f"{behind / (elapsed - started):.0f} Raft entries/s after start-up"
    )
