"""Batched, unsynced LMDB apply on real RaftNodes (in process, LossyDisk journals).

Nothing is revealed (outcomes, applied index, listeners) before its LMDB batch
commits; LMDB is synced before a snapshot and before the journal is compacted; a restart
in the same boot trusts LMDB, one in another boot rebuilds it from raft.snapshot (or
from empty) and the journal, and ends equal to a replay of the journal's committed
prefix.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.errors import (
    CorruptStorage,
    DefinitelyNotApplied,
    FatalStorageError,
    NodeStopped,
    OutcomeUnknown,
)
from raftlog.raft.dump_format import read_dump_header
from raftlog.raft.journal import DurableJournal
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.state import marker
from raftlog.state.machine import Appended, ApplyResult, StateMachine
from raftlog.state.snapshot import read_snapshot_header
from tests.unit.raft.test_crash_durability import (
    LOG,
    SimCluster,
    check_final,
    configs,
    converge,
    wait_for,
)

pytestmark = pytest.mark.unit

REGULAR = 0  # PySyncObj's command type of a replicated call


@dataclass
class BootSim(SimCluster):
    """SimCluster whose nodes read an injectable boot id; kill -9 and power loss."""

    boots: dict[str, str] = field(default_factory=dict)

    def start(self, nid: str) -> None:
        disk = self.disks.setdefault(nid, LossyDisk())
        node = RaftNode(
            self.configs[nid],
            disk=disk,
            boot_id=lambda: self.boots.get(nid, "boot-1"),
            synchronous_snapshots=True,
        )
        node.start()
        self.nodes[nid] = node

    def kill(self, nid: str) -> None:
        """kill -9: the page cache keeps every write (journal and committed LMDB)."""
        self.nodes.pop(nid).crash()

    def power_loss(self, nid: str) -> None:
        self.kill(nid)
        self.disks[nid].power_loss(self.rng)
        self.boots[nid] = f"boot-after-{time.monotonic_ns()}"


def replay_digest(node: RaftNode, root: Path, upto: int) -> tuple[int, str]:
    """The digest a fresh state reaches from the node's raft.snapshot (if any) and its
    journal's entries up to index ``upto``."""
    sm = StateMachine(root / f"replay-{time.monotonic_ns()}", boot_id=lambda: "replay")
    try:
        dump = node.config.data_dir / "raft.snapshot"
        start = 0
        if dump.exists() and dump.stat().st_size:
            with dump.open("rb") as f:
                _, offset = read_dump_header(f)
            start = sm.restore(dump, offset=offset)[0]
        for command, index, term in node.journal[:]:
            if start < index <= upto and command[0] == REGULAR:
                _method, args = pickle.loads(command[1:])
                sm.apply(index, term, args[0])
        return sm.digest()
    finally:
        sm.close()


def cmd(value: str) -> Append:
    entry = AppendEntry(value_json=json.dumps(value).encode())
    return Append(log=LOG, entries=(entry,), timestamp_ms=int(time.time() * 1000))


async def load(sim: SimCluster, writers: int, per_writer: int, acked: dict[str, int]) -> None:
    """Bounded concurrent appends; after each acknowledgement the answering node's state
    must already hold the entry (read on this thread, not the tick thread)."""

    async def one(wid: int) -> None:
        for seq in range(per_writer):
            node = random.choice(list(sim.nodes.values()))
            value = f"w{wid}-{seq}"
            try:
                result = await node.propose(cmd(value), timeout=5.0)
            except (DefinitelyNotApplied, OutcomeUnknown):
                await asyncio.sleep(0.01)
                continue
            assert isinstance(result, Appended), result
            assert node.state.last_applied()[0] >= result.index, "revealed before commit"
            entry = node.state.get_entry(LOG, result.offset)
            assert entry is not None and json.loads(entry.value_json) == value
            acked[value] = result.offset

    await asyncio.gather(*(one(w) for w in range(writers)))


