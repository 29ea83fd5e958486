"""Compaction when the last applied entries are a new leader's no-op.

No-op and membership entries never reach the state, so right after a leader change the
state's last applied index lags PySyncObj's. A compaction then would have to claim the
no-op; the snapshot writer refuses, and that refusal used to leave PySyncObj's
serializer busy for good: the node never built or shipped a snapshot again. Now the
node skips compaction until a command is applied, and a refused attempt ends FAILED.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.config import SERIALIZER_STATE

from raftlog.commands import Append, AppendEntry
from raftlog.errors import FatalStorageError
from raftlog.raft.node import RaftNode
from raftlog.raft.snapshots import SnapshotWriter
from raftlog.state.machine import StateMachine
from tests.unit.raft.test_crash_durability import configs

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def cmd(value: str) -> Append:
    entry = AppendEntry(value_json=json.dumps(value).encode())
    return Append(log="noop", entries=(entry,), timestamp_ms=int(time.time() * 1000))


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_refused_snapshot_ends_failed_instead_of_busy(tmp_path: Path) -> None:
    state = StateMachine(tmp_path / "state", durability="os", map_size=1 << 26)
    writer = SnapshotWriter(state, tmp_path / "raft.snapshot", lambda _e: None)
    try:
        # PySyncObj counts index 5 applied, the state holds nothing: refused.
        with pytest.raises(FatalStorageError, match="snapshot refused"):
            writer.serialize(str(tmp_path / "raft.snapshot.tmp"), ((b"x", 5, 1), (b"x", 4, 1), []))
        assert not writer.idle()
        assert writer.check() == SERIALIZER_STATE.FAILED  # PySyncObj resets and retries later
        assert writer.check() == SERIALIZER_STATE.NOT_SERIALIZING
        assert writer.idle()
    finally:
        state.close()


def test_compaction_waits_for_a_command_after_the_leaders_noop_then_works(tmp_path: Path) -> None:
    config = configs(tmp_path, 1)["n1"]
    dump = config.data_dir / "raft.snapshot"

    async def first_boot(node: RaftNode) -> None:
        await until(node.is_leader, 15, "the node to lead")
        await node.propose(cmd("first boot"), timeout=5.0)  # the cluster identity too

    async def second_boot(node: RaftNode) -> None:
        # Restarted, the node leads again with a new no-op as its last entry.
        await until(node.is_leader, 15, "the node to lead again")
        await until(lambda: node.leader_noop_index() is not None, 15, "the leader's no-op")
        noop = node.leader_noop_index()
        core = node._core
        assert noop is not None and core is not None
        await until(lambda: core.raftLastApplied >= noop, 15, "the no-op applied")
        assert node.state.last_applied()[0] < noop  # the no-op never reached the state
        assert not node._may_compact()
        node.call_on_tick(core.forceLogCompaction)
        # Ticks pass with compaction forced but skipped: no refused attempt, no dump.
        # (Each tick call runs after that tick's compaction check.)
        loop = asyncio.get_running_loop()
        for _ in range(3):
            ran = asyncio.Event()
            node.call_on_tick(lambda ev=ran: loop.call_soon_threadsafe(ev.set))  # type: ignore[misc]
            await asyncio.wait_for(ran.wait(), 5)
        assert node.snapshots.stats.taken == 0 and node.snapshots.stats.failed == 0
        assert not dump.exists()
        # A command lifts it: the forced compaction now runs and succeeds.
        await node.propose(cmd("after the no-op"), timeout=5.0)
        await until(lambda: node.snapshots.stats.taken >= 1, 15, "a snapshot")
        await until(lambda: dump.exists() and dump.stat().st_size > 0, 15, "the dump")
        # And the serializer still works afterwards.
        for i in range(3):
            await node.propose(cmd(f"more {i}"), timeout=5.0)
        node.call_on_tick(core.forceLogCompaction)
        await until(lambda: node.snapshots.stats.taken >= 2, 15, "a second snapshot")

    for scenario in (first_boot, second_boot):
        node = RaftNode(config)
        node.start()
        try:
            asyncio.run(scenario(node))
        finally:
            node.stop()
