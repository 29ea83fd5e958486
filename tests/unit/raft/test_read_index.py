"""ReadIndex: quorum reads on the leader confirmed by one round of appends, writing nothing.

PendingReads alone (which reads a confirmation covers, one round for many reads), then
real RaftNodes in one process with the fast test timing."""

from __future__ import annotations

import asyncio
import time

import pytest

from raftlog.errors import NodeStopped, NoLeader, NoQuorum
from raftlog.raft.node import RaftNode
from raftlog.raft.read_index import PendingReads
from tests.unit.raft.test_crash_durability import wait_for
from tests.unit.raft.test_raft_liveness import one_append, settled_leader

pytestmark = [pytest.mark.unit, pytest.mark.timeout(90)]


def test_one_round_in_flight_serves_many_reads_and_the_next_goes_when_it_is_confirmed() -> None:
    async def scenario() -> None:
        reads = PendingReads()
        loop = asyncio.get_running_loop()
        first, second, late = (loop.create_future() for _ in range(3))
        assert reads.add(10.0, first) is True  # the first read asks for a round
        assert reads.add(11.0, second) is False  # the next one shares it
        reads.round_sent(11.5)
        assert reads.add(12.0, late) is False  # a round is in flight: it waits for it
        assert reads.settle(None) is False  # no majority yet: nothing changes
        assert reads.settle(11.2) is False  # an older heartbeat: covers two, not the round
        await asyncio.sleep(0)
        assert first.done() and second.done() and not late.done()
        assert reads.settle(11.6) is True  # the round is confirmed; late needs the next
        reads.round_sent(12.5)
        assert reads.settle(12.6) is False  # covers late; nothing waits: no round active
        await asyncio.sleep(0)
        assert late.done() and len(reads) == 0
        deposed = loop.create_future()
        assert reads.add(13.0, deposed) is True
        reads.fail_all(lambda: NoQuorum("deposed"))
        await asyncio.sleep(0)
        with pytest.raises(NoQuorum):
            deposed.result()
        assert len(reads) == 0 and reads.add(14.0, loop.create_future()) is True

    asyncio.run(scenario())


def test_a_read_that_gave_up_is_forgotten() -> None:
    async def scenario() -> None:
        reads = PendingReads()
        gone = asyncio.get_running_loop().create_future()
        reads.add(1.0, gone)
        reads.discard(gone)
        assert len(reads) == 0

    asyncio.run(scenario())


def test_leader_read_index_covers_every_acknowledged_write_and_writes_nothing(
    nodes: dict[str, RaftNode],
) -> None:
    async def scenario() -> None:
        leader_id = await settled_leader(nodes)
        leader = nodes[leader_id]
        for i in range(5):
            result = await leader.propose(one_append(f"w{i}"), timeout=5)
            last_log = leader.journal.last_index
            index = await leader.read_index(timeout=5)
            assert index >= result.index  # an acknowledged write is inside the read point
            assert leader.journal.last_index == last_log  # no entry was appended for it
        many = await asyncio.gather(*(leader.read_index(timeout=5) for _ in range(50)))
        assert min(many) >= result.index
        for nid, node in nodes.items():
            if nid != leader_id:
                with pytest.raises(NoLeader):
                    await node.read_index(timeout=1)

    asyncio.run(scenario())


def test_a_leader_cut_off_from_every_peer_confirms_no_read(nodes: dict[str, RaftNode]) -> None:
    async def scenario() -> None:
        leader_id = await settled_leader(nodes)
        leader = nodes[leader_id]
        for nid in [n for n in nodes if n != leader_id]:
            nodes.pop(nid).stop()
        # Still leader for a while (check-quorum deposes it after an election timeout):
        # no majority can answer the round, so the read is refused, never served.
        started = time.monotonic()
        with pytest.raises((NoQuorum, NoLeader)):
            await leader.read_index(timeout=0.3)
        assert time.monotonic() - started < 5
        await wait_for(lambda: not leader.is_leader(), 10, "the cut-off leader to step down")
        with pytest.raises(NoLeader):
            await leader.read_index(timeout=0.3)

    asyncio.run(scenario())


def test_pending_reads_fail_when_the_node_stops(nodes: dict[str, RaftNode]) -> None:
    async def scenario() -> None:
        leader_id = await settled_leader(nodes)
        leader = nodes[leader_id]
        for nid in [n for n in nodes if n != leader_id]:
            nodes.pop(nid).stop()
        read = asyncio.create_task(leader.read_index(timeout=30))
        # Wait until the read is registered (pending), so the stop meets it in flight.
        await wait_for(lambda: len(leader._reads) == 1, 10, "the read to be pending")
        await asyncio.get_running_loop().run_in_executor(None, leader.stop)
        with pytest.raises((NodeStopped, NoQuorum)):
            await asyncio.wait_for(read, 10)

    asyncio.run(scenario())
