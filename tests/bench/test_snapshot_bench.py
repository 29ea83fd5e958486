"""Snapshot cost at realistic state sizes, and how long it blocks the Raft tick thread.

Prints, per size: state size, snapshot file size, total snapshot time, the time the
tick thread is blocked (the async writer vs the synchronous baseline measured in the
same run) and restore time. Sizes come from RAFTLOG_BENCH_SNAPSHOT_MB (default
"100"; "100,1000" for the 1 GB figure).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from raftlog.commands import Append, AppendEntry, encode
from raftlog.raft.snapshots import SnapshotWriter
from raftlog.state.machine import StateMachine

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

VALUE = json.dumps("v" * 1000).encode()
PER_APPLY = 1000  # entries of ~1 KB per Raft entry: ~1 MB per apply


def fill(sm: StateMachine, megabytes: int) -> int:
    entries = tuple(AppendEntry(value_json=VALUE) for _ in range(PER_APPLY))
    index = sm.last_applied()[0]
    for _ in range(megabytes):
        index += 1
        sm.apply(index, 1, encode(Append(log="bench", entries=entries, timestamp_ms=index)))
    return index


def take(writer: SnapshotWriter, index: int) -> tuple[float, float]:
    """Returns (tick-thread block, total time until the dump is durable)."""
    cluster = [SimpleNamespace(address="127.0.0.1:1")]
    started = time.monotonic()
    writer.serialize(str(writer._dump) + ".tmp", ((b"x", index, 1), (b"x", index - 1, 1), cluster))
    blocked = time.monotonic() - started
    os.replace(str(writer._dump) + ".tmp", writer._dump)  # what PySyncObj does next
    deadline = time.monotonic() + 600
    while writer.check() == 1 and time.monotonic() < deadline:  # SERIALIZING
        time.sleep(0.005)
    return blocked, time.monotonic() - started


def sizes() -> list[int]:
    return [int(s) for s in os.environ.get("RAFTLOG_BENCH_SNAPSHOT_MB", "100").split(",")]


@pytest.mark.parametrize("megabytes", sizes())
def test_snapshot_time_and_tick_block(tmp_path: Path, megabytes: int) -> None:
    sm = StateMachine(tmp_path / "state", durability="os", map_size=1 << 30)
    t0 = time.monotonic()
    index = fill(sm, megabytes)
    fill_s = time.monotonic() - t0
    state_bytes = sum(f.stat().st_size for f in (tmp_path / "state").iterdir())
    runs = 3 if megabytes <= 200 else 1
    results: dict[str, list[float]] = {"async_block": [], "async_total": [], "sync_block": []}
    for _ in range(runs):
        for mode in ("sync", "async"):
            dump = tmp_path / f"dump-{mode}"
            writer = SnapshotWriter(sm, dump, lambda e: None, synchronous=mode == "sync")
            blocked, total = take(writer, index)
            if mode == "sync":
                results["sync_block"].append(blocked)
            else:
                results["async_block"].append(blocked)
                results["async_total"].append(total)
    dump_size = (tmp_path / "dump-async").stat().st_size
    restored = StateMachine(tmp_path / "restored")
    t0 = time.monotonic()
    with open(tmp_path / "dump-async", "rb") as f:
        from raftlog.raft.snapshots import read_header

        _, offset = read_header(f)
    restored.restore(tmp_path / "dump-async", offset=offset)
    restore_s = time.monotonic() - t0
    assert restored.digest() == sm.digest()

    def fmt(xs: list[float]) -> str:
        return f"{min(xs) * 1000:.1f}/{statistics.median(xs) * 1000:.1f}/{max(xs) * 1000:.1f} ms"

    print(
        f"\nsnapshot {megabytes} MB of entries (LMDB files {state_bytes / 1e6:.0f} MB, filled in "
        f"{fill_s:.1f} s): dump {dump_size / 1e6:.0f} MB; min/median/max over {runs} run(s): "
        f"total {fmt(results['async_total'])}; tick thread blocked: async "
        f"{fmt(results['async_block'])} vs synchronous baseline {fmt(results['sync_block'])}; "
        f"restore {restore_s * 1000:.0f} ms"
    )
    restored.close()
    sm.close()
    # The async writer must not block the tick thread for a meaningful part of an
    # election timeout; the baseline shows what it would cost otherwise.
    ratio = statistics.median(results["sync_block"]) / statistics.median(results["async_block"])
    print(f"synchronous / async tick block: {ratio:.0f}x")
    assert ratio > 10
