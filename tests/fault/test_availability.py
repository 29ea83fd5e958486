"""Availability under the faults a user meets: a node cut off, a node paused for long.

A1: a node cut off from the majority (the leader, or a follower) notices by itself
within an election timeout (its view says ``leader: null``, ``/readyz`` answers 503),
then refuses every write in under 100 ms with a definite 503 (recorded as failed
appends, so I7 proves none of them was applied after the heal), and rejoins within
2 s of the heal. A cut-off follower causes no election on the majority (PreVote).

A2: a follower SIGSTOPped for 90 s and resumed under load causes no leader change and
no term change on the majority, and follows the leader again within 2 s.

Every scenario also runs the whole invariant suite (I1-I8) of ``run_scenario``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fault.harness.history import History, Op
from tests.fault.harness.netns import netns_unavailable
from tests.fault.harness.runner import LOG, FaultCluster, run_scenario
from tests.support.cluster import FAST_TIMING, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

E_MAX_S = FAST_TIMING["election_timeout_max_ms"] / 1000
REFUSAL_BOUND_S = 0.1
REJOIN_BOUND_S = 2.0
PAUSE_S = 90.0
NEMESIS_PROCESS = 900  # the process number of the nemesis's own operations


def view(c: FaultCluster, nid: str) -> dict[str, Any]:
    r = c.http(nid, "GET", "/v1/cluster", headers={"X-Raftlog-No-Forward": "1"}, timeout=2)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def ready(c: FaultCluster, nid: str) -> bool:
    return c.http(nid, "GET", "/readyz", timeout=2).status_code == 200


def leader_of(c: FaultCluster) -> str:
    return c.wait_for_leader(30, c.running_ids())


def terms(c: FaultCluster, ids: list[str]) -> dict[str, int]:
    return {nid: int(view(c, nid)["term"]) for nid in ids}


def seconds_until_following(c: FaultCluster, nid: str, leader: str) -> float:
    """Wait until ``nid`` names ``leader`` and is ready; seconds it took."""
    started = time.monotonic()
    wait_until(
        lambda: view(c, nid)["leader"] == leader and ready(c, nid),
        REJOIN_BOUND_S + 5,
        f"{nid} to follow {leader}",
        step=0.02,
    )
    return round(time.monotonic() - started, 3)


def refused_writes(c: FaultCluster, nid: str, history: History, count: int) -> list[float]:
    """``count`` appends to ``nid``; each must be refused with a definite 503."""
    latencies = []
    with httpx.Client(timeout=5) as http:
        for i in range(count):
            value = f"cut-off-{nid}-{i}"
            invoke = time.monotonic()
            r = http.post(
                f"{c.url(nid)}/v1/logs/{LOG}/entries",
                json={"value": value},
                params={"timeout": 3},
            )
            complete = time.monotonic()
            code = r.json().get("error", {}).get("code") if r.status_code != 201 else None
            outcome = "fail" if r.status_code == 503 else "unknown"
            if r.status_code == 201:
                outcome = "ok"
            history.add(
                Op(NEMESIS_PROCESS, "append", value, invoke, complete, outcome, node=nid)  # type: ignore[arg-type]
            )
            assert r.status_code == 503 and code in ("no_leader", "no_quorum"), r.text
            latencies.append(complete - invoke)
        invoke = time.monotonic()
        r = http.get(
            f"{c.url(nid)}/v1/logs/{LOG}/entries", params={"from": 0, "consistency": "leader"}
        )
        assert r.status_code == 503, r.text
        latencies.append(time.monotonic() - invoke)
    return latencies


@pytest.mark.parametrize("backend", ["proxy", "netns"])
@pytest.mark.parametrize("role", ["leader", "follower"])
def test_cut_off_node_refuses_at_once_and_rejoins_quickly(
    tmp_path: Path, role: str, backend: str
) -> None:
    if backend == "netns" and (why := netns_unavailable()):
        pytest.skip(why)
    history = History()
    figures: dict[str, Any] = {}

    def nemesis(c: FaultCluster, _rng: Any) -> None:
        leader = leader_of(c)
        ids = c.running_ids()
        target = leader if role == "leader" else next(n for n in ids if n != leader)
        majority = [n for n in ids if n != target]
        before = terms(c, majority)
        c.net.isolate(target)
        cut = time.monotonic()
        wait_until(
            lambda: view(c, target)["leader"] in (None, "") and not ready(c, target),
            E_MAX_S + 3,
            f"{target} to notice it is cut off",
        )
        figures["noticed_s"] = round(time.monotonic() - cut, 3)
        latencies = refused_writes(c, target, history, 20)
        figures["refusal_max_ms"] = round(max(latencies) * 1000, 1)
        figures["refusal_median_ms"] = round(sorted(latencies)[len(latencies) // 2] * 1000, 1)
        new_leader = c.wait_for_leader(10, majority)
        c.net.heal_all()
        figures["rejoin_s"] = seconds_until_following(c, target, new_leader)
        after = terms(c, majority)
        figures["majority_terms"] = (before, after)
        if role == "follower":
            assert new_leader == leader and after == before, (before, after)

    outcome = run_scenario(
        tmp_path,
        f"A1-{role}-cut-off-{backend}",
        nemesis,
        seed=401,
        history=history,
        backend=backend,  # type: ignore[arg-type]
    )
    print(f"A1 {role} {backend}: {figures}")
    assert not outcome.violations, [str(v) for v in outcome.violations[:10]]
    assert figures["refusal_max_ms"] < REFUSAL_BOUND_S * 1000
    assert figures["rejoin_s"] < REJOIN_BOUND_S


def test_follower_paused_for_90_s_causes_no_election(tmp_path: Path) -> None:
    figures: dict[str, Any] = {}

    def nemesis(c: FaultCluster, _rng: Any) -> None:
        leader = leader_of(c)
        ids = c.running_ids()
        follower = next(n for n in ids if n != leader)
        before = terms(c, ids)
        c.signal(follower, signal.SIGSTOP)
        try:
            time.sleep(PAUSE_S)  # the fault itself: a 90 s freeze
            figures["majority_terms_during"] = terms(c, [n for n in ids if n != follower])
        finally:
            c.signal(follower, signal.SIGCONT)
        figures["rejoin_s"] = seconds_until_following(c, follower, leader)
        after = terms(c, ids)
        figures["terms"] = (before, after)
        figures["leader"] = (leader, c.wait_for_leader(5, ids))
        assert after == before, (before, after)
        assert figures["leader"][1] == leader

    outcome = run_scenario(tmp_path, "A2-follower-paused-90s", nemesis, seed=402)
    print(f"A2: {figures}")
    assert not outcome.violations, [str(v) for v in outcome.violations[:10]]
    assert figures["rejoin_s"] < REJOIN_BOUND_S
