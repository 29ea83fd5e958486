"""A follower whose disk refuses a snapshot from the leader fail-stops (exit 70 path).

First :class:`IncomingDump` alone (the file protocol and each failing step), then three
real RaftNodes on 127.0.0.1: a follower loses its data, the leader has compacted its
log, so the follower needs the leader's snapshot, and writing it fails.
"""

from __future__ import annotations

import asyncio
import errno
import random
import shutil
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from raftlog.commands import Append, AppendEntry
from raftlog.errors import DefinitelyNotApplied, FatalStorageError, NodeStopped, OutcomeUnknown
from raftlog.raft import snapshot_receive, snapshots
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.raft.snapshot_receive import IncomingDump
from raftlog.raft.snapshots import SnapshotWriter
from raftlog.state.machine import StateMachine
from tests.unit.raft.test_crash_durability import SimCluster, configs, wait_for

pytestmark = [pytest.mark.unit, pytest.mark.timeout(90)]

LOG = "snap"


def test_a_received_dump_is_written_then_renamed_over_the_dump(tmp_path: Path) -> None:
    dump = tmp_path / "raft.snapshot"
    dump.write_bytes(b"old")
    fatal: list[BaseException] = []
    incoming = IncomingDump(str(dump), fatal.append)
    assert not incoming.receive((b"ab", True, False))
    assert dump.read_bytes() == b"old"  # nothing replaced before the last chunk
    assert not incoming.receive((b"cd", False, False))
    assert incoming.receive((b"", False, True))
    assert dump.read_bytes() == b"abcd"
    assert not (tmp_path / "raft.snapshot.1.tmp").exists()
    assert not incoming.receive((b"x", False, True))  # no transfer open: ignored
    assert not incoming.receive(None)
    assert fatal == []


class _FailingWrites:
    """A file that refuses every write, as a full disk does."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, _data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self._f.close()


@pytest.mark.parametrize("step", ["opening", "writing", "renaming"])
def test_a_storage_error_writing_a_received_dump_is_a_fail_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    dump = tmp_path / "raft.snapshot"
    dump.write_bytes(b"old")
    if step == "opening":

        def refuse_open(_path: str) -> BinaryIO:
            raise OSError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(snapshot_receive, "_open_for_write", refuse_open)
    elif step == "writing":
        monkeypatch.setattr(snapshot_receive, "_open_for_write", _FailingWrites)
    else:

        def refuse_rename(_source: str, _target: str) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(snapshot_receive, "_replace", refuse_rename)
    fatal: list[BaseException] = []
    incoming = IncomingDump(str(dump), fatal.append)
    with pytest.raises(FatalStorageError, match=f"{step} the snapshot received") as raised:
        incoming.receive((b"ab", True, False))
        incoming.receive((b"", False, True))
    assert fatal == [raised.value]  # the node's fail-stop ran before the raise
    assert dump.read_bytes() == b"old"  # the node's own dump is untouched


def entry(i: int) -> Append:
    return Append(log=LOG, entries=(AppendEntry(value_json=str(i).encode()),), timestamp_ms=1)


async def write(sim: SimCluster, i: int, among: set[str]) -> str:
    """Append entry ``i`` through whichever of ``among`` leads (a leader may change under
    a loaded CI machine); returns that leader. A retried outcome-unknown write may add
    the entry twice, which nothing here counts."""
    deadline = time.monotonic() + 30
    while True:
        leader = next((n for n in among if sim.nodes[n].is_leader()), None)
        if leader is not None:
            try:
                await sim.nodes[leader].propose(entry(i), timeout=5)
                return leader
            except (DefinitelyNotApplied, OutcomeUnknown):
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no leader among {sorted(among)} took entry {i}")
        await asyncio.sleep(0.05)


# The leader's PySyncObj opens raft.snapshot for each transfer and closes it only when
# the transfer completes; the one to the follower that stopped never does, and the file
# object is collected unclosed (PySyncObj's, left alone; a leak of one descriptor).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_follower_that_cannot_write_the_leaders_snapshot_fail_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = SimCluster(configs(tmp_path, 3, snapshot_min_entries=20), random.Random(3))
    fatal: dict[str, list[str]] = {}
    opened: list[str] = []

    async def scenario() -> None:
        for nid in sim.configs:
            sim.start(nid)
        await wait_for(sim.leader, 15, "a leader")
        everyone = set(sim.nodes)
        for i in range(60):
            leader = await write(sim, i, everyone)
        # Every node takes a snapshot after 20 entries: whoever leads has compacted.
        await wait_for(
            lambda: all(n.status().snapshots_taken > 0 for n in sim.nodes.values()),
            30,
            "snapshots on every node",
        )
        victim = next(n for n in sim.nodes if n != leader)
        others = everyone - {victim}
        sim.nodes.pop(victim).stop()
        sim.disks[victim] = LossyDisk()  # the journal and raft.meta lived on the lost disk
        shutil.rmtree(sim.configs[victim].data_dir)
        for i in range(60, 70):
            await write(sim, i, others)

        victim_dir = str(sim.configs[victim].data_dir)
        real_open = snapshot_receive._open_for_write

        def full_disk(path: str) -> BinaryIO:
            if path.startswith(victim_dir):
                opened.append(path)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_open(path)

        monkeypatch.setattr(snapshot_receive, "_open_for_write", full_disk)
        fatal[victim] = []
        node = RaftNode(sim.configs[victim], disk=sim.disks[victim], on_fatal=fatal[victim].append)
        node.start()
        sim.nodes[victim] = node
        await wait_for(lambda: fatal[victim], 30, "the follower's fail-stop")
        assert opened and opened[0].endswith("raft.snapshot.1.tmp")
        assert len(fatal[victim]) == 1
        assert fatal[victim][0].startswith("FatalStorageError: ")  # serve exits 70
        assert "ENOSPC" in fatal[victim][0]
        assert node.failed == fatal[victim][0]
        # It does not keep serving: the tick thread ends, nothing is proposed or ready.
        thread = node._thread
        assert thread is not None
        await wait_for(lambda: not thread.is_alive(), 10, "the tick thread to end")
        with pytest.raises(NodeStopped):
            await node.propose(entry(99), timeout=1)
        assert node.is_ready() == (False, node.failed)
        assert node.status().snapshots_installed == 0
        assert node.state.last_applied()[0] == 0  # nothing of the leader's state
        # The other two carry on.
        await write(sim, 70, others)
        assert all(sim.nodes[n].failed is None for n in others)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop_all()


# -- installing the received dump (snapshots.py) ------------------------------------------


def test_a_storage_error_installing_a_received_dump_is_a_fail_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateMachine(tmp_path / "state")
    fatal: list[BaseException] = []
    writer = SnapshotWriter(state, tmp_path / "raft.snapshot", fatal.append, synchronous=True)
    writer.remove_placeholder()  # no dump of its own: not a start-up load
    received = tmp_path / "raft.snapshot"
    received.write_bytes(b"RLRAFT02 damaged in transit")

    def refuse(_source: object, _target: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    # Refusing the damaged dump means moving it aside: the disk fails that too.
    monkeypatch.setattr(snapshots.os, "replace", refuse)
    try:
        with pytest.raises(FatalStorageError, match="EIO") as raised:
            writer.deserialize(str(received))
        assert fatal == [raised.value]
        assert state.last_applied()[0] == 0
    finally:
        state.close()
