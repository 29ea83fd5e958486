"""A leader's append that would replace applied entries stops the follower (fail-stop).

Three RaftNodes in this process on 127.0.0.1 (real PySyncObj, real transport). The
leader sends one follower, through its real connection, an append that conflicts with
entries the follower has applied: another term at an index it holds, or other bytes
under the same index and term. Committed entries never change, so the follower must
stop before PySyncObj deletes anything (PySyncObj alone would delete them, log CRITICAL
"truncating already-applied log entries" and go on with a diverged state machine).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.errors import InvariantBroken
from raftlog.raft.node import RaftNode
from tests.unit.raft.test_crash_durability import SimCluster, configs, converge, wait_for

pytestmark = pytest.mark.unit

LOG = "conflicts"


async def write(node: RaftNode, n: int) -> None:
    for i in range(n):
        entry = AppendEntry(value_json=json.dumps(f"v{i}").encode())
        cmd = Append(log=LOG, entries=(entry,), timestamp_ms=int(time.time() * 1000))
        await node.propose(cmd, timeout=5.0)


def send_crafted(leader: RaftNode, follower_address: str, make: Any) -> None:
    """On the leader's tick thread: send ``make(core)`` to the follower as an append."""
    core = leader._core
    assert core is not None

    def send() -> None:
        target = next(n for n in core._SyncObj__otherNodes if n.address == follower_address)
        core._SyncObj__transport.send(target, make(core))

    leader.call_on_tick(send)
    core.wake()


def conflicting_term(index: int) -> Any:
    def make(core: Any) -> dict[str, Any]:
        log = core._SyncObj__raftLog
        first = log[0][1]
        prev = log[index - 1 - first]
        ours = log[index - first]
        return {
            "type": "append_entries",
            "term": core.raftCurrentTerm,
            "commit_index": core.raftCommitIndex,
            "prevLogIdx": prev[1],
            "prevLogTerm": prev[2],
            "entries": [(bytes(ours[0]), index, ours[2] + 1)],
        }

    return make


def other_bytes(index: int) -> Any:
    def make(core: Any) -> dict[str, Any]:
        log = core._SyncObj__raftLog
        first = log[0][1]
        prev = log[index - 1 - first]
        ours = log[index - first]
        return {
            "type": "append_entries",
            "term": core.raftCurrentTerm,
            "commit_index": core.raftCommitIndex,
            "prevLogIdx": prev[1],
            "prevLogTerm": prev[2],
            "entries": [(bytes(ours[0]) + b" ", index, ours[2])],
        }

    return make


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["another term", "other bytes"])
def test_append_replacing_applied_entries_fail_stops_the_follower(
    tmp_path: Path, kind: str
) -> None:
    sim = SimCluster(configs(tmp_path, 3), random.Random(7))
    fatal: list[BaseException] = []

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
        leader_id = await wait_for(sim.leader, 15, "first leader")
        leader = sim.nodes[leader_id]
        await write(leader, 30)
        await converge(sim)
        follower_id = next(nid for nid in sim.nodes if nid != leader_id)
        follower = sim.nodes[follower_id]
        follower._on_fatal = lambda why: fatal.append(InvariantBroken(why))
        applied = follower.applied_index
        target = applied - 5
        before = list(follower.journal[:])
        digest_before = follower.state.digest()
        make = conflicting_term(target) if kind == "another term" else other_bytes(target)
        send_crafted(leader, sim.configs[follower_id].self_node.raft, make)
        await wait_for(lambda: follower.failed, 10, "the follower's fail-stop")
        assert follower.failed is not None
        assert "InvariantBroken" in follower.failed, follower.failed
        assert f"index {target}" in follower.failed, follower.failed
        assert fatal, "on_fatal was not called (raftlog serve would not exit 70)"
        # Nothing was deleted or replaced: the journal and the state are as they were.
        assert list(follower.journal[: len(before)]) == before
        assert follower.state.digest() == digest_before
        # The other two carry on.
        await write(leader, 3)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(90)
def test_identical_resend_is_skipped_without_alarm(tmp_path: Path) -> None:
    """The same append, sent again, changes nothing and counts as skipped entries."""
    sim = SimCluster(configs(tmp_path, 3), random.Random(8))

    def resend(index: int) -> Any:
        def make(core: Any) -> dict[str, Any]:
            log = core._SyncObj__raftLog
            first = log[0][1]
            prev = log[index - 1 - first]
            return {
                "type": "append_entries",
                "term": core.raftCurrentTerm,
                "commit_index": core.raftCommitIndex,
                "prevLogIdx": prev[1],
                "prevLogTerm": prev[2],
                "entries": [tuple(e) for e in log[index - first : index - first + 4]],
            }

        return make

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
        leader_id = await wait_for(sim.leader, 15, "first leader")
        leader = sim.nodes[leader_id]
        await write(leader, 20)
        await converge(sim)
        follower_id = next(nid for nid in sim.nodes if nid != leader_id)
        follower = sim.nodes[follower_id]
        core = follower._core
        assert core is not None
        skipped = core.rl_entries_skipped
        before = list(follower.journal[:])
        send_crafted(leader, sim.configs[follower_id].self_node.raft, resend(10))
        await wait_for(lambda: core.rl_entries_skipped >= skipped + 4, 10, "the resend")
        assert follower.failed is None
        # Read the log on the follower's tick thread, between messages (while one is
        # handled the tail after it is briefly set aside).
        seen: list[list[Any]] = []
        follower.call_on_tick(lambda: seen.append(list(follower.journal[:])))
        core.wake()
        await wait_for(lambda: seen, 10, "a tick of the follower")
        assert seen[0][: len(before)] == before  # nothing deleted or replaced
        await write(leader, 3)
        await converge(sim)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()
