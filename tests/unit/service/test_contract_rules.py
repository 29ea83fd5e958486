"""The contract's ack and consistency rules (api-v1: Appending, Reading, Errors), checked
on LogService driven by MemoryNode: one process, a real StateMachine, no sleeps.

Each test names the rule it checks. Where a rule involves waiting (a proposal waiting for
its apply, ``min_index``, a barrier not yet applied here), the test starts the request
as a task, checks that it is still waiting, applies with ``node.step()`` and then awaits
the answer; ``until`` yields to the loop until a condition holds, with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from raftlog.commands import Append, AppendEntry, Barrier, Trim
from raftlog.config import config_from_mapping
from raftlog.errors import (
    CorruptStorage,
    DefinitelyNotApplied,
    InsufficientStorage,
    NodeStopped,
    NoLeader,
    NoQuorum,
    NotFullyReplicated,
    OffsetMismatch,
    OffsetNotFound,
    OutcomeUnknown,
    Overloaded,
    RaftlogError,
    ReadTimeout,
    ServedByLeader,
    TooStale,
    Trimmed,
)
from raftlog.service import log_service
from raftlog.service.log_service import LogService
from raftlog.service.memory_node import MemoryNode
from raftlog.service.types import Accepted, AppendRequest, AppendResult, NewEntry, ReadOptions

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

NODES = [
    {"id": f"n{i}", "raft": f"127.0.0.1:700{i}", "http": f"127.0.0.1:800{i}"} for i in (1, 2, 3)
]
LEADER_URL = "http://127.0.0.1:8002"  # n2's, as a follower n1 names it
QUORUM = ReadOptions()
LEADER = ReadOptions(consistency="leader")
ANY = ReadOptions(consistency="any")
SHORT = 0.05  # seconds: a timeout a test expects to run out


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def _twin(tmp_path: Path, leader: str | None) -> Iterator[tuple[LogService, MemoryNode]]:
    config = config_from_mapping({"cluster": {"nodes": NODES}}, node_id="n1", data_dir=tmp_path)
    with MemoryNode(config, leader=leader) as node:
        yield LogService(node, config), node


@pytest.fixture
async def on_leader(tmp_path: Path) -> AsyncIterator[tuple[LogService, MemoryNode]]:
    """n1, the leader of term 1, its no-op applied."""
    with _twin(tmp_path, "") as (service, node):
        await service.start()
        yield service, node
        await service.close()


@pytest.fixture
async def on_follower(tmp_path: Path) -> AsyncIterator[tuple[LogService, MemoryNode]]:
    """n1, a follower that knows n2 leads."""
    with _twin(tmp_path, "n2") as (service, node):
        await service.start()
        yield service, node
        await service.close()


async def until(condition: Callable[[], bool], deadline_s: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, "condition not reached before the deadline"
        await asyncio.sleep(0)  # yield to the loop; never a timed sleep


async def still_waiting(task: asyncio.Task[Any]) -> None:
    """Let ``task`` run until it blocks, then check it has not answered."""
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done(), task


def append(value: bytes = b"1", **kw: Any) -> AppendRequest:
    return AppendRequest("audit", (NewEntry(value),), **kw)


def entry_cmd(value: bytes = b"1", log: str = "audit") -> Append:
    return Append(log, (AppendEntry(value),), 1)


def barriers(node: MemoryNode) -> int:
    """How many barriers the node's log holds (quorum rounds)."""
    return sum(isinstance(c, Barrier) for c in node.committed_commands())


def assert_definite(exc: RaftlogError) -> None:
    assert isinstance(exc, DefinitelyNotApplied) and exc.may_have_applied is False


# -- ack ------------------------------------------------------------------------------------


