"""Coalescing appends (raftlog.service.coalesce) through LogService on MemoryNode.

Concurrency without sleeps: with ``hold_apply`` a proposal commits but waits for
``node.step()`` to apply it, so the test decides when the proposal in flight ends and
what has queued behind it. ``node.proposals`` lists every command that reached Raft.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from raftlog.commands import (
    GROUP_VERSION,
    Append,
    AppendEntry,
    AppendGroup,
    Command,
    InvalidCommand,
    SetClusterMeta,
)
from raftlog.config import config_from_mapping
from raftlog.errors import (
    DefinitelyNotApplied,
    NoLeader,
    NotFullyReplicated,
    OffsetMismatch,
    OutcomeUnknown,
    Overloaded,
)
from raftlog.service.coalesce import DEFAULT_MAX_IN_FLIGHT, AppendCoalescer, member_bytes
from raftlog.service.log_service import LogService
from raftlog.service.memory_node import MemoryNode
from raftlog.service.types import AppendRequest, AppendResult, NewEntry, ReadOptions

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

NODES = [
    {"id": f"n{i}", "raft": f"127.0.0.1:700{i}", "http": f"127.0.0.1:800{i}"} for i in (1, 2, 3)
]
SHORT = 0.05  # seconds: a timeout a test expects to run out


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def _twin(
    tmp_path: Path, leader: str | None, enabled: bool, **node: Any
) -> Iterator[tuple[LogService, MemoryNode]]:
    config = config_from_mapping(
        {"cluster": {"nodes": NODES}, "node": node}, node_id="n1", data_dir=tmp_path
    )
    with MemoryNode(config, leader=leader) as memory:
        if enabled:
            memory.commit_elsewhere(SetClusterMeta(enable_version=GROUP_VERSION))
        service = LogService(memory, config)
        # One proposal in flight: the tests decide what queues behind it. The bound
        # itself is checked in test_at_most_max_in_flight_proposals_are_in_flight.
        service.coalescer.max_in_flight = 1
        yield service, memory


@pytest.fixture
async def on_leader(tmp_path: Path) -> AsyncIterator[tuple[LogService, MemoryNode]]:
    """n1 leads; the group version is enabled; applies wait for ``step()``."""
    with _twin(tmp_path, "", True) as (service, node):
        await service.start()
        node.hold_apply = True
        yield service, node


async def turns(n: int = 20) -> None:
    """Let the loop run ``n`` iterations (no timer involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


def request(value: bytes = b"1", log: str = "audit", **kw: Any) -> AppendRequest:
    return AppendRequest(log, (NewEntry(value),), **kw)


def groups(node: MemoryNode) -> list[Command]:
    return [c for c in node.proposals if not isinstance(c, SetClusterMeta)]


async def start_behind_one(
    service: LogService, node: MemoryNode, requests: list[AppendRequest]
) -> tuple[asyncio.Task[Any], list[asyncio.Task[Any]]]:
    """A first append in flight, then ``requests`` queued behind it."""
    before = len(groups(node))
    first = asyncio.ensure_future(service.append(request(b"0")))
    await turns()
    assert len(groups(node)) == before + 1 and not first.done()
    tasks = [asyncio.ensure_future(service.append(r)) for r in requests]
    await turns()
    assert len(groups(node)) == before + 1, "queued appends must wait for the one in flight"
    return first, tasks


async def finish(node: MemoryNode, *tasks: asyncio.Task[Any]) -> list[Any]:
    """Apply until every task answered; their results or exceptions, in order."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 2.0
    while not all(t.done() for t in tasks):
        assert loop.time() < end, "appends did not answer"
        node.step()
        await asyncio.sleep(0)
    return [t.exception() or t.result() for t in tasks]


# -- packing -------------------------------------------------------------------------------


async def test_a_lone_append_is_proposed_at_once_and_alone(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    task = asyncio.ensure_future(service.append(request()))
    # Three loop iterations, no window and no timer: the request's first step queues it
    # and schedules the pump for the next iteration (so what arrives in this one joins);
    # the pump starts the proposal, whose first step hands it to Raft.
    for _ in range(3):
        if node.proposals:
            break
        await asyncio.sleep(0)
    (proposed,) = node.proposals
    assert proposed == Append("audit", (AppendEntry(b"1"),), proposed.timestamp_ms)  # type: ignore[union-attr]
    (result,) = await finish(node, task)
    assert isinstance(result, AppendResult) and result.offset == 0


async def test_concurrent_appends_share_one_proposal_with_dense_ordered_offsets(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first, tasks = await start_behind_one(service, node, [request(b"%d" % i) for i in range(1, 31)])
    results = await finish(node, first, *tasks)
    proposed = groups(node)
    assert len(proposed) == 2  # 31 appends, 2 Raft commands
    assert isinstance(proposed[1], AppendGroup) and len(proposed[1].appends) == 30
    assert [r.offset for r in results] == list(range(31))
    assert len({r.index for r in results[1:]}) == 1  # one entry for the 30
    stored = node.state.read_range("audit", 0, 100)
    assert [e.value_json for e in stored] == [b"%d" % i for i in range(31)]


async def test_appends_arriving_in_one_loop_iteration_go_together(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    service.coalescer.max_in_flight = DEFAULT_MAX_IN_FLIGHT  # room for every one of them
    tasks = [asyncio.ensure_future(service.append(request(b"%d" % i))) for i in range(10)]
    results = await finish(node, *tasks)
    (group,) = groups(node)
    assert isinstance(group, AppendGroup) and len(group.appends) == 10
    assert [r.offset for r in results] == list(range(10))


async def test_a_mismatch_in_the_middle_fails_only_itself(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first, tasks = await start_behind_one(
        service,
        node,
        [request(b"a"), request(b"b", expected_offset=7), request(b"c", expected_offset=2)],
    )
    _, a, b, c = await finish(node, first, *tasks)
    assert isinstance(a, AppendResult) and a.offset == 1
    assert isinstance(b, OffsetMismatch) and b.details == {"next_offset": 2}
    assert isinstance(c, AppendResult) and c.offset == 2
    assert [e.value_json for e in node.state.read_range("audit", 0, 9)] == [b"0", b"a", b"c"]


async def test_an_invalid_request_fails_alone_before_joining(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    too_long_key = "k" * 2000  # the API refuses it first; the service never groups it
    bad = AppendRequest("audit", (NewEntry(b"1", too_long_key),))
    first, tasks = await start_behind_one(service, node, [request(b"a"), bad, request(b"b")])
    _, a, invalid, b = await finish(node, first, *tasks)
    assert isinstance(invalid, InvalidCommand)
    assert isinstance(a, AppendResult) and isinstance(b, AppendResult)
    assert (a.offset, b.offset) == (1, 2)


async def test_an_unknown_outcome_is_every_members(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first, tasks = await start_behind_one(service, node, [request(b"a"), request(b"b")])
    node.outcome_unknown = "lost"
    results = await finish(node, first, *tasks)
    assert isinstance(results[0], AppendResult)
    assert all(isinstance(r, OutcomeUnknown) and r.may_have_applied for r in results[1:])


async def test_a_definite_refusal_is_every_members_and_definite(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first, tasks = await start_behind_one(service, node, [request(b"a"), request(b"b")])
    node.leader = None  # the group is refused before it reaches Raft
    results = await finish(node, first, *tasks)
    assert all(isinstance(r, NoLeader) and isinstance(r, DefinitelyNotApplied) for r in results[1:])
    assert node.state.log_info("audit").count == 1  # type: ignore[union-attr]


async def test_ack_all_is_per_member(on_leader: tuple[LogService, MemoryNode]) -> None:
    service, node = on_leader
    node.behind = {"n3"}
    first, tasks = await start_behind_one(
        service, node, [request(b"a", ack="all", timeout=SHORT), request(b"b")]
    )
    _, everywhere, quorum = await finish(node, first, *tasks)
    assert isinstance(everywhere, NotFullyReplicated) and everywhere.details["committed"]
    assert isinstance(quorum, AppendResult) and quorum.offset == 2


async def test_ack_leader_does_not_wait_for_a_group(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first = asyncio.ensure_future(service.append(request(b"0")))
    await turns()
    accepted = await service.append(request(b"x", ack="leader"))  # answers at once
    assert accepted.to_dict()["accepted"] is True
    assert len(groups(node)) == 2  # proposed alone, beside the one in flight
    await finish(node, first)


async def test_a_member_that_times_out_queued_is_definite_and_never_proposed(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first = asyncio.ensure_future(service.append(request(b"0")))
    await turns()
    with pytest.raises(Overloaded):
        await service.append(request(b"late", timeout=SHORT))  # the first never applies
    assert service.coalescer.waiting == 1
    await finish(node, first)
    await turns()
    assert len(groups(node)) == 1  # the one that gave up was not proposed


async def test_a_member_that_times_out_proposed_is_outcome_unknown(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    with pytest.raises(OutcomeUnknown):
        await service.append(request(b"0", timeout=SHORT))
    assert node.commit_index > node.applied_index  # committed, not applied: unknown is right


async def test_the_waiting_bound_answers_overloaded(tmp_path: Path) -> None:
    with _twin(tmp_path, "", True, max_inflight_proposals=3) as (service, node):
        await service.start()
        node.hold_apply = True
        tasks = [asyncio.ensure_future(service.append(request())) for _ in range(3)]
        await turns()
        with pytest.raises(Overloaded):
            await service.append(request())
        await finish(node, *tasks)


# -- bounds ----------------------------------------------------------------------------------


async def test_at_most_max_in_flight_proposals_are_in_flight(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    service.coalescer.max_in_flight = 2
    assert AppendCoalescer(node).max_in_flight == DEFAULT_MAX_IN_FLIGHT
    first = asyncio.ensure_future(service.append(request(b"0")))
    await turns()
    second = asyncio.ensure_future(service.append(request(b"1")))
    await turns()
    assert len(groups(node)) == 2  # two in flight, each proposed at once
    rest = [asyncio.ensure_future(service.append(request(b"%d" % i))) for i in range(2, 6)]
    await turns()
    assert len(groups(node)) == 2  # the rest wait for one of them to end
    results = await finish(node, first, second, *rest)
    assert [r.offset for r in results] == list(range(6))
    assert len(groups(node)) == 3 and isinstance(groups(node)[2], AppendGroup)


async def test_groups_respect_the_member_and_byte_bounds(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    service.coalescer.max_members = 4
    value = b'"' + b"v" * 98 + b'"'
    one = member_bytes(Append("audit", (AppendEntry(value),), 0))
    service.coalescer.max_bytes = 3 * one  # three of them fit, four do not
    big = b'"' + b"b" * (4 * one) + b'"'
    reqs = [request(value) for _ in range(7)] + [request(big)] + [request(b"1")] * 4
    first, tasks = await start_behind_one(service, node, reqs)
    results = await finish(node, first, *tasks)
    assert [r.offset for r in results] == list(range(13))
    sizes = []
    for cmd in groups(node)[1:]:
        members = cmd.appends if isinstance(cmd, AppendGroup) else (cmd,)  # type: ignore[union-attr]
        sizes.append(len(members))
        total = sum(member_bytes(m) for m in members)
        assert len(members) <= 4
        assert total <= 3 * one or len(members) == 1
    assert sizes == [3, 3, 1, 1, 4]  # the big one goes alone, as a plain Append
    assert isinstance(groups(node)[4], Append)


# -- followers and the group version ------------------------------------------------------------


async def test_a_follower_coalesces_what_it_forwards(tmp_path: Path) -> None:
    with _twin(tmp_path, "n2", True) as (service, node):
        await service.start()
        node.hold_apply = True
        first, tasks = await start_behind_one(service, node, [request(b"a"), request(b"b")])
        results = await finish(node, first, *tasks)
        assert [r.offset for r in results] == [0, 1, 2]
        assert isinstance(groups(node)[1], AppendGroup)


async def test_a_leader_enables_the_group_version_and_sends_singles_until_then(
    tmp_path: Path,
) -> None:
    with _twin(tmp_path, "", False) as (service, node):
        await service.start()
        node.hold_apply = True
        first, tasks = await start_behind_one(service, node, [request(b"a"), request(b"b")])
        results = await finish(node, first, *tasks)
        assert [r.offset for r in results] == [0, 1, 2]
        assert [type(c).__name__ for c in node.proposals] == [
            "Append",
            "SetClusterMeta",
            "Append",
            "Append",
        ]
        assert node.state.cluster_meta().enabled_version == GROUP_VERSION
        first, tasks = await start_behind_one(service, node, [request(b"c"), request(b"d")])
        await finish(node, first, *tasks)
        assert isinstance(node.proposals[-1], AppendGroup)


async def test_a_follower_never_enables_the_version_itself(tmp_path: Path) -> None:
    with _twin(tmp_path, "n2", False) as (service, node):
        await service.start()
        node.hold_apply = True
        first, tasks = await start_behind_one(service, node, [request(b"a"), request(b"b")])
        await finish(node, first, *tasks)
        assert all(isinstance(c, Append) for c in node.proposals)


def test_bounds_must_be_positive(tmp_path: Path) -> None:
    config = config_from_mapping({"cluster": {"nodes": NODES}}, node_id="n1", data_dir=tmp_path)
    with MemoryNode(config) as node, pytest.raises(ValueError):
        AppendCoalescer(node, max_members=0)


async def test_a_group_wakes_the_long_polls_of_each_of_its_logs(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    poll = asyncio.ensure_future(
        service.read_range("other", 0, 10, ReadOptions(consistency="any"), wait_s=5.0)
    )
    await turns()
    first, tasks = await start_behind_one(
        service, node, [request(b"a"), request(b"b", log="other")]
    )
    await finish(node, first, *tasks)
    assert isinstance(groups(node)[-1], AppendGroup)
    page = await asyncio.wait_for(poll, 2.0)
    assert [e.value_json for e in page.entries] == [b"b"]
