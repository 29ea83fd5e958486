"""Jepsen-style scenarios: real `raftlog serve` processes under load, faults, checks.

Each scenario has a fixed seed (printed); RAFTLOG_FAULT_SOAK=1 uses a random seed and
longer faults. Invariants checked after each: I1-I7 on the history and final logs, I6
from the nodes' RAFT_EVENT lines, I8 liveness within LIVENESS_BOUND_S of the heal, I9
wherever nodes were killed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fault.harness.netns import netns_unavailable
from tests.fault.harness.runner import FaultCluster, run_scenario
from tests.support.http_cluster import http_cluster

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

SOAK = os.environ.get("RAFTLOG_FAULT_SOAK") == "1"  # set by `pytest --soak` (conftest)
SCALE = 4.0 if SOAK else 1.0


def seed_for(fixed: int) -> int:
    return random.randrange(1 << 30) if SOAK else fixed


def leader_of(c: FaultCluster) -> str:
    return c.wait_for_leader(30, c.running_ids())


def hold(seconds: float) -> None:
    time.sleep(seconds * SCALE)


def isolate_leader(duration: float) -> Callable[[FaultCluster, random.Random], None]:
    def nemesis(c: FaultCluster, rng: random.Random) -> None:
        c.net.isolate(leader_of(c))
        hold(duration)

    return nemesis


def stall_leader(direction: str) -> Callable[[FaultCluster, random.Random], None]:
    """Stall the leader's outgoing ("out") or incoming ("in") Raft traffic only."""

    def nemesis(c: FaultCluster, rng: random.Random) -> None:
        c.net.stall(leader_of(c), direction)
        hold(3.0)

    return nemesis


def split_leader_minority(c: FaultCluster, rng: random.Random) -> None:
    leader = leader_of(c)
    c.net.partition([{leader}, set(c.nodes) - {leader}])
    hold(3.0)


def partial_partition(c: FaultCluster, rng: random.Random) -> None:
    a, b, _ = rng.sample(sorted(c.nodes), 3)
    c.net.partition_pair(a, b)
    hold(3.0)


def flapping(c: FaultCluster, rng: random.Random) -> None:
    for _ in range(int(5 * SCALE)):
        nodes = sorted(c.nodes)
        rng.shuffle(nodes)
        cut = rng.randint(1, len(nodes) - 1)
        c.net.partition([set(nodes[:cut]), set(nodes[cut:])])
        time.sleep(rng.uniform(0.3, 1.2))
        c.net.heal_all()
        time.sleep(rng.uniform(0.1, 0.5))


def packet_loss(c: FaultCluster, rng: random.Random) -> None:
    """Random kernel drops on every packet arriving at any node: 5%, then 15%, then 30%."""
    for probability in (0.05, 0.15, 0.30):
        c.net.loss(probability)
        hold(2.0)
        dropped = c.net.dropped()  # counters restart with each change of the rules
        print(f"loss {probability:.0%}: packets dropped per node {dropped}")
        assert sum(dropped.values()) > 0, "the loss rules dropped nothing"


def slow_links(c: FaultCluster, rng: random.Random) -> None:
    for name in c.net.links:
        c.net.get(name).delay(rng.uniform(50, 150), jitter_ms=rng.uniform(0, 150))
    hold(3.0)


def reset_storm(c: FaultCluster, rng: random.Random) -> None:
    for _ in range(int(10 * SCALE)):
        for name in c.net.links:
            c.net.get(name).reset()
        time.sleep(rng.uniform(0.1, 0.4))


def pause_leader(c: FaultCluster, rng: random.Random) -> None:
    leader = leader_of(c)
    c.signal(leader, signal.SIGSTOP)
    try:
        hold(2.0)  # past the election timeout (400-800 ms here)
    finally:
        c.signal(leader, signal.SIGCONT)


def kill_leader(c: FaultCluster, rng: random.Random) -> None:
    for _ in range(int(2 * SCALE)):
        leader = leader_of(c)
        c.kill9(leader)
        time.sleep(rng.uniform(0.3, 1.0))
        c.start(leader)
        c.wait_ready(timeout=30)


