"""``propose`` and ``propose_nowait`` (ack=leader) pass the same admission check.

A single real RaftNode on 127.0.0.1: each refusal is raised by both paths, with the
same error type and message, before anything reaches Raft (the journal does not grow).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.errors import DefinitelyNotApplied, NodeStopped, NoLeader, Overloaded
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.state.machine import Appended
from tests.unit.raft.test_crash_durability import configs, wait_for

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def entry(value: str) -> Append:
    return Append(
        log="l",
        entries=(AppendEntry(value_json=f'"{value}"'.encode()),),
        timestamp_ms=int(time.time() * 1000),
    )


async def refusals(node: RaftNode) -> tuple[BaseException, BaseException]:
    """What propose and propose_nowait raise now (both must raise)."""
    with pytest.raises(DefinitelyNotApplied) as by_propose:
        await node.propose(entry("p"), timeout=2)
    with pytest.raises(DefinitelyNotApplied) as by_nowait:
        node.propose_nowait(entry("n"))
    return by_propose.value, by_nowait.value


def same_refusal(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and str(a) == str(b)


def test_a_draining_leader_refuses_propose_nowait_as_it_refuses_propose(
    tmp_path: Path,
) -> None:
    node = RaftNode(configs(tmp_path, 1)["n1"], disk=LossyDisk())
    node.start()

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        assert isinstance(await node.propose(entry("before"), timeout=5), Appended)
        # The leader proposes its cluster id by itself once: let that be done first, or
        # it could be appended after `last` below.
        await wait_for(lambda: node.cluster_id, 10, "the cluster id")
        node.propose_nowait(entry("before-nowait"))  # admitted while not draining
        await wait_for(lambda: node.journal.last_index == node.applied_index, 5, "the apply")
        last = node.journal.last_index
        node.start_draining()
        by_propose, by_nowait = await refusals(node)
        assert isinstance(by_propose, NoLeader)
        assert "handing over leadership" in str(by_propose)
        assert same_refusal(by_propose, by_nowait)
        assert not by_nowait.may_have_applied
        assert node.journal.last_index == last  # nothing was appended

    try:
        asyncio.run(scenario())
    finally:
        node.stop()


def test_a_full_in_flight_budget_refuses_both_paths(tmp_path: Path) -> None:
    node = RaftNode(configs(tmp_path, 1, max_inflight_proposals=1)["n1"], disk=LossyDisk())
    node.start()

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        node._proposals.inflight = 1  # as if one proposal were awaiting its outcome
        try:
            by_propose, by_nowait = await refusals(node)
        finally:
            node._proposals.inflight = 0
        assert isinstance(by_propose, Overloaded)
        assert same_refusal(by_propose, by_nowait)

    try:
        asyncio.run(scenario())
    finally:
        node.stop()


def test_a_node_not_started_or_stopped_refuses_both_paths(tmp_path: Path) -> None:
    node = RaftNode(configs(tmp_path, 1)["n1"], disk=LossyDisk())

    async def scenario() -> None:
        by_propose, by_nowait = await refusals(node)
        assert isinstance(by_propose, NodeStopped)
        assert same_refusal(by_propose, by_nowait)

    asyncio.run(scenario())  # never started
    node.start()
    node.stop()
    asyncio.run(scenario())  # stopped
