"""A node that lost its data never votes its way back (raftlog/raft/voting.py).

Pure rules first, then the scenario of the issue on three real RaftNodes in this process
(127.0.0.1, real PySyncObj): one follower down, 200 writes acknowledged by the other
two, that follower's data dir deleted and restarted, the leader lost, the lagging
follower back. Without the rule the two elect a leader holding none of the 200.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from pathlib import Path

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.errors import DefinitelyNotApplied, OutcomeUnknown
from raftlog.raft.identity import IDENTITY_FILE
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.raft.unsafe import UnsafeSwitches
from raftlog.raft.voting import VotingRights
from tests.unit.raft.test_crash_durability import SimCluster, configs, wait_for

pytestmark = pytest.mark.unit

LOG = "votes"


# -- the rules --------------------------------------------------------------------------


def test_bootstrap_needs_every_member_fresh() -> None:
    v = VotingRights(voter=False, peers=frozenset({"b", "c"}), fresh=True)
    assert not v.on_peer_message("b", True)
    assert not v.may_vote()
    assert not v.on_peer_message("c", False)  # c holds data or votes: no bootstrap
    assert not v.may_vote()
    assert v.on_peer_message("c", True)
    assert v.may_vote() and v.how is not None and "bootstrap" in v.how


def test_a_node_that_accepted_an_append_never_bootstraps() -> None:
    v = VotingRights(voter=False, peers=frozenset({"b", "c"}), fresh=True)
    v.on_append_accepted(term=3, leader_commit=250)
    assert not v.on_peer_message("b", True) and not v.on_peer_message("c", True)
    assert not v.may_vote()


def test_catch_up_needs_the_joining_commit_index_and_an_entry_of_the_leaders_term() -> None:
    v = VotingRights(voter=False, peers=frozenset({"b", "c"}))
    v.on_append_accepted(term=3, leader_commit=250)
    assert not v.on_commit(249, 3)
    assert not v.on_commit(260, 2)  # the leader has not committed in its own term yet
    v.on_append_accepted(term=3, leader_commit=400)  # same leader: the target stays
    assert v.target == 250
    assert v.on_commit(250, 3)
    assert v.may_vote()


def test_a_new_leader_restarts_the_catch_up() -> None:
    v = VotingRights(voter=False, peers=frozenset({"b", "c"}))
    v.on_append_accepted(term=3, leader_commit=100)
    v.on_append_accepted(term=4, leader_commit=90)
    assert not v.on_commit(95, 3)
    assert v.on_commit(95, 4)


def test_single_node_cluster_votes_at_once() -> None:
    v = VotingRights(voter=False, peers=frozenset(), fresh=True)
    assert v.on_alone() and v.may_vote()


# -- the scenario -----------------------------------------------------------------------


async def write_many(node: RaftNode, n: int) -> list[str]:
    acked = []
    for i in range(n):
        value = f"v{i}"
        entry = AppendEntry(value_json=json.dumps(value).encode())
        cmd = Append(log=LOG, entries=(entry,), timestamp_ms=int(time.time() * 1000))
        await node.propose(cmd, timeout=5.0)
        acked.append(value)
    return acked


def values(node: RaftNode) -> list[str]:
    return [json.loads(e.value_json) for e in node.state.read_range(LOG, 0, 10_000)]


def lose_data(sim: SimCluster, nid: str) -> None:
    sim.nodes.pop(nid).crash()
    sim.disks[nid] = LossyDisk()  # the journal and raft.meta lived on the lost disk
    shutil.rmtree(sim.configs[nid].data_dir)


def run_scenario(tmp_path: Path, *, unsafe: bool) -> tuple[str | None, int, int]:
    """Returns (leader elected without the old leader, entries it holds, acked)."""
    sim = SimCluster(configs(tmp_path, 3), random.Random(5))
    switches = UnsafeSwitches(vote_with_empty_data=unsafe)

    def start(nid: str) -> None:
        node = RaftNode(
            sim.configs[nid], disk=sim.disks.setdefault(nid, LossyDisk()), unsafe=switches
        )
        node.start()
        sim.nodes[nid] = node

    async def scenario() -> tuple[str | None, int, int]:
        for nid in sim.configs:
            start(nid)
        leader = await wait_for(sim.leader, 15, "first leader")
        lagging, lost = (n for n in sorted(sim.configs) if n != leader)
        sim.nodes.pop(lagging).stop()
        sim.disks[lagging].journal.reopen()  # a clean stop closed it; the data stays
        acked = await write_many(sim.nodes[leader], 200)
        lose_data(sim, lost)
        start(lost)
        sim.nodes.pop(leader).crash()
        start(lagging)
        # Bounded observation: a leader, if the two can elect one, comes within
        # 2 x the maximum election timeout after both are up and connected.
        deadline = time.monotonic() + 4.0
        elected = None
        while time.monotonic() < deadline and elected is None:
            elected = sim.leader()
            await asyncio.sleep(0.05)
        held = len(values(sim.nodes[elected])) if elected else 0
        if elected is None:
            # The old leader returns: it leads, the lost node catches up and votes again.
            start(leader)
            new = await wait_for(sim.leader, 20, "a leader once the old one is back")
            node = sim.nodes[lost]
            await wait_for(lambda: node.voting.voter, 20, "the lost node catching up")
            # The tick thread sets the flag, then writes node.json before it acts on it
            # (voting.py): this thread can see the flag between the two.
            identity = sim.configs[lost].data_dir / IDENTITY_FILE
            await wait_for(
                lambda: json.loads(identity.read_text()).get("voter") is True,
                5,
                "node.json recording the vote right",
            )
            assert values(sim.nodes[new])[: len(acked)] == acked
            # It votes once its log holds them (applying may still be under way).
            assert node.journal.last_index >= len(acked)
            await wait_for(lambda: values(node)[: len(acked)] == acked, 20, "applied")
        return elected, held, len(acked)

    try:
        return asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(120)
def test_a_node_that_lost_its_data_does_not_vote_until_caught_up(tmp_path: Path) -> None:
    elected, _, acked = run_scenario(tmp_path, unsafe=False)
    assert acked == 200
    assert elected is None, "a leader was elected with the node that lost its data"


@pytest.mark.timeout(120)
def test_negative_control_voting_with_empty_data_loses_acknowledged_writes(
    tmp_path: Path,
) -> None:
    elected, held, acked = run_scenario(tmp_path, unsafe=True)
    assert elected is not None
    assert held < acked  # the new leader lacks acknowledged writes


@pytest.mark.timeout(60)
def test_a_new_cluster_bootstraps_and_every_member_becomes_a_voter(tmp_path: Path) -> None:
    sim = SimCluster(configs(tmp_path, 3), random.Random(6))

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
        leader = await wait_for(sim.leader, 15, "first leader")
        await write_many(sim.nodes[leader], 3)
        await wait_for(lambda: all(n.voting.voter for n in sim.nodes.values()), 10, "voters")
        for nid, cfg in sim.configs.items():
            stored = json.loads((cfg.data_dir / IDENTITY_FILE).read_text())
            assert stored["voter"] is True, nid

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(60)
def test_writes_fail_definitely_while_no_leader_can_be_elected(tmp_path: Path) -> None:
    """Two members of three start empty while the third never starts: nobody can know
    whether the third holds data, so no leader; proposals are refused at once."""
    sim = SimCluster(configs(tmp_path, 3), random.Random(9))

    async def scenario() -> None:
        for nid in sorted(sim.configs)[:2]:
            sim.start(nid)
        node = next(iter(sim.nodes.values()))
        await asyncio.sleep(0)  # let the tick threads start
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert sim.leader() is None
            await asyncio.sleep(0.05)
        entry = AppendEntry(value_json=b'"x"')
        cmd = Append(log=LOG, entries=(entry,), timestamp_ms=int(time.time() * 1000))
        with pytest.raises((DefinitelyNotApplied, OutcomeUnknown)):
            await node.propose(cmd, timeout=2.0)
        assert "every member" in node.status().voting

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(60)
def test_bootstrap_completes_when_one_member_becomes_a_voter_before_its_hello_is_read(
    tmp_path: Path,
) -> None:
    """The first node to hear every other member's hello becomes a voter at once; the
    others must still learn that it is fresh, or none of them can ever bootstrap and
    it can never be elected (a CI run found the cluster stuck this way). Forced here:
    n1 is made a voter by the others' hellos before it sends its own."""
    sim = SimCluster(configs(tmp_path, 3), random.Random(10))

    async def scenario() -> None:
        sim.start("n1")
        core = sim.nodes["n1"]._core
        assert core is not None
        # n1's first hello goes out only once n1 has read both others' (and so votes).
        original = core._rl_greet_new_connections
        core._rl_greet_new_connections = lambda: (  # type: ignore[method-assign]
            original() if core.rl_voting.voter else None
        )
        sim.start("n2")
        sim.start("n3")
        await wait_for(lambda: core.rl_voting.voter, 15, "n1 voting first")
        await wait_for(sim.leader, 15, "a leader")
        await wait_for(lambda: all(n.voting.voter for n in sim.nodes.values()), 15, "voters")

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()