async def test_ack_quorum_answers_committed_and_applied_on_the_answering_node(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    result = await service.append(append(b'"a"'))
    assert isinstance(result, AppendResult)
    assert (result.log, result.offset, result.last_offset, result.count) == ("audit", 0, 0, 1)
    assert result.term == node.term() == 1
    assert node.commit_index >= result.index and node.applied_index >= result.index
    assert node.state.get_entry("audit", 0) is not None  # readable here at once


async def test_ack_quorum_waits_for_the_apply_on_this_node(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.hold_apply = True
    task = asyncio.create_task(service.append(append()))
    await still_waiting(task)  # committed, not applied here: no 201 yet
    assert node.commit_index > node.applied_index
    node.step()
    result = await task
    assert isinstance(result, AppendResult) and node.applied_index >= result.index


async def test_ack_quorum_on_a_follower_is_proposed_through_raft(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    result = await service.append(append())
    assert isinstance(result, AppendResult)  # not handed to the leader over HTTP
    assert node.state.get_entry("audit", 0) is not None


async def test_ack_quorum_that_does_not_apply_in_time_is_outcome_unknown(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.hold_apply = True
    with pytest.raises(OutcomeUnknown) as info:
        await service.append(append(timeout=SHORT))
    assert info.value.may_have_applied
    node.step()
    assert node.state.get_entry("audit", 0) is not None  # it did commit: "unknown" is right


async def test_ack_leader_answers_accepted_before_commit(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.hold_apply = True
    before = node.applied_index
    result = await service.append(append(ack="leader"))
    assert isinstance(result, Accepted) and result.log == "audit"
    assert result.to_dict()["accepted"] is True
    assert node.applied_index == before  # nothing waited for the apply (no offsets known)
    node.step()
    assert node.state.get_entry("audit", 0) is not None


async def test_ack_leader_is_accepted_even_when_its_fate_is_unknown(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    # 202 says "can be lost if the leader fails": the service does not learn the outcome.
    service, node = on_leader
    node.outcome_unknown = "lost"
    assert isinstance(await service.append(append(ack="leader")), Accepted)
    assert node.state.get_entry("audit", 0) is None


@pytest.mark.parametrize("ack", ["leader", "all"])
async def test_ack_leader_and_all_on_a_follower_are_served_by_the_leader(
    on_follower: tuple[LogService, MemoryNode], ack: str
) -> None:
    service, node = on_follower
    with pytest.raises(ServedByLeader) as info:
        await service.append(append(ack=ack))
    assert info.value.leader_url == LEADER_URL
    node.leader = None
    with pytest.raises(NoLeader) as no_leader:
        await service.append(append(ack=ack))
    assert_definite(no_leader.value)
    assert node.state.log_info("audit") is None


async def test_ack_all_answers_once_every_member_has_it(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    result = await service.append(append(ack="all"))
    assert isinstance(result, AppendResult)
    assert all(m >= result.index for m in node.match_indexes().values())


async def test_ack_all_with_a_member_behind_is_not_fully_replicated_but_committed(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.behind = {"n3"}
    with pytest.raises(NotFullyReplicated) as info:
        await service.append(append(ack="all", timeout=SHORT))
    details = info.value.details
    assert details["committed"] is True and info.value.may_have_applied
    assert (details["log"], details["offset"], details["count"]) == ("audit", 0, 1)
    assert node.state.get_entry("audit", 0) is not None  # committed: retrying would duplicate


async def test_ack_all_stops_waiting_when_leadership_is_lost(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.behind = {"n3"}
    task = asyncio.create_task(service.append(append(ack="all", timeout=10.0)))
    await until(lambda: node.state.log_info("audit") is not None)
    node.elect("n2")
    with pytest.raises(NotFullyReplicated):
        await asyncio.wait_for(task, 2.0)  # long before its own 10 s


async def test_expected_offset_holds_or_nothing_is_written(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    first = await service.append(append(expected_offset=0))
    assert isinstance(first, AppendResult) and first.offset == 0
    with pytest.raises(OffsetMismatch) as info:
        await service.append(append(expected_offset=0))
    assert info.value.details["next_offset"] == 1
    assert_definite(info.value)
    info_after = node.state.log_info("audit")
    assert info_after is not None and info_after.next_offset == 1


# -- write errors: definitely not applied vs outcome unknown ----------------------------------


@pytest.mark.parametrize("ack", ["quorum", "leader", "all"])
async def test_no_leader_known_is_definitely_not_applied(
    on_leader: tuple[LogService, MemoryNode], ack: str
) -> None:
    service, node = on_leader
    node.elect(None)
    with pytest.raises((NoLeader, ServedByLeader)) as info:
        await service.append(append(ack=ack))
    assert isinstance(info.value, NoLeader)
    assert_definite(info.value)
    assert node.state.log_info("audit") is None


@pytest.mark.parametrize("ack", ["quorum", "leader", "all"])
async def test_overloaded_is_definitely_not_applied(
    on_leader: tuple[LogService, MemoryNode], ack: str
) -> None:
    service, node = on_leader
    node.overloaded = True
    with pytest.raises(Overloaded) as info:
        await service.append(append(ack=ack))
    assert info.value.code == "overloaded"
    assert_definite(info.value)
    assert node.state.log_info("audit") is None


async def test_a_leader_without_a_majority_refuses_writes_definitely(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.quorum = False
    with pytest.raises(NoQuorum) as info:
        await service.append(append())
    assert_definite(info.value)
    assert node.state.log_info("audit") is None


@pytest.mark.parametrize("fate", ["lost", "committed"])
async def test_outcome_unknown_may_or_may_not_have_applied(
    on_leader: tuple[LogService, MemoryNode], fate: str
) -> None:
    service, node = on_leader
    node.outcome_unknown = fate  # type: ignore[assignment]
    with pytest.raises(OutcomeUnknown) as info:
        await service.append(append())
    assert info.value.code == "outcome_unknown" and info.value.may_have_applied
    written = node.state.log_info("audit") is not None
    assert written == (fate == "committed")  # both fates answer the same


async def test_insufficient_storage_refuses_before_proposing(
    on_leader: tuple[LogService, MemoryNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, node = on_leader
    monkeypatch.setattr(log_service, "MIN_FREE_BYTES", 1 << 62)
    committed = node.commit_index
    with pytest.raises(InsufficientStorage) as info:
        await service.append(append())
    assert_definite(info.value)
    assert node.commit_index == committed


async def test_a_fail_stopped_node_refuses_and_ends_waiting_writes_unknown(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.hold_apply = True
    task = asyncio.create_task(service.append(append()))
    await still_waiting(task)
    node.fail_stop(RuntimeError("disk gone"))
    with pytest.raises(OutcomeUnknown):
        await task  # it was in the log: it may commit elsewhere
    with pytest.raises(NodeStopped) as info:
        await service.append(append())
    assert_definite(info.value)
    assert not service.live()
    assert service.ready() == (False, "RuntimeError: disk gone")


# -- consistency=quorum -----------------------------------------------------------------------


async def test_quorum_read_reflects_writes_committed_before_it_began(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    # A follower behind the leader: the write is committed, not yet applied here.
    service, node = on_follower
    node.hold_apply = True
    node.commit_elsewhere(entry_cmd(b'"acked"'))
    task = asyncio.create_task(service.get_entry("audit", 0, QUORUM))
    await still_waiting(task)  # never answers 404 from the stale state
    node.step()
    entry = await task
    assert entry.value_json == b'"acked"'


async def test_quorum_reads_share_a_barrier_only_with_reads_that_arrived_before_it(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    node.commit_elsewhere(entry_cmd())
    reads = [asyncio.create_task(service.get_entry("audit", 0, QUORUM)) for _ in range(5)]
    await asyncio.gather(*reads)
    assert barriers(node) == 1
    await service.get_entry("audit", 0, QUORUM)
    assert barriers(node) == 2


async def test_quorum_reads_on_the_leader_write_nothing(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    # ReadIndex: the leader confirms it still leads with a round of appends, and the read
    # waits for the commit index it had when the read arrived. No barrier, no entry.
    service, node = on_leader
    node.commit_elsewhere(entry_cmd(b'"acked"'))
    committed = node.commit_index
    entries = await asyncio.gather(*(service.get_entry("audit", 0, QUORUM) for _ in range(3)))
    assert all(e.value_json == b'"acked"' for e in entries)
    assert node.commit_index == committed and barriers(node) == 0
    assert node.read_indexes == 3


async def test_quorum_read_on_the_leader_waits_for_its_commit_index_to_apply(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.hold_apply = True
    node.commit_elsewhere(entry_cmd(b'"acked"'))  # committed, not yet applied here
    task = asyncio.create_task(service.get_entry("audit", 0, QUORUM))
    await still_waiting(task)  # never answers 404 from the state before the commit
    node.step()
    assert (await task).value_json == b'"acked"'


async def test_quorum_read_on_a_leader_still_becoming_leader_is_no_quorum(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.noop_index = None
    with pytest.raises(NoQuorum, match="becoming leader"):
        await service.get_entry("audit", 0, QUORUM)


async def test_quorum_read_on_a_node_cut_off_from_the_leader_is_no_quorum(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    node.connected = False
    with pytest.raises(NoQuorum):
        await service.get_entry("audit", 0, QUORUM)
    assert barriers(node) == 0  # refused before any round
    node.elect(None)
    with pytest.raises(NoQuorum):
        await service.get_entry("audit", 0, QUORUM)


@pytest.mark.parametrize("where", ["leader", "follower"])
async def test_quorum_read_without_a_majority_is_no_quorum_never_stale(
    tmp_path: Path, where: str
) -> None:
    with _twin(tmp_path, "" if where == "leader" else "n2") as (service, node):
        await service.start()
        node.quorum = False  # leader: NoQuorum; follower: the barrier's outcome is unknown
        with pytest.raises(NoQuorum):
            await service.list_logs(None, 10, QUORUM)


async def test_quorum_read_whose_barrier_does_not_apply_here_in_time_is_not_served(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    # The barrier's outcome is learnt when this node applies it: without that apply in
    # time no round is confirmed. (The barrier answered but applied late here is the
    # stub node's case in test_service_read_rules: ReadTimeout.)
    service, node = on_follower
    node.hold_apply = True
    node.commit_elsewhere(entry_cmd())
    with pytest.raises(NoQuorum, match="no quorum confirmed"):
        await service.get_entry("audit", 0, ReadOptions(timeout=SHORT))


# -- consistency=leader -----------------------------------------------------------------------


async def test_leader_read_on_the_leader_needs_no_quorum_round(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.commit_elsewhere(entry_cmd())
    committed = node.commit_index
    assert (await service.get_entry("audit", 0, LEADER)).offset == 0
    assert node.commit_index == committed and barriers(node) == 0


async def test_leader_read_on_a_follower_is_served_by_the_leader(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    with pytest.raises(ServedByLeader) as info:
        await service.get_entry("audit", 0, LEADER)
    assert info.value.leader_url == LEADER_URL
    node.elect(None)
    with pytest.raises(NoQuorum, match="no leader is known"):
        await service.get_entry("audit", 0, LEADER)


async def test_leader_read_refused_once_the_lease_is_lost(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.lease = False
    with pytest.raises(NoQuorum, match="leader_lease_ms"):
        await service.list_logs(None, 10, LEADER)


async def test_leader_read_waits_for_the_new_leaders_no_op(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    node.hold_apply = True
    node.commit_elsewhere(entry_cmd(b'"old"'))  # committed under the previous leader
    node.elect("n1")  # now leading; its no-op is committed, not applied
    task = asyncio.create_task(service.get_entry("audit", 0, LEADER))
    await still_waiting(task)  # would otherwise miss the earlier write
    node.step()
    assert (await task).value_json == b'"old"'


async def test_leader_read_refused_while_still_becoming_leader_or_no_op_late(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.noop_index = None
    with pytest.raises(NoQuorum, match="becoming leader"):
        await service.list_logs(None, 10, LEADER)
    node.hold_apply = True
    node.elect("n1")
    with pytest.raises(ReadTimeout, match="first entry"):
        await service.list_logs(None, 10, ReadOptions(consistency="leader", timeout=SHORT))


# -- consistency=any --------------------------------------------------------------------------


async def test_any_read_is_local_and_may_be_stale(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    node.hold_apply = True
    node.commit_elsewhere(entry_cmd())
    with pytest.raises(OffsetNotFound):  # committed, not applied here: a stale answer
        await service.get_entry("audit", 0, ANY)
    assert barriers(node) == 0
    node.connected = False  # available on a minority side too
    node.step()
    assert (await service.get_entry("audit", 0, ANY)).offset == 0


async def test_any_read_max_lag(on_follower: tuple[LogService, MemoryNode]) -> None:
    service, node = on_follower
    node.hold_apply = True
    for _ in range(3):
        node.commit_elsewhere(entry_cmd())
    assert node.known_lag() == 3
    with pytest.raises(TooStale, match="3 entries behind") as info:
        await service.list_logs(None, 10, ReadOptions(consistency="any", max_lag=2))
    assert info.value.details == {"lag": 3}
    await service.list_logs(None, 10, ReadOptions(consistency="any", max_lag=3))
    node.lag_known = False  # unknown lag is not refused (max_staleness_ms covers it)
    await service.list_logs(None, 10, ReadOptions(consistency="any", max_lag=0))


async def test_any_read_max_staleness_ms(on_follower: tuple[LogService, MemoryNode]) -> None:
    service, node = on_follower
    node.contact_ms = 50
    await service.list_logs(None, 10, ReadOptions(consistency="any", max_staleness_ms=100))
    node.contact_ms = 500
    with pytest.raises(TooStale, match="500 ms ago") as info:
        await service.list_logs(None, 10, ReadOptions(consistency="any", max_staleness_ms=100))
    assert info.value.details == {"last_contact_ms": 500}
    node.elect(None)  # never heard from a leader in this term
    with pytest.raises(TooStale, match="never"):
        await service.list_logs(None, 10, ReadOptions(consistency="any", max_staleness_ms=100))


# -- min_index (read your writes) ---------------------------------------------------------------


@pytest.mark.parametrize("consistency", ["any", "quorum", "leader"])
async def test_min_index_waits_until_applied_here(tmp_path: Path, consistency: str) -> None:
    leader = "" if consistency == "leader" else "n2"
    with _twin(tmp_path, leader) as (service, node):
        await service.start()
        node.hold_apply = True
        index = node.commit_elsewhere(entry_cmd(b'"mine"'))
        options = ReadOptions(consistency=consistency, min_index=index)  # type: ignore[arg-type]
        if consistency == "leader":
            node.step()  # the leader applied it (its no-op long before)
            assert (await service.get_entry("audit", 0, options)).index == index
            return
        task = asyncio.create_task(service.get_entry("audit", 0, options))
        await still_waiting(task)
        node.step()
        assert (await task).index == index


async def test_min_index_not_applied_in_time_is_a_read_timeout(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    node.hold_apply = True
    index = node.commit_elsewhere(entry_cmd())
    with pytest.raises(ReadTimeout, match=f"min_index {index}") as info:
        await service.get_entry(
            "audit", 0, ReadOptions(consistency="any", min_index=index, timeout=SHORT)
        )
    assert info.value.code == "timeout"


async def test_read_your_writes_with_the_index_a_write_returned(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, _ = on_leader
    written = await service.append(append(b'"me"'))
    assert isinstance(written, AppendResult)
    options = ReadOptions(consistency="any", min_index=written.index)
    assert (await service.get_entry("audit", written.offset, options)).value_json == b'"me"'


# -- what every read answers --------------------------------------------------------------------


async def test_reads_below_the_first_offset_are_trimmed_never_skipped(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    for _ in range(3):
        node.commit_elsewhere(entry_cmd())
    node.commit_elsewhere(Trim("audit", 2))
    with pytest.raises(Trimmed) as single:
        await service.get_entry("audit", 0, ANY)
    assert single.value.details == {"first_offset": 2}
    with pytest.raises(Trimmed):
        await service.read_range("audit", 1, 10, ANY)
    page = await service.read_range("audit", 2, 10, ANY)
    assert [e.offset for e in page.entries] == [2] and page.next_offset == 3
    with pytest.raises(OffsetNotFound) as end:
        await service.get_entry("audit", 3, ANY)
    assert end.value.details == {"next_offset": 3}


async def test_range_long_poll_wakes_on_the_apply(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_follower
    task = asyncio.create_task(service.read_range("audit", 0, 10, ANY, wait_s=5.0))
    await still_waiting(task)
    node.commit_elsewhere(entry_cmd())
    page = await asyncio.wait_for(task, 2.0)
    assert [e.offset for e in page.entries] == [0]


async def test_a_damaged_record_fail_stops_the_node_and_is_not_served(
    on_leader: tuple[LogService, MemoryNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, node = on_leader
    node.commit_elsewhere(entry_cmd())

    def damaged(log: str, offset: int) -> None:
        raise CorruptStorage("record failed its checksum", file="data.mdb")

    monkeypatch.setattr(node.state, "entry_with_info", damaged)  # the one read get_entry makes
    with pytest.raises(NodeStopped) as info:
        await service.get_entry("audit", 0, ANY)
    assert_definite(info.value)
    assert node.failed is not None and "CorruptStorage" in node.failed
    assert not service.live()


# -- the node's facts and its cluster view -------------------------------------------------------


async def test_headers_and_cluster_view_on_the_leader(
    on_leader: tuple[LogService, MemoryNode],
) -> None:
    service, node = on_leader
    node.behind = {"n3"}
    await service.append(append())
    headers = service.headers()
    assert (headers.node_id, headers.leader_id, headers.term) == ("n1", "n1", 1)
    assert headers.applied_index == node.applied_index and headers.last_contact_ms == 0
    assert headers.cluster_id == node.cluster_id
    view = await service.cluster()
    assert view.leader == "n1" and view.commit_index == node.commit_index
    by_id = {n.id: n for n in view.nodes}
    assert by_id["n1"].role == "leader" and by_id["n1"].lag == 0
    assert by_id["n2"].match_index == node.commit_index and by_id["n2"].lag == 0
    assert by_id["n3"].lag == 1 and by_id["n3"].reachable is False


async def test_a_followers_own_cluster_view_marks_the_others_unknown(
    on_follower: tuple[LogService, MemoryNode],
) -> None:
    service, _ = on_follower
    for forwarded in (False, True):  # fetching the leader's view is the API's (api.forward)
        view = await service.cluster(forwarded=forwarded)
        by_id = {n.id: n for n in view.nodes}
        assert view.leader == "n2" and by_id["n1"].role == "follower"
        assert by_id["n2"].role == "leader" and by_id["n3"].role == "unknown"
        assert all(by_id[p].match_index is None and by_id[p].lag is None for p in ("n2", "n3"))
    assert service.is_leader() is False and service.leader_url() == LEADER_URL
    assert service.ready() == (True, "ready")
