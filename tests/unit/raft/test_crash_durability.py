"""Simulated power loss through the real PySyncObj send path.

Three RaftNodes run in this process on 127.0.0.1, each on a LossyDisk (journal and
Raft meta). A crash drops every unsynced journal write (keeping a random torn tail)
and rolls LMDB back to an older consistent copy, which is more than a real power
loss can take from LMDB (it syncs every commit). Afterwards: every acknowledged
append is present exactly once at its acknowledged offset on every node, replicas
are identical, no node granted two votes in one term, and every vote and append
response left after the fsync that covered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.config import Config, config_from_mapping
from raftlog.errors import DefinitelyNotApplied, OutcomeUnknown
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.raft.roles import LEADER
from raftlog.state.machine import Appended, StateMachine
from tests.support.cluster import FAST_TIMING, free_port

pytestmark = pytest.mark.unit

LOG = "acks"


def configs(root: Path, size: int, **settings: Any) -> dict[str, Config]:
    nodes = [
        {"id": f"n{i}", "raft": f"127.0.0.1:{free_port()}", "http": f"127.0.0.1:{free_port()}"}
        for i in range(1, size + 1)
    ]
    raw = {"cluster": {"name": "sim", "nodes": nodes}, "node": {**FAST_TIMING, **settings}}
    return {
        n["id"]: config_from_mapping(raw, node_id=n["id"], data_dir=root / n["id"]) for n in nodes
    }


@dataclass
class SimCluster:
    configs: dict[str, Config]
    rng: random.Random
    disks: dict[str, LossyDisk] = field(default_factory=dict)
    nodes: dict[str, RaftNode] = field(default_factory=dict)
    old_states: dict[str, Path] = field(default_factory=dict)
    # (sender, type, term, destination, journal version, synced version, the message's
    # commit_index or -1, the sender's durable index when it sent it)
    trace: list[tuple[str, str, int, str, int, int, int, int]] = field(default_factory=list)

    def start(self, nid: str) -> None:
        disk = self.disks.setdefault(nid, LossyDisk())
        holder: list[RaftNode] = []

        def on_send(address: str, message: dict[str, Any]) -> None:
            j = holder[0].journal
            self.trace.append(
                (
                    nid,
                    message["type"],
                    message.get("term", -1),
                    address,
                    j.version,
                    j.synced_version,
                    int(message.get("commit_index", -1)),
                    j.durable_index,
                )
            )

        node = RaftNode(self.configs[nid], disk=disk, trace_send=on_send)
        holder.append(node)
        node.start()
        self.nodes[nid] = node

    def crash(self, nid: str) -> None:
        node = self.nodes.pop(nid)
        node.crash()
        self.disks[nid].power_loss(self.rng)
        old = self.old_states.get(nid)
        state_dir = self.configs[nid].data_dir / "state"
        shutil.rmtree(state_dir)
        if old is not None:  # roll LMDB back to an older consistent copy
            sm = StateMachine(state_dir)
            sm.restore(old)
            sm.close()

    def keep_old_state(self, nid: str) -> None:
        node = self.nodes.get(nid)
        if node is None or node.failed:
            return
        path = self.configs[nid].data_dir.parent / f"{nid}-old.snap"
        with contextlib.suppress(Exception):
            node.state.snapshot(path)
            self.old_states[nid] = path

    def leader(self) -> str | None:
        for nid, node in self.nodes.items():
            if node.status().role == "leader":
                return nid
        return None

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.nodes.clear()


async def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def writer(sim: SimCluster, wid: int, acked: dict[str, int], stop: asyncio.Event) -> None:
    for seq in range(400):  # bounded in count; the stop event bounds it in time
        if stop.is_set():
            return
        nodes = list(sim.nodes.values())
        if not nodes:
            await asyncio.sleep(0.02)
            continue
        node = random.choice(nodes)
        value = f"w{wid}-{seq}"
        entry = AppendEntry(value_json=json.dumps(value).encode())
        cmd = Append(log=LOG, entries=(entry,), timestamp_ms=int(time.time() * 1000))
        try:
            result = await node.propose(cmd, timeout=2.0)
        except (DefinitelyNotApplied, OutcomeUnknown):
            await asyncio.sleep(0.01)
            continue
        assert isinstance(result, Appended), result
        acked[value] = result.offset


async def converge(sim: SimCluster) -> str:
    leader = await wait_for(sim.leader, 15, "a leader")
    index = await sim.nodes[leader].barrier(timeout=10)
    for node in sim.nodes.values():
        assert await node.wait_applied(index, timeout=15), node.status()
    digests = {nid: n.state.digest() for nid, n in sim.nodes.items()}
    return str(leader), digests  # type: ignore[return-value]


def check_final(sim: SimCluster, acked: dict[str, int]) -> None:
    for nid, node in sim.nodes.items():
        entries = node.state.read_range(LOG, 0, 1_000_000)
        values = [json.loads(e.value_json) for e in entries]
        assert len(values) == len(set(values)), f"{nid} holds duplicates"
        assert [e.offset for e in entries] == list(range(len(entries)))
        for value, offset in acked.items():
            assert offset < len(values) and values[offset] == value, (
                f"{nid}: acknowledged {value!r} at offset {offset} is missing or moved"
            )


def check_trace(sim: SimCluster) -> None:
    votes: dict[tuple[str, int], set[str]] = {}
    responses = 0
    shipped_before_fsync = 0
    for sender, kind, term, dest, version, synced, commit, durable in sim.trace:
        if kind in ("response_vote", "next_node_idx", "request_vote"):
            assert version == synced, f"{sender} sent {kind} before an fsync covered it"
        if kind == "append_entries":
            # A leader ships entries before its own fsync, but counts its copy toward a
            # commit only once durable: what it announces as committed it holds synced.
            shipped_before_fsync += version != synced
            assert commit <= durable, (
                f"{sender} announced commit index {commit} holding only {durable} synced"
            )
        if kind == "response_vote":
            votes.setdefault((sender, term), set()).add(dest)
        responses += kind == "next_node_idx"
    double = {k: v for k, v in votes.items() if len(v) > 1}
    assert not double, f"votes granted twice in one term: {double}"
    assert votes and responses, "the trace saw no votes or append responses"
    assert shipped_before_fsync, "no leader shipped entries before its fsync"


@pytest.mark.timeout(120)
def test_power_loss_of_leaders_and_then_all_nodes_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    sim = SimCluster(configs(tmp_path, 3), random.Random(1234))

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
        await wait_for(sim.leader, 15, "first leader")
        acked: dict[str, int] = {}
        stop = asyncio.Event()
        writers = [asyncio.create_task(writer(sim, w, acked, stop)) for w in range(4)]
        try:
            for round_no in range(3):  # crash the leader three times, with power loss
                target = 30 * (round_no + 1)
                await wait_for(lambda: len(acked) > target, 20, "acks")  # noqa: B023
                for nid in list(sim.nodes):
                    sim.keep_old_state(nid)
                await asyncio.sleep(0.2)
                leader = await wait_for(sim.leader, 15, "a leader")
                sim.crash(leader)
                await asyncio.sleep(0.3)
                sim.start(leader)
            await wait_for(lambda: len(acked) > 150, 20, "more acks")
        finally:
            stop.set()
            await asyncio.gather(*writers)
        for nid in list(sim.nodes):  # then all nodes at once
            sim.crash(nid)
        for nid in sim.configs:
            sim.start(nid)
        _, digests = await converge(sim)
        assert len(set(digests.values())) == 1, digests
        check_final(sim, acked)
        check_trace(sim)
        fsyncs = sum(n.journal.stats.fsyncs for n in sim.nodes.values())
        print(f"acked={len(acked)} final digests={digests} fsyncs since restart={fsyncs}")

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


@pytest.mark.timeout(60)
def test_single_node_fsyncs_before_counting_an_entry_committed(tmp_path: Path) -> None:
    sim = SimCluster(configs(tmp_path, 1), random.Random(7))

    async def scenario() -> None:
        sim.start("n1")
        await wait_for(sim.leader, 10, "the single node to lead")
        acked: dict[str, int] = {}
        stop = asyncio.Event()
        task = asyncio.create_task(writer(sim, 0, acked, stop))
        await wait_for(lambda: len(acked) >= 50, 20, "acks")
        stop.set()
        await task
        sim.crash("n1")  # power loss right after the last acknowledgement
        sim.start("n1")
        await wait_for(sim.leader, 10, "the node to lead again")
        await converge(sim)
        check_final(sim, acked)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


class _Criticals(logging.Handler):
    """Counts PySyncObj's "truncating already-applied log entries" messages."""

    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "truncating already-applied" in record.getMessage():
            self.count += 1


