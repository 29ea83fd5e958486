"""LogService read preconditions (consistency levels, min_index, max_lag, staleness)
against a stub node: deterministic versions of what the integration tests show."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from raftlog.config import config_from_mapping
from raftlog.errors import NoLeader, NoQuorum, ReadTimeout, ServedByLeader, TooStale
from raftlog.service.log_service import LogService
from raftlog.service.types import ReadOptions

pytestmark = pytest.mark.unit

NODES = [
    {"id": f"n{i}", "raft": f"127.0.0.1:700{i}", "http": f"127.0.0.1:800{i}"} for i in (1, 2, 3)
]


class StubNode:
    def __init__(self) -> None:
        self.leader = False
        self.leader_name: str | None = "n2"
        self.connected = True
        self.lease = True
        self.contact_ms: int | None = 50
        self.lag: int | None = 0
        self.applied_index = 10
        self.noop_index: int | None = 10
        self.barrier_index = 12
        self.barriers = 0

    def is_leader(self) -> bool:
        return self.leader

    def leader_id(self) -> str | None:
        return self.leader_name

    def leader_connected(self) -> bool:
        return self.connected

    def lease_holds(self, lease_ms: int) -> bool:
        return self.lease

    def leader_noop_index(self) -> int | None:
        return self.noop_index if self.leader else None

    def leader_contact_ms(self) -> int | None:
        return self.contact_ms

    def known_lag(self) -> int | None:
        return self.lag

    async def barrier(self, timeout: float) -> int:
        self.barriers += 1
        await asyncio.sleep(0.01)
        return self.barrier_index

    async def wait_applied(self, index: int, timeout: float) -> bool:
        if self.applied_index >= index:
            return True
        await asyncio.sleep(timeout)
        return False


def service(tmp_path: Path) -> tuple[LogService, StubNode]:
    config = config_from_mapping({"cluster": {"nodes": NODES}}, node_id="n1", data_dir=tmp_path)
    node = StubNode()
    return LogService(node, config), node  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_quorum_reads_share_one_barrier_only_when_they_arrived_before_it(tmp_path: Path) -> None:
    svc, node = service(tmp_path)
    node.applied_index = 12

    async def scenario() -> None:
        first = [asyncio.create_task(svc._read_point(ReadOptions())) for _ in range(5)]
        await asyncio.gather(*first)
        assert node.barriers == 1  # five concurrent reads, one barrier
        await svc._read_point(ReadOptions())
        assert node.barriers == 2  # a later read never reuses an earlier barrier

    run(scenario())


def test_quorum_read_refused_without_a_reachable_leader(tmp_path: Path) -> None:
    svc, node = service(tmp_path)
    node.connected = False
    with pytest.raises(NoQuorum):
        run(svc._read_point(ReadOptions()))


def test_quorum_read_waits_for_the_barrier_to_apply(tmp_path: Path) -> None:
    svc, node = service(tmp_path)
    node.applied_index = 11  # the barrier (12) is committed but not applied here
    with pytest.raises(ReadTimeout):
        run(svc._read_point(ReadOptions(timeout=0.05)))


def test_leader_reads(tmp_path: Path) -> None:
    svc, node = service(tmp_path)
    with pytest.raises(ServedByLeader) as info:
        run(svc._read_point(ReadOptions(consistency="leader")))
    assert info.value.leader_url == "http://127.0.0.1:8002"
    node.leader_name = None
    with pytest.raises(NoQuorum):
        run(svc._read_point(ReadOptions(consistency="leader")))
    node.leader, node.leader_name = True, "n1"
    run(svc._read_point(ReadOptions(consistency="leader")))
    node.lease = False
    with pytest.raises(NoQuorum, match="leader_lease_ms"):
        run(svc._read_point(ReadOptions(consistency="leader")))


def test_a_new_leader_serves_leader_reads_only_after_applying_its_no_op(tmp_path: Path) -> None:
    # A new leader may not have applied what earlier leaders committed; its no-op of the
    # current term, once applied, covers all of it (the L1 fault scenario caught a read
    # 1.7 s stale from a freshly elected leader before this rule).
    svc, node = service(tmp_path)
    node.leader, node.leader_name = True, "n1"
    node.noop_index = None  # still becoming leader
    with pytest.raises(NoQuorum, match="becoming leader"):
        run(svc._read_point(ReadOptions(consistency="leader")))
    node.noop_index = 11  # appended, not applied yet (applied 10)
    with pytest.raises(ReadTimeout, match="first entry 11"):
        run(svc._read_point(ReadOptions(consistency="leader", timeout=0.05)))
    node.applied_index = 11
    run(svc._read_point(ReadOptions(consistency="leader")))


def test_any_reads_staleness_and_lag(tmp_path: Path) -> None:
    svc, node = service(tmp_path)
    run(svc._read_point(ReadOptions(consistency="any", max_staleness_ms=100, max_lag=0)))
    node.contact_ms = 500
    with pytest.raises(TooStale, match="500 ms ago"):
        run(svc._read_point(ReadOptions(consistency="any", max_staleness_ms=100)))
    node.contact_ms = None
    with pytest.raises(TooStale, match="never"):
        run(svc._read_point(ReadOptions(consistency="any", max_staleness_ms=100)))
    node.lag = 7
    with pytest.raises(TooStale, match="7 entries behind"):
        run(svc._read_point(ReadOptions(consistency="any", max_lag=6)))
    run(svc._read_point(ReadOptions(consistency="any", max_lag=7)))
    node.lag = None  # unknown lag is not refused: max_staleness_ms covers a cut-off node
    run(svc._read_point(ReadOptions(consistency="any", max_lag=0)))


def test_min_index_waits_then_times_out(tmp_path: Path) -> None:
    svc, _ = service(tmp_path)
    run(svc._read_point(ReadOptions(consistency="any", min_index=10)))
    with pytest.raises(ReadTimeout, match="min_index 11"):
        run(svc._read_point(ReadOptions(consistency="any", min_index=11, timeout=0.05)))


def test_writes_needing_the_leader_are_handed_to_it(tmp_path: Path) -> None:
    from raftlog.service.types import AppendRequest, NewEntry

    svc, node = service(tmp_path)
    req = AppendRequest("l", (NewEntry(b"1"),), ack="all")
    with pytest.raises(ServedByLeader):
        run(svc.append(req))
    node.leader_name = None
    with pytest.raises(NoLeader):
        run(svc.append(req))


def test_leader_read_waits_for_a_lapsed_lease_to_be_renewed(tmp_path: Path) -> None:
    """A lease that lapsed on a busy machine is renewed by the next heartbeat round: the
    read waits for it (checked afresh) instead of refusing a read it can serve."""
    svc, node = service(tmp_path)
    node.leader, node.leader_name, node.lease = True, "n1", False

    async def scenario() -> None:
        read = asyncio.create_task(svc._read_point(ReadOptions(consistency="leader")))
        await asyncio.sleep(0.02)
        assert not read.done()  # still waiting on the lapsed lease
        node.lease = True  # the next round was answered by a majority
        await asyncio.wait_for(read, 5)

    run(scenario())


def test_leader_read_refuses_after_the_grace_or_when_leadership_ends(tmp_path: Path) -> None:
    from raftlog.service.log_service import LEASE_GRACE_HEARTBEATS

    svc, node = service(tmp_path)
    node.leader, node.leader_name, node.lease = True, "n1", False
    grace_s = LEASE_GRACE_HEARTBEATS * svc.config.node.heartbeat_ms / 1000

    async def lapsed() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(NoQuorum, match="leader_lease_ms"):
            await svc._read_point(ReadOptions(consistency="leader", timeout=30))
        return loop.time() - t0

    took = run(lapsed())
    assert took >= grace_s  # waited the grace, and refused at its end
    assert took < grace_s + 5  # ended by the grace, not by the read's 30 s timeout

    async def deposed() -> None:
        read = asyncio.create_task(svc._read_point(ReadOptions(consistency="leader")))
        await asyncio.sleep(0.02)
        node.leader = False  # stepped down while waiting: refused, not served
        with pytest.raises(NoQuorum):
            await asyncio.wait_for(read, 5)

    run(deposed())
