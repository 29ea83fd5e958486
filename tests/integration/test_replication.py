"""Three real node processes on 127.0.0.1: replication, failover, recovery, identity."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

import pytest

from tests.support.cluster import ProcessCluster, running_cluster, wait_until
from tests.support.load import Writers, check_log

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def append(cluster: ProcessCluster, nid: str, log: str, values: list[object]) -> dict[str, object]:
    reply = cluster.call(nid, op="append", log=log, values=values, timeout=10)
    assert reply["ok"], reply
    return reply


def test_appends_through_any_node_replicate_to_all(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        c.start_all()
        c.wait_for_leader()
        for i in range(60):
            append(c, f"n{i % 3 + 1}", "orders", [{"i": i}])
        append(c, "n2", "orders", [{"batch": j} for j in range(50)])  # one atomic batch
        c.wait_converged()
        logs = [c.read_all(nid, "orders") for nid in c.nodes]
        assert len(logs[0]) == 110
        assert logs[0] == logs[1] == logs[2]
        assert [e["offset"] for e in logs[0]] == list(range(110))
        batch = logs[0][60:]
        assert len({(e["index"], e["timestamp"]) for e in batch}) == 1  # one Raft entry


def test_entries_straddling_64k_multiples_replicate_intact(tmp_path: Path) -> None:
    # PySyncObj chunks entries >= appendEntriesBatchSizeBytes and mis-computes the last
    # chunk near 64 KiB multiples. Sizes here straddle those boundaries (JSON adds 2).
    sizes = [k * 65536 + d for k in (1, 2, 3) for d in (-300, -40, -3, -2, -1, 0, 1, 2, 40, 300)]
    with running_cluster(tmp_path) as c:
        c.start_all()
        leader = c.wait_for_leader()
        follower = next(n for n in c.nodes if n != leader)
        for i, size in enumerate(sizes):
            append(c, follower if i % 2 else leader, "big", ["x" * size])
        append(c, leader, "big", ["y" * 65534, "z" * 65535, "w" * 131070])  # one batch
        c.wait_converged()
        for nid in c.nodes:
            values = [e["value"] for e in c.read_all(nid, "big")]
            assert [len(v) for v in values] == [*sizes, 65534, 65535, 131070], nid
            assert all(set(v) <= {"x", "y", "z", "w"} for v in values)


def test_leader_kill9_under_load_loses_nothing_and_elects_quickly(tmp_path: Path) -> None:
    election_times: list[float] = []
    with running_cluster(tmp_path) as c:
        c.start_all()
        c.wait_for_leader()
        with Writers(c, "events", count=4, max_seconds=120) as writers:
            for _ in range(5):
                before = len(writers.history.acked)
                wait_until(lambda b=before: len(writers.history.acked) > b + 50, 30, "progress")
                leader = c.wait_for_leader()
                killed_at = time.monotonic()
                c.kill9(leader)
                survivors = c.running_ids()
                new_leader = c.wait_for_leader(20, survivors)
                election_times.append(time.monotonic() - killed_at)
                assert new_leader != leader
                c.start(leader)
            history = writers.stop()
        digest = c.wait_converged(60)
        total = check_log(c, "events", history, list(c.nodes))
        fsyncs = {nid: c.status(nid)["journal_fsyncs"] for nid in c.nodes}
    print(
        f"\nelection after leader kill -9 (s): min {min(election_times):.2f} "
        f"median {statistics.median(election_times):.2f} max {max(election_times):.2f} "
        f"over {len(election_times)} runs; acked {len(history.acked)}, unknown "
        f"{len(history.unknown)}, final log {total}; fsyncs {fsyncs}; digest {digest[:12]}"
    )
    assert len(history.acked) > 250
    assert max(election_times) < 10


def test_restarted_follower_catches_up(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        c.start_all()
        leader = c.wait_for_leader()
        follower = next(n for n in c.nodes if n != leader)
        c.kill9(follower)
        for i in range(100):
            append(c, leader, "catchup", [{"i": i, "pad": "p" * 200} for _ in range(20)])
        target = c.status(leader)["commit_index"]
        started = time.monotonic()
        c.start(follower)
        reply = c.call(follower, op="wait_applied", index=target, timeout=60)
        elapsed = time.monotonic() - started
        assert reply["ok"], reply
        c.wait_converged()
        assert len(c.read_all(follower, "catchup")) == 2000
    print(
        f"\nrestarted follower applied {target} Raft entries (2000 log entries) in "
        f"{elapsed:.2f} s including process start: {2000 / elapsed:.0f} log entries/s"
    )


def test_wiped_follower_catches_up_by_snapshot(tmp_path: Path) -> None:
    with running_cluster(tmp_path, settings={"snapshot_min_entries": 50}) as c:
        c.start_all()
        leader = c.wait_for_leader()
        for i in range(200):
            append(c, leader, "snap", [{"i": i}])
        wait_until(lambda: c.status(leader)["snapshots_taken"] > 0, 30, "a leader snapshot")
        follower = next(n for n in c.nodes if n != leader)
        c.kill9(follower)
        shutil.rmtree(c.nodes[follower].data_dir)
        for i in range(200, 260):
            append(c, leader, "snap", [{"i": i}])
        c.start(follower)
        digest = c.wait_converged(60)
        assert c.status(follower)["snapshots_installed"] >= 1
        values = [e["value"]["i"] for e in c.read_all(follower, "snap")]
        assert values == list(range(260))
        assert digest


def test_kill9_all_nodes_then_restart_keeps_every_ack_exactly_once(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        c.start_all()
        c.wait_for_leader()
        with Writers(c, "all", count=4, max_seconds=60) as writers:
            wait_until(lambda: len(writers.history.acked) > 200, 30, "acks")
            for nid in list(c.nodes):  # as close to simultaneous as signals get
                c.kill9(nid)
            history = writers.stop()
        c.start_all()
        c.wait_converged(60)
        total = check_log(c, "all", history, list(c.nodes))
        assert total >= len(history.acked)


def test_node_with_another_clusters_data_dir_is_refused(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "b") as b:
        b.start_all()
        leader_b = b.wait_for_leader()
        append(b, leader_b, "b-only", ["from cluster b"])
        b.wait_converged()
        b_cid = b.status("n3")["cluster_id"]
        b_digest = b.call("n3", op="digest")
        b.stop_all()
    with running_cluster(tmp_path / "a") as a:
        a.start_all()
        leader_a = a.wait_for_leader()
        append(a, leader_a, "a-only", ["from cluster a"])
        a.wait_converged()
        a_cid = a.status("n1")["cluster_id"]
        assert a_cid and b_cid and a_cid != b_cid
        # n3 of cluster A restarts on the data dir of cluster B's n3 (same name, same id).
        a.kill9("n3")
        a.start("n3", data_dir=b.nodes["n3"].data_dir)
        leader_a = a.wait_for_leader(among=["n1", "n2"])

        def refused_both_ways() -> bool:
            # Each side records a refusal when a message of the other reaches it; which
            # of cluster A's nodes hears from n3 first depends on who dials and when.
            ours = [
                p["refused_cluster"]
                for nid in ("n1", "n2")
                for p in a.status(nid)["peers"]
                if p["id"] == "n3"
            ]
            theirs = [p["refused_cluster"] for p in a.status("n3")["peers"]]
            return b_cid in ours and a_cid in theirs

        wait_until(refused_both_ways, 20, "both sides to refuse each other")
        assert a.call("n3", op="digest") == b_digest  # it took nothing from cluster A
        assert a.status("n3")["cluster_id"] == b_cid
        append(a, leader_a, "a-only", ["still writable with two nodes"])
        # A data dir of a cluster with another name does not even start.
        a.kill9("n3")
        node_json = b.nodes["n3"].data_dir / "node.json"
        node_json.write_text(json.dumps({**json.loads(node_json.read_text()), "cluster_name": "b"}))
        proc = a.start("n3", data_dir=b.nodes["n3"].data_dir, wait=False).proc
        assert proc is not None and proc.wait(30) == 78
        assert "belongs to cluster 'b'" in a.tail("n3")
