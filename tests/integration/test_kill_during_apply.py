"""kill -9 at random moments while real node processes apply in batched, unsynced LMDB
transactions; after each restart the state equals the journal's committed prefix.

A process crash loses no committed LMDB transaction (the page cache holds it) and at
most the open batch, which the journal (fsynced before anything is applied) replays.
So after every round: each acknowledged append is present exactly once at its offset,
replicas have equal digests, and a single node's state equals a fresh replay of its own
journal up to the index the state has applied.
"""

from __future__ import annotations

import pickle
import random
import shutil
import time
from pathlib import Path

import pytest

from raftlog.raft.journal import DurableJournal
from raftlog.raft.storage import OsAppendFile, OsAtomicFile
from raftlog.state.machine import StateMachine
from tests.support.cluster import ProcessCluster, running_cluster, wait_until
from tests.support.load import Writers, check_log

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REGULAR = 0  # PySyncObj's command type of a replicated call


def journal_replay_digest(data_dir: Path, scratch: Path, upto: int) -> tuple[int, str]:
    """The digest a fresh state reaches by applying the journal's entries through
    ``upto`` (the journal opened on copies, as ``raftlog check-data`` does)."""
    copies = scratch / "journal-copy"
    copies.mkdir(parents=True)
    for name in ("raft.journal", "raft.meta"):
        shutil.copyfile(data_dir / name, copies / name)

    def refuse(exc: BaseException) -> None:
        raise AssertionError(f"the journal copy failed: {exc}")

    journal = DurableJournal(
        OsAppendFile(copies / "raft.journal", durable=False),
        OsAtomicFile(copies / "raft.meta", durable=False),
        on_fatal=refuse,
    )
    with StateMachine(scratch / "replayed") as sm:
        for command, index, term in journal[:]:
            if index <= upto and command[0] == REGULAR:
                _method, args = pickle.loads(command[1:])
                sm.apply(index, term, args[0])
        return sm.digest()


def kill_rounds(
    cluster: ProcessCluster, writers: Writers, rng: random.Random, rounds: int, everyone: bool
) -> None:
    """SIGKILL a random node (the leader every other round; all nodes in the last round
    when ``everyone``) at a random moment while appends are applied, then restart."""
    for round_no in range(rounds):
        acked = len(writers.history.acked)
        wait_until(lambda a=acked: len(writers.history.acked) > a + 20, 30, "appends")
        time.sleep(rng.uniform(0.0, 0.4))  # a random point of the apply stream
        if everyone and round_no == rounds - 1:
            targets = list(cluster.nodes)
        elif round_no % 2 == 0:
            targets = [cluster.wait_for_leader(20)]
        else:
            targets = [rng.choice(list(cluster.nodes))]
        for nid in targets:
            cluster.kill9(nid)
        for nid in targets:
            cluster.start(nid, wait=False)
        for nid in targets:
            wait_until(lambda n=nid: cluster._control_ready(cluster.nodes[n]), 30, f"{nid} up")


def test_single_node_kill9_during_batched_apply(tmp_path: Path) -> None:
    rng = random.Random(1111)
    with running_cluster(tmp_path / "c", size=1) as c:
        c.start_all()
        c.wait_for_leader()
        with Writers(c, "k", count=6, max_ops=2000, max_seconds=40) as writers:
            kill_rounds(c, writers, rng, rounds=5, everyone=False)
            wait_until(lambda: len(writers.history.acked) > 150, 30, "appends after the kills")
            history = writers.stop()
        c.wait_converged(30)
        total = check_log(c, "k", history, ["n1"])
        digest = c.call("n1", op="digest")
        assert total >= len(history.acked) > 150
        assert c.terminate("n1") == 0
    index, value = digest["index"], digest["digest"]
    assert journal_replay_digest(c.nodes["n1"].data_dir, tmp_path / "r", index) == (index, value)


def test_three_nodes_kill9_during_batched_apply(tmp_path: Path) -> None:
    rng = random.Random(2222)
    with running_cluster(tmp_path) as c:
        c.start_all()
        c.wait_for_leader()
        with Writers(c, "k", count=6, max_ops=2000, max_seconds=45) as writers:
            kill_rounds(c, writers, rng, rounds=4, everyone=True)
            wait_until(lambda: len(writers.history.acked) > 150, 30, "appends after the kills")
            history = writers.stop()
        c.wait_converged(60)  # equal digests on every node
        total = check_log(c, "k", history, list(c.nodes))
        assert total >= len(history.acked) > 150