@pytest.mark.timeout(120)
def test_resent_append_entries_never_truncate_a_followers_file(tmp_path: Path) -> None:
    """A leader that resends entries a follower already holds (here forced by moving its
    nextIndex back, with small batches so the resend is shorter than the follower's log)
    would make PySyncObj delete them and add them again, logging CRITICAL "truncating
    already-applied log entries" each time. RaftCore skips the entries the follower
    holds: no such line, no truncation of the file ever drops an entry the node has
    applied, and the follower's log never falls below its applied index."""
    sim = SimCluster(configs(tmp_path, 3), random.Random(99))
    cut: list[tuple[str, int, int]] = []  # (node, first index dropped, applied index)
    criticals = _Criticals()
    logging.getLogger("pysyncobj").addHandler(criticals)

    def watch_truncations(nid: str) -> None:
        disk = sim.disks[nid]
        original = disk.journal.truncate

        def truncate(size: int) -> None:
            content = disk.journal.content
            if size + 16 <= len(content):  # the index of the first record dropped
                (index,) = struct.unpack_from(">Q", content, size + 8)
                cut.append((nid, index, sim.nodes[nid].applied_index))
            original(size)

        disk.journal.truncate = truncate  # type: ignore[method-assign]

    def resend_from_behind(core: Any) -> None:
        if core.rl_state() != LEADER:
            return
        core._SyncObj__conf.appendEntriesBatchSizeBytes = 2048
        next_index = core._SyncObj__raftNextIndex
        first = core._SyncObj__raftLog[0][1]
        for node in list(next_index):
            next_index[node] = max(first + 1, next_index[node] - 120)
        core.rl_send_append_entries()

    shrunk: list[tuple[str, int, int]] = []  # (node, last log index, applied index)

    def watch_log_length(nid: str) -> None:
        # Raft: a follower's log never loses an entry it applied (those are committed);
        # PySyncObj alone drops everything after a resent batch until the next message.
        core = sim.nodes[nid]._core
        assert core is not None

        def check() -> None:
            log = core._SyncObj__raftLog
            if len(log) and log[-1][1] < core.raftLastApplied:
                shrunk.append((nid, log[-1][1], core.raftLastApplied))

        core.addOnTickCallback(check)

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
            watch_truncations(nid)
            watch_log_length(nid)
        await wait_for(sim.leader, 15, "first leader")
        acked: dict[str, int] = {}
        stop = asyncio.Event()
        writers = [asyncio.create_task(writer(sim, w, acked, stop)) for w in range(2)]
        try:
            await wait_for(lambda: len(acked) > 150, 30, "acks")
            for _ in range(15):
                leader = await wait_for(sim.leader, 15, "a leader")
                node = sim.nodes[leader]
                node.call_on_tick(lambda core=node._core: resend_from_behind(core))
                await asyncio.sleep(0.15)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        await converge(sim)
        check_final(sim, acked)
        skipped = sum(n._core.rl_entries_skipped for n in sim.nodes.values() if n._core)
        print(f"acked={len(acked)} criticals={criticals.count} cuts={cut} skipped={skipped}")
        assert skipped > 100, "the leader never resent entries the followers held"
        assert criticals.count == 0, "identical re-appends logged as a divergence"
        assert all(index > applied for _, index, applied in cut), cut
        assert not shrunk, f"logs shorter than their applied index: {shrunk[:10]}"

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("pysyncobj").removeHandler(criticals)
        sim.stop_all()