def kill_all(c: FaultCluster, rng: random.Random) -> None:
    for nid in list(c.nodes):
        c.kill9(nid)
    time.sleep(0.5)
    c.start_all()
    c.wait_ready(timeout=30)


def rolling_restart(c: FaultCluster, rng: random.Random) -> None:
    for nid in sorted(c.nodes):
        assert c.terminate(nid) == 0
        c.start(nid)
        c.wait_ready(timeout=30)


def kill_during_compaction(c: FaultCluster, rng: random.Random) -> None:
    """Snapshots every ~50 entries (settings below): kill -9 nodes at random moments."""
    for _ in range(int(4 * SCALE)):
        victim = rng.choice(sorted(c.nodes))
        time.sleep(rng.uniform(0.2, 0.8))
        c.kill9(victim)
        time.sleep(rng.uniform(0.1, 0.5))
        c.start(victim)
        c.wait_ready(timeout=30)


def clock_skew(c: FaultCluster, rng: random.Random) -> None:
    """Restart one node with a clock twice as fast and one at half speed (libfaketime)."""
    for nid, spec in (("n1", "+0 x2"), ("n2", "+0 x0.5")):
        c.kill9(nid)
        c.faketime[nid] = spec
        c.start(nid)
        c.wait_ready(timeout=30)
    hold(4.0)


def foreign_identity(c: FaultCluster, rng: random.Random) -> None:
    """n3 restarts on the data dir of another cluster's n3 (same name, same node id),
    serves there for a while under load, then comes back on its own data dir."""
    foreign_root = c.root / "foreign"
    with http_cluster(foreign_root) as other:
        other.start_all()
        leader = other.wait_ready(timeout=30)
        for i in range(5):
            r = other.http(leader, "POST", "/v1/logs/foreign/entries", json={"value": i})
            assert r.status_code == 201, r.text
        for nid in list(other.nodes):
            other.kill9(nid)
    c.kill9("n3")
    c.start("n3", data_dir=other.nodes["n3"].data_dir)
    hold(3.0)
    c.kill9("n3")  # run_scenario restarts it on its own data dir


SETTINGS: dict[str, dict[str, object]] = {
    "S14-kill-during-compaction": {"snapshot_min_entries": 50},
}