def watch(node: RaftNode) -> tuple[list[int], list[str]]:
    """Record batch sizes at each commit, and check every listener call sees committed
    state (the listener runs on the tick thread)."""
    sizes: list[int] = []
    problems: list[str] = []
    original = node.state.commit

    def commit() -> tuple[int, int]:
        sizes.append(node.state.batch_size())
        return original()

    node.state.commit = commit  # type: ignore[method-assign]

    def listener(index: int, _result: ApplyResult) -> None:
        if node.state.last_applied()[0] < index or node.applied_index < index:
            problems.append(f"listener saw {index} before its commit")

    node.add_apply_listener(listener)
    return sizes, problems


@pytest.mark.timeout(90)
def test_outcomes_and_listeners_follow_the_batch_commit(tmp_path: Path) -> None:
    sim = BootSim(configs(tmp_path, 3), random.Random(5))

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
        watched = {nid: watch(node) for nid, node in sim.nodes.items()}
        await wait_for(sim.leader, 15, "a leader")
        acked: dict[str, int] = {}
        await load(sim, writers=24, per_writer=15, acked=acked)
        await converge(sim)
        check_final(sim, acked)
        assert len(acked) > 200
        for nid, (sizes, problems) in watched.items():
            assert not problems, problems[:5]
            assert max(sizes) > 1, f"{nid} never applied two entries in one batch"

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(60)
def test_failed_batch_commit_fail_stops_revealing_nothing_of_it(tmp_path: Path) -> None:
    sim = BootSim(configs(tmp_path, 1), random.Random(6))

    async def scenario() -> None:
        sim.start("n1")
        node = sim.nodes["n1"]
        _sizes, problems = watch(node)
        await wait_for(sim.leader, 10, "the node to lead")
        await node.propose(cmd("before"), timeout=5)
        committed = node.state.last_applied()[0]

        def injector(stage: str) -> None:
            raise OSError(errno.EIO, "Input/output error")

        node.state._fault_injector = injector
        outcomes = await asyncio.gather(
            *(node.propose(cmd(f"lost-{i}"), timeout=5) for i in range(8)),
            return_exceptions=True,
        )
        assert all(isinstance(o, OutcomeUnknown | NodeStopped) for o in outcomes), outcomes
        assert node.failed and "FatalStorageError" in node.failed
        assert node.state.last_applied()[0] == committed
        assert node.applied_index <= committed + 1  # at most a no-op past it
        assert not problems
        values = [json.loads(e.value_json) for e in node.state.read_range(LOG, 0, 100)]
        assert values == ["before"]

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(60)
def test_lmdb_is_synced_before_a_snapshot_and_before_compaction(tmp_path: Path) -> None:
    sim = BootSim(configs(tmp_path, 1, snapshot_min_entries=40), random.Random(7))
    events: list[str] = []

    async def scenario() -> None:
        sim.start("n1")
        node = sim.nodes["n1"]
        sync = node.state.sync

        def recorded_sync() -> None:
            events.append("sync")
            sync()

        node.journal.before_compaction = recorded_sync
        replace = sim.disks["n1"].journal.replace

        def recorded_replace(data: bytes) -> None:
            events.append("rewrite")
            replace(data)

        sim.disks["n1"].journal.replace = recorded_replace  # type: ignore[method-assign]
        await wait_for(sim.leader, 10, "the node to lead")
        acked: dict[str, int] = {}
        await load(sim, writers=8, per_writer=20, acked=acked)
        await wait_for(lambda: node.snapshots.stats.taken >= 1, 20, "a snapshot")
        await wait_for(lambda: "rewrite" in events, 20, "a compaction")
        dump = node.config.data_dir / "raft.snapshot"
        with dump.open("rb") as f:
            header, offset = read_dump_header(f)
            f.seek(offset)
            state_header = read_snapshot_header(f)
        # The state inside holds exactly what PySyncObj counted applied.
        assert state_header["last_applied"][0] == header["last"][1]

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()
    rewrites = [i for i, e in enumerate(events) if e == "rewrite"]
    assert rewrites and all(i > 0 and events[i - 1] == "sync" for i in rewrites), events


