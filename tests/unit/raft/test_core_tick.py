"""The tick loop: RaftCore's tick, the node's on-tick hook, and fail-stop from the tick.

Single real RaftNodes on 127.0.0.1 (free ports, temp dirs), except where a fake core
is enough. Every wait is on a condition with a deadline (``wait_for``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pysyncobj.syncobj as syncobj_module
import pytest
from pysyncobj import SyncObj

from raftlog.commands import Append, AppendEntry
from raftlog.errors import FatalStorageError, NodeStopped
from raftlog.raft import node as node_module
from raftlog.raft import roles
from raftlog.raft.core import RaftCore
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.raft.status import role_name
from raftlog.state.machine import Appended
from tests.unit.raft.test_crash_durability import configs, wait_for

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def entry(value: str) -> Append:
    return Append(
        log="l",
        entries=(AppendEntry(value_json=f'"{value}"'.encode()),),
        timestamp_ms=int(time.time() * 1000),
    )


def test_role_constants_are_pysyncobjs_numbers() -> None:
    states = syncobj_module._RAFT_STATE
    assert (roles.FOLLOWER, roles.CANDIDATE, roles.LEADER) == (
        states.FOLLOWER,
        states.CANDIDATE,
        states.LEADER,
    )
    assert [role_name(r) for r in (0, 1, 2, 7)] == ["follower", "candidate", "leader", "unknown"]


def test_our_checks_run_before_pysyncobjs_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(RaftCore, "_rl_before_tick", lambda _self: order.append("ours"))
    monkeypatch.setattr(SyncObj, "_onTick", lambda _self, wait: order.append(f"pysyncobj {wait}"))
    core = RaftCore.__new__(RaftCore)  # no sockets: only the dispatch is under test
    core._onTick(0.25)
    assert order == ["ours", "pysyncobj 0.25"]


def start_single(tmp_path: Path, **kw: Any) -> tuple[RaftNode, list[str]]:
    fatal: list[str] = []
    node = RaftNode(configs(tmp_path, 1)["n1"], disk=LossyDisk(), on_fatal=fatal.append, **kw)
    return node, fatal


def test_tick_calls_run_on_the_tick_thread_in_order(tmp_path: Path) -> None:
    node, fatal = start_single(tmp_path)
    node.start()
    ran: list[tuple[int, str]] = []
    done = threading.Event()

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        for i in range(5):
            node.call_on_tick(lambda i=i: ran.append((i, threading.current_thread().name)))
        node.call_on_tick(done.set)
        await wait_for(done.is_set, 5, "the tick calls")

    try:
        asyncio.run(scenario())
        assert ran == [(i, "raft-n1") for i in range(5)]
        assert fatal == []
    finally:
        node.stop()


def test_each_tick_counts_the_no_op_applied_and_creates_the_cluster_id(tmp_path: Path) -> None:
    node, _fatal = start_single(tmp_path)
    node.start()

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        # No proposal from us: the leader's no-op and the SetClusterMeta the tick
        # proposes never pass through a caller, yet both end up applied.
        noop = await wait_for(node.leader_noop_index, 5, "the no-op index")
        cluster_id = await wait_for(lambda: node.cluster_id, 5, "the cluster id")
        assert node.state.cluster_meta().cluster_id == cluster_id
        await wait_for(lambda: node.applied_index > noop, 5, "the cluster id entry applied")
        assert await node.wait_applied(noop, timeout=1)

    try:
        asyncio.run(scenario())
    finally:
        node.stop()


def test_a_journal_past_its_size_bound_forces_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, fatal = start_single(tmp_path, synchronous_snapshots=True)
    node.start()

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        assert isinstance(await node.propose(entry("a"), timeout=5), Appended)
        assert node.status().snapshots_taken == 0  # snapshot_min_entries is far away
        monkeypatch.setattr(node_module, "MAX_JOURNAL_BYTES", 0)
        node.call_on_tick(lambda: None)  # wake the tick thread
        await wait_for(lambda: node.status().snapshots_taken > 0, 10, "a forced snapshot")

    try:
        asyncio.run(scenario())
        assert fatal == []
    finally:
        node.stop()


def test_a_leader_that_loses_check_quorum_steps_down_in_its_tick(tmp_path: Path) -> None:
    node, _fatal = start_single(tmp_path)
    changes: list[tuple[int, int]] = []
    on_state_changed = node._on_state_changed

    def record(old: int, new: int) -> None:
        changes.append((old, new))
        on_state_changed(old, new)

    node._on_state_changed = record  # type: ignore[method-assign]
    node.start()

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        assert (roles.CANDIDATE, roles.LEADER) in changes
        node.guard.check_quorum_ok = lambda _now: False  # type: ignore[method-assign]
        node.call_on_tick(lambda: None)
        await wait_for(lambda: (roles.LEADER, roles.FOLLOWER) in changes, 5, "the step-down")

    try:
        asyncio.run(scenario())
    finally:
        node.stop()


def test_a_storage_error_raised_in_a_tick_fail_stops_the_node(tmp_path: Path) -> None:
    node, fatal = start_single(tmp_path)
    node.start()

    def broken_disk() -> None:
        raise FatalStorageError("injected: the disk went away")

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        node.call_on_tick(broken_disk)
        await wait_for(lambda: fatal, 5, "the fail-stop")
        assert fatal == ["FatalStorageError: injected: the disk went away"]
        assert node.failed == fatal[0]
        assert not node.is_leader()
        with pytest.raises(NodeStopped):
            await node.propose(entry("late"), timeout=1)

    try:
        asyncio.run(scenario())
        thread = node._thread
        assert thread is not None
        thread.join(5)
        assert not thread.is_alive(), "the tick thread kept running after the fail-stop"
    finally:
        node.stop()


def test_any_other_error_in_a_tick_is_logged_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node, fatal = start_single(tmp_path)
    node.start()
    later = threading.Event()

    def bug() -> None:
        raise RuntimeError("a bug in a tick call")

    async def scenario() -> None:
        await wait_for(node.is_leader, 10, "leadership")
        node.call_on_tick(bug)
        await wait_for(
            lambda: any("raft tick failed" in r.getMessage() for r in caplog.records),
            5,
            "the logged tick failure",
        )
        node.call_on_tick(later.set)
        await wait_for(later.is_set, 5, "a later tick call")
        assert isinstance(await node.propose(entry("after"), timeout=5), Appended)

    try:
        with caplog.at_level("ERROR", logger="raftlog.raft.node"):
            asyncio.run(scenario())
        assert fatal == [] and node.failed is None
    finally:
        node.stop()