SCENARIOS: dict[str, tuple[Callable[[FaultCluster, random.Random], None], int]] = {
    "S1a-isolate-leader-short": (isolate_leader(0.4), 101),
    "S1b-isolate-leader-long": (isolate_leader(3.0), 102),
    "S2-leader-outgoing-stalled": (stall_leader("out"), 103),
    "S3-leader-incoming-stalled": (stall_leader("in"), 104),
    "S4-leader-in-minority": (split_leader_minority, 105),
    "S5-partial-partition": (partial_partition, 106),
    "S6-flapping-partitions": (flapping, 107),
    "S7-slow-links": (slow_links, 108),
    "S9-reset-storm": (reset_storm, 110),
    "S10-pause-leader": (pause_leader, 111),
    "S11-kill-leader": (kill_leader, 112),
    "S12-kill-all": (kill_all, 113),
    "S13-rolling-restart": (rolling_restart, 114),
    "S14-kill-during-compaction": (kill_during_compaction, 115),
    "S15-clock-rate-skew": (clock_skew, 116),
    "S17-foreign-identity": (foreign_identity, 118),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(tmp_path: Path, name: str) -> None:
    nemesis, fixed_seed = SCENARIOS[name]
    if nemesis is clock_skew and shutil.which("faketime") is None:
        pytest.skip("faketime is not installed (Debian package faketime): S15 not run")
    outcome = run_scenario(
        tmp_path, name, nemesis, seed=seed_for(fixed_seed), settings=SETTINGS.get(name)
    )
    assert not outcome.violations, [str(v) for v in outcome.violations[:10]]
    ok_appends = sum(1 for op in outcome.history.ops if op.kind == "append" and op.outcome == "ok")
    assert ok_appends > 20, "too little load reached the cluster to mean anything"


# -- the same faults as real kernel drops (network namespaces + nftables, root) --------

NETNS_SCENARIOS: dict[str, tuple[Callable[[FaultCluster, random.Random], None], int]] = {
    "K-S1b-isolate-leader-long": (isolate_leader(3.0), 151),
    "K-S2-leader-outgoing-dropped": (stall_leader("out"), 152),
    "K-S3-leader-incoming-dropped": (stall_leader("in"), 153),
    "K-S4-leader-in-minority": (split_leader_minority, 154),
    "K-S5-partial-partition": (partial_partition, 155),
    "K-S6-flapping-partitions": (flapping, 156),
    "S8-packet-loss": (packet_loss, 109),
}


@pytest.mark.parametrize("name", list(NETNS_SCENARIOS))
def test_scenario_kernel_drops(tmp_path: Path, name: str) -> None:
    reason = netns_unavailable()
    if reason is not None:
        print(f"namespace back-end not run: {reason}")
        pytest.skip(f"namespace back-end unavailable: {reason}")
    nemesis, fixed_seed = NETNS_SCENARIOS[name]
    outcome = run_scenario(tmp_path, name, nemesis, seed=seed_for(fixed_seed), backend="netns")
    assert not outcome.violations, [str(v) for v in outcome.violations[:10]]
    ok_appends = sum(1 for op in outcome.history.ops if op.kind == "append" and op.outcome == "ok")
    assert ok_appends > 20, "too little load reached the cluster to mean anything"


# -- negative controls: the same harness must catch real bugs ---------------------------


def test_negative_control_local_quorum_reads_are_caught(tmp_path: Path) -> None:
    outcome = run_scenario(
        tmp_path,
        "NC1-local-quorum-reads",
        split_leader_minority,
        seed=201,
        env={"RAFTLOG_UNSAFE_LOCAL_QUORUM_READS": "1"},
        workers=6,
    )
    assert any(v.invariant == "I5" for v in outcome.violations), outcome.violations[:5]


def test_negative_control_local_quorum_reads_are_caught_with_kernel_drops(tmp_path: Path) -> None:
    reason = netns_unavailable()
    if reason is not None:
        print(f"namespace back-end not run: {reason}")
        pytest.skip(f"namespace back-end unavailable: {reason}")
    outcome = run_scenario(
        tmp_path,
        "K-NC1-local-quorum-reads",
        split_leader_minority,
        seed=203,
        env={"RAFTLOG_UNSAFE_LOCAL_QUORUM_READS": "1"},
        workers=6,
        backend="netns",
    )
    assert any(v.invariant == "I5" for v in outcome.violations), outcome.violations[:5]


def test_negative_control_volatile_journal_is_caught(tmp_path: Path) -> None:
    outcome = run_scenario(
        tmp_path,
        "NC2-volatile-journal",
        kill_all,
        seed=202,
        env={"RAFTLOG_UNSAFE_VOLATILE_JOURNAL": "1"},
    )
    assert {v.invariant for v in outcome.violations} & {"I1", "I2", "I3", "I4"}, outcome.violations[
        :5
    ]


# -- consistency=leader: a lease (check-quorum + vote refusal + PreVote): never stale ----


@pytest.mark.parametrize(
    ("name", "nemesis", "seed"),
    [
        ("L1-leader-reads-isolated-leader", isolate_leader(3.0), 301),
        ("L2-leader-reads-paused-leader", pause_leader, 302),
    ],
)
def test_leader_reads_are_never_stale_while_the_leader_is_cut_off_or_paused(
    tmp_path: Path, name: str, nemesis: Callable[[FaultCluster, random.Random], None], seed: int
) -> None:
    outcome = run_scenario(
        tmp_path, name, nemesis, seed=seed_for(seed), workers=6, leader_read_ratio=0.7
    )
    print(
        f"{name}: {outcome.leader_reads} leader reads, worst staleness "
        f"{outcome.leader_staleness_s * 1000:.0f} ms (bound: 0, none may be stale)"
    )
    assert not outcome.violations, [str(v) for v in outcome.violations[:10]]
    assert outcome.leader_reads > 20
    # A read is stale when it missed an append acknowledged before it began.
    assert outcome.leader_staleness_s == 0