async def restart_and_check(sim: BootSim, root: Path, acked: dict[str, int]) -> RaftNode:
    sim.start("n1")
    node = sim.nodes["n1"]
    await wait_for(sim.leader, 10, "the node to lead again")
    await converge(sim)
    check_final(sim, acked)
    index, digest = node.state.digest()
    assert replay_digest(node, root, index) == (index, digest)
    return node


@pytest.mark.timeout(60)
def test_same_boot_restart_trusts_lmdb(tmp_path: Path) -> None:
    sim = BootSim(configs(tmp_path, 1), random.Random(8))

    async def scenario() -> None:
        sim.start("n1")
        await wait_for(sim.leader, 10, "the node to lead")
        acked: dict[str, int] = {}
        await load(sim, writers=8, per_writer=15, acked=acked)
        applied = sim.nodes["n1"].state.last_applied()
        sim.kill("n1")
        state_dir = sim.configs["n1"].data_dir / "state"
        assert marker.read(state_dir) == "boot-1"  # killed: still dirty
        node = await restart_and_check(sim, tmp_path, acked)
        assert node.state.discarded is None
        assert node.status().applied_index >= applied[0]

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("with_snapshot", [False, True], ids=["from-empty", "from-snapshot"])
def test_other_boot_rebuilds_from_snapshot_or_empty_and_replays_the_journal(
    tmp_path: Path, with_snapshot: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"snapshot_min_entries": 30} if with_snapshot else {}
    sim = BootSim(configs(tmp_path, 1, **settings), random.Random(9))
    caplog.set_level(logging.WARNING, logger="raftlog.raft.startup")

    async def scenario() -> None:
        sim.start("n1")
        await wait_for(sim.leader, 10, "the node to lead")
        acked: dict[str, int] = {}
        await load(sim, writers=8, per_writer=15, acked=acked)
        if with_snapshot:
            node = sim.nodes["n1"]
            await wait_for(lambda: node.snapshots.stats.taken >= 1, 20, "a snapshot")
            await wait_for(lambda: node.journal[0][1] > 1, 20, "a compaction")
        sim.power_loss("n1")
        node = await restart_and_check(sim, tmp_path, acked)
        assert node.state.discarded is not None
        rebuilt = [r.getMessage() for r in caplog.records if "REBUILDING STATE" in r.getMessage()]
        assert len(rebuilt) == 1
        assert ("raft.snapshot (through index" in rebuilt[0]) == with_snapshot, rebuilt

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(60)
def test_rebuild_refused_when_the_journal_does_not_reach_back(tmp_path: Path) -> None:
    sim = BootSim(configs(tmp_path, 1, snapshot_min_entries=30), random.Random(10))

    async def scenario() -> None:
        sim.start("n1")
        node = sim.nodes["n1"]
        await wait_for(sim.leader, 10, "the node to lead")
        await load(sim, writers=8, per_writer=15, acked={})
        await wait_for(lambda: node.journal[0][1] > 1, 20, "a compaction")
        sim.kill("n1")

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()
    data = sim.configs["n1"].data_dir
    for name in ("raft.snapshot", "raft.snapshot.kept"):
        (data / name).unlink(missing_ok=True)
    sim.boots["n1"] = "boot-2"
    with pytest.raises(CorruptStorage) as info:
        sim.start("n1")
    assert "cannot rebuild the state" in str(info.value)
    assert "journal starts at index" in str(info.value)


def test_compaction_runs_the_hook_first_and_nothing_is_dropped_when_it_fails() -> None:
    disk = LossyDisk()
    journal = DurableJournal(disk.journal, disk.meta)
    for i in range(1, 6):
        journal.add(b"\x00x", i, 1)
    journal.flush()
    calls: list[int] = []

    def fail() -> None:
        calls.append(len(journal))
        raise FatalStorageError("syncing LMDB failed")

    journal.before_compaction = fail
    with pytest.raises(FatalStorageError):
        journal.deleteEntriesTo(3)
    assert calls == [5] and [e[1] for e in journal[:]] == [1, 2, 3, 4, 5]
    journal.before_compaction = lambda: calls.append(-1)
    journal.deleteEntriesTo(3)
    assert calls == [5, -1] and [e[1] for e in journal[:]] == [4, 5]
