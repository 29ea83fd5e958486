"""Check-quorum, vote refusal, PreVote and the lease on real RaftNodes in one process.

Three nodes on 127.0.0.1 with the fast test timing (election timeout 400-800 ms,
lease 200 ms). ``time.monotonic()`` is shifted by +-500 ms against PySyncObj's clock
(CLOCK_MONOTONIC_RAW), as it was found shifted by 254 ms on one machine: the lease,
the staleness figure and last-contact times must not notice.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.errors import NoLeader, NoQuorum, OutcomeUnknown
from raftlog.raft.node import RaftNode
from tests.support.cluster import FAST_TIMING
from tests.unit.raft.test_crash_durability import wait_for

pytestmark = [pytest.mark.unit, pytest.mark.timeout(90)]

E_MIN_S = FAST_TIMING["election_timeout_min_ms"] / 1000
E_MAX_S = FAST_TIMING["election_timeout_max_ms"] / 1000
LEASE_MS = FAST_TIMING["leader_lease_ms"]
OFFSET_S = 0.5
# Margins: wide for a loaded 2-core machine, narrow enough that a 500 ms offset fails.
CONTACT_BOUND_MS = 400
LEASE_END_BOUND_S = LEASE_MS / 1000 + 0.35


def one_append(value: str) -> Append:
    entry = AppendEntry(value_json=f'"{value}"'.encode())
    return Append(log="l", entries=(entry,), timestamp_ms=int(time.time() * 1000))


def leader_of(nodes: dict[str, RaftNode]) -> str | None:
    leaders = [nid for nid, n in nodes.items() if n.is_leader() and n.leader_noop_index()]
    return leaders[0] if len(leaders) == 1 else None


async def settled_leader(nodes: dict[str, RaftNode]) -> str:
    leader: str = await wait_for(lambda: leader_of(nodes), 20, "one leader")
    others = [n for nid, n in nodes.items() if nid != leader]
    await wait_for(lambda: all(n.leader_id() == leader for n in others), 10, "followers agree")
    await nodes[leader].propose(one_append("settle"), timeout=5)
    return leader


@pytest.mark.parametrize("offset_s", [OFFSET_S, -OFFSET_S])
def test_lease_and_contact_figures_ignore_an_offset_between_the_two_clocks(
    nodes: dict[str, RaftNode], monkeypatch: pytest.MonkeyPatch, offset_s: float
) -> None:
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + offset_s)

    async def scenario() -> None:
        leader = await settled_leader(nodes)
        lead = nodes[leader]
        await wait_for(lambda: lead.lease_holds(LEASE_MS), 5, "the lease")
        followers = [n for nid, n in nodes.items() if nid != leader]
        for follower in followers:
            # Heartbeats every 50 ms: the last one is recent, never negative or 500 ms
            # old (CONTACT_BOUND_MS leaves a loaded machine room, and catches the offset).
            contact = follower.leader_contact_ms()
            assert contact is not None and 0 <= contact < CONTACT_BOUND_MS, contact
            mine = follower.status().last_leader_contact_ms
            assert mine is not None and 0 <= mine < CONTACT_BOUND_MS, mine
        for peer in lead.status().peers:
            last = peer.last_contact_ms
            assert last is not None and 0 <= last < CONTACT_BOUND_MS, peer
        # The lease ends once the majority is gone, however the clocks are shifted.
        for follower in followers:
            follower.stop()
        started = time.monotonic()
        await wait_for(lambda: not lead.lease_holds(LEASE_MS), 5, "the lease to end")
        # Shifted the other way the lease would outlive its 200 ms by the offset.
        assert time.monotonic() - started < LEASE_END_BOUND_S

    asyncio.run(scenario())


def test_cut_off_leader_steps_down_and_refuses_writes_at_once(
    nodes: dict[str, RaftNode],
) -> None:
    async def scenario() -> None:
        leader = await settled_leader(nodes)
        lead = nodes[leader]
        for nid, node in nodes.items():
            if nid != leader:
                node.stop()
        # Check-quorum: it steps down after one election timeout without a majority.
        await wait_for(lambda: not lead.is_leader(), E_MIN_S + 1.0, "the leader to step down")
        await wait_for(lambda: lead.leader_id() is None, 2, "it to forget the leader")
        assert lead.is_ready() == (False, "no leader is known")
        for i in range(20):
            started = time.monotonic()
            with pytest.raises((NoLeader, NoQuorum)):
                await lead.propose(one_append(f"refused-{i}"), timeout=10)
            assert time.monotonic() - started < 0.1

    asyncio.run(scenario())


def test_node_left_alone_forgets_its_leader_and_keeps_its_term(
    nodes: dict[str, RaftNode],
) -> None:
    """PreVote: a follower that cannot win does not raise its term (and so cannot
    depose anyone when it comes back); it says at once that it has no leader."""

    async def scenario() -> None:
        leader = await settled_leader(nodes)
        alone_id, third_id = (nid for nid in nodes if nid != leader)
        alone = nodes[alone_id]
        term = alone.term()
        # Both others stop, so nothing can elect a new leader while the poll below looks
        # for the gap (with the third node up, a new leader could fill it in under 20 ms).
        nodes.pop(leader).stop()
        third = nodes.pop(third_id)
        third.stop()
        await wait_for(lambda: alone.leader_id() is None, E_MAX_S + 5.0, "the leader forgotten")
        started = time.monotonic()
        with pytest.raises(NoLeader):
            await alone.propose(one_append("nobody"), timeout=10)
        assert time.monotonic() - started < 0.1
        # Five election timeouts alone: each one is a pre-vote nobody answers, so the term
        # never moves. (A deadline on a negative: the loop ends by time, checking each poll.)
        watch_until = time.monotonic() + 5 * E_MAX_S
        while time.monotonic() < watch_until:
            assert alone.term() == term
            await asyncio.sleep(0.05)
        # The third node comes back: the pair elects a leader by pre-vote then vote, so
        # the term grows by an election or two, not one per timeout spent alone.
        nodes[third_id] = RaftNode(third.config)
        nodes[third_id].start()
        await wait_for(lambda: leader_of(nodes), 20, "a new leader")
        assert term < alone.term() <= term + 2

    asyncio.run(scenario())


def test_a_follower_that_was_paused_rejoins_without_an_election(
    nodes: dict[str, RaftNode],
) -> None:
    """Its tick thread blocked for several election timeouts (as in a GC pause or
    SIGSTOP): on resuming it pre-votes, is refused, and follows the same leader."""

    async def scenario() -> None:
        leader = await settled_leader(nodes)
        term = nodes[leader].term()
        paused_id = next(nid for nid in nodes if nid != leader)
        paused = nodes[paused_id]
        released = threading.Event()
        paused.call_on_tick(lambda: released.wait(20))
        try:
            await wait_for(
                lambda: (paused.leader_contact_ms() or 0) > 3 * E_MAX_S * 1000,
                10,
                "a pause of three election timeouts",
            )
        finally:
            released.set()
        await wait_for(
            lambda: (paused.leader_contact_ms() or 10**9) < 200, 5, "the follower to rejoin"
        )
        await nodes[leader].propose(one_append("after"), timeout=5)
        assert leader_of(nodes) == leader
        assert {n.term() for n in nodes.values()} == {term}

    asyncio.run(scenario())


@pytest.mark.parametrize("draining", [True, False])
def test_command_forwarded_to_a_leader_that_goes_silent(
    nodes: dict[str, RaftNode], draining: bool
) -> None:
    """A follower's command forwarded to a leader that stops answering ends when the
    follower forgets that leader: OutcomeUnknown in general (the leader may have
    appended it), a definite NoLeader when the leader had announced it was draining
    before a handover (it appends nothing forwarded from then on)."""

    async def scenario() -> None:
        leader = await settled_leader(nodes)
        lead = nodes[leader]
        follower = next(n for nid, n in nodes.items() if nid != leader)
        if draining:
            lead.start_draining()
            await wait_for(lead.drained, 5, "the drain (every peer saw it)")
        released = threading.Event()
        lead.call_on_tick(lambda: released.wait(20))  # silent from here on
        try:
            await wait_for(
                lambda: (follower.leader_contact_ms() or 0) > 100, 5, "the leader to be silent"
            )
            expected = NoLeader if draining else OutcomeUnknown
            with pytest.raises(expected):
                await follower.propose(one_append("forwarded"), timeout=10)
        finally:
            released.set()

    asyncio.run(scenario())
