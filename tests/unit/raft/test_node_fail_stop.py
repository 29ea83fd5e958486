"""RaftNode fail-stops (instead of retrying or recording a result) on node-local failures."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raftlog.commands import Append, AppendEntry, encode
from raftlog.errors import FatalStorageError, NodeStopped, OutcomeUnknown
from raftlog.raft.compat import check_pysyncobj_version
from raftlog.raft.identity import mark_voter
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.state.machine import Appended
from tests.unit.raft.test_crash_durability import configs, wait_for

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def one_entry(value: str) -> Append:
    entry = AppendEntry(value_json=f'"{value}"'.encode())
    return Append(log="l", entries=(entry,), timestamp_ms=int(time.time() * 1000))


def run_single(tmp_path: Path, poison: bytes | None, fault: OSError | None) -> None:
    config = configs(tmp_path, 1)["n1"]
    fatal: list[str] = []
    node = RaftNode(config, disk=LossyDisk(), on_fatal=fatal.append)
    node.start()

    async def scenario() -> None:
        await wait_for(lambda: node.status().role == "leader", 10, "leadership")
        ok = await node.propose(one_entry("before"), timeout=5)
        assert isinstance(ok, Appended)
        applied_before = node.state.last_applied()
        if fault is not None:

            def inject(stage: str) -> None:
                raise fault

            node.state._fault_injector = inject
            bad: bytes = encode(one_entry("after"))
        else:
            assert poison is not None
            bad = poison
        with pytest.raises((OutcomeUnknown, NodeStopped)):
            await node.propose(bad, timeout=3)
        await wait_for(lambda: fatal, 5, "the fail-stop callback")
        assert node.failed is not None
        assert node.state.last_applied() == applied_before  # nothing advanced
        with pytest.raises(NodeStopped):
            await node.propose(one_entry("later"), timeout=1)

    try:
        asyncio.run(scenario())
        assert node._thread is not None
        node._thread.join(5)
        assert not node._thread.is_alive(), "the tick thread kept running after fail-stop"
    finally:
        node.stop()


def test_unknown_command_version_stops_the_node(tmp_path: Path) -> None:
    newer = msgpack.packb({"v": 99, "k": "append", "log": "l"}, use_bin_type=True)
    run_single(tmp_path, newer, None)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_storage_error_stops_the_node(tmp_path: Path, code: int) -> None:
    run_single(tmp_path, None, OSError(code, "injected"))


# -- the Raft journal and raft.meta (DurableJournal over a LossyDisk that fails) ------------


def values(node: RaftNode) -> list[str]:
    return [json.loads(e.value_json) for e in node.state.read_range("l", 0, 1000)]


@pytest.mark.parametrize(
    ("operation", "code", "name"),
    [
        ("append", errno.ENOSPC, "ENOSPC"),  # the disk fills up mid-record
        ("sync", errno.EIO, "EIO"),  # fsync fails: never retried
    ],
)
def test_journal_storage_error_fail_stops_the_node(
    tmp_path: Path, operation: str, code: int, name: str
) -> None:
    config = configs(tmp_path, 1)["n1"]
    disk = LossyDisk()
    fatal: list[str] = []
    node = RaftNode(config, disk=disk, on_fatal=fatal.append)
    node.start()
    calls_before_fault = 0

    async def scenario() -> None:
        nonlocal calls_before_fault
        await wait_for(lambda: node.status().role == "leader", 10, "leadership")
        assert isinstance(await node.propose(one_entry("before"), timeout=5), Appended)
        # The node proposes its cluster id by itself once; let that be done first.
        await wait_for(lambda: node.cluster_id, 10, "the cluster id")
        applied_before = node.state.last_applied()
        calls_before_fault = disk.journal.calls[operation]
        disk.journal.faults[operation] = OSError(code, "injected")
        # Answered by the fail-stop itself, not by the timeout: the entry may be on
        # other nodes (not here: a single node), so the outcome is unknown.
        with pytest.raises(OutcomeUnknown, match="fail-stopped"):
            await node.propose(one_entry("after"), timeout=30)
        assert len(fatal) == 1
        assert f"memory:raft.journal failed: {name}" in fatal[0]
        assert node.failed == fatal[0]
        assert node.state.last_applied() == applied_before  # nothing applied after it
        with pytest.raises(NodeStopped):
            await node.propose(one_entry("later"), timeout=1)

    try:
        asyncio.run(scenario())
        assert node._thread is not None
        node._thread.join(5)
        assert not node._thread.is_alive(), "the tick thread kept running after fail-stop"
        # One failed call, no retry: not on the next tick, not at close.
        assert disk.journal.calls[operation] == calls_before_fault + 1
        assert b"after" not in bytes(disk.journal.durable)
    finally:
        node.stop()

    # The operator repairs the disk and restarts (after a failed fsync, say, the machine
    # reboots: what was not synced is gone). A half-written record is cut at open,
    # nothing acknowledged is lost, and the node takes writes again.
    disk.journal.faults.clear()
    if operation == "sync":
        disk.power_loss()
    disk.journal.reopen()
    again = RaftNode(config, disk=disk, on_fatal=fatal.append)
    again.start()

    async def after_repair() -> None:
        await wait_for(lambda: again.status().role == "leader", 10, "leadership after repair")
        assert isinstance(await again.propose(one_entry("repaired"), timeout=5), Appended)
        assert values(again) == ["before", "repaired"]

    try:
        asyncio.run(after_repair())
        assert again.failed is None and len(fatal) == 1
    finally:
        again.stop()


def test_meta_write_error_fail_stops_before_any_vote_leaves(tmp_path: Path) -> None:
    """n1's raft.meta cannot be written: it may neither ask for nor grant a vote."""
    cfgs = configs(tmp_path, 3)
    sent: list[tuple[str, str]] = []
    disks = {"n1": LossyDisk(), "n2": LossyDisk()}
    disks["n1"].meta.faults["write"] = OSError(errno.EIO, "injected")
    fatal: list[str] = []
    nodes: dict[str, RaftNode] = {}

    def tracer(nid: str) -> Any:
        return lambda _address, message: sent.append((nid, message["type"]))

    for nid, disk in disks.items():
        # Members of an existing cluster (voters), so two of three may elect: the test is
        # about the first vote, not about a new cluster's bootstrap (voting.py).
        cfgs[nid].data_dir.mkdir(parents=True)
        mark_voter(cfgs[nid].data_dir, nid, cfgs[nid].cluster_name)
        nodes[nid] = RaftNode(
            cfgs[nid],
            disk=disk,
            on_fatal=fatal.append if nid == "n1" else None,
            trace_send=tracer(nid),
        )
    try:
        for node in nodes.values():
            node.start()

        async def scenario() -> None:
            # The first election (n1's own, or n2's asking n1) makes n1 persist a term.
            await wait_for(lambda: fatal, 15, "n1's fail-stop")

        asyncio.run(scenario())
        assert "memory:raft.meta failed: EIO" in fatal[0]
        assert len(fatal) == 1
        # Pre-votes (rl_prevote*) record nothing and vouch for nothing durable.
        n1_votes = [
            kind for nid, kind in sent if nid == "n1" and kind in ("request_vote", "response_vote")
        ]
        assert n1_votes == [], f"n1 sent {n1_votes} without a durable term and vote"
        assert disks["n1"].meta.durable is None
        assert disks["n1"].meta.calls["write"] == 1  # not retried
        assert nodes["n1"].status().role != "leader"
    finally:
        for node in nodes.values():
            node.stop()


def test_journal_unreadable_at_start_fail_stops(tmp_path: Path) -> None:
    config = configs(tmp_path, 1)["n1"]
    disk = LossyDisk()
    disk.journal.faults["read_all"] = OSError(errno.EIO, "injected")
    fatal: list[str] = []
    node = RaftNode(config, disk=disk, on_fatal=fatal.append)
    try:
        with pytest.raises(FatalStorageError, match="EIO"):
            node.start()
        assert node.failed is not None and fatal == [node.failed]
    finally:
        node.stop()


def test_wrong_pysyncobj_version_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"pysyncobj==0\.3\.17"):
        check_pysyncobj_version("0.3.14")
