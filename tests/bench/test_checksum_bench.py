"""What the record checksums cost: append + read throughput of the state machine with
checksums (seal on write, verify on read) against the same run without them (CRC
replaced by a constant and verification off: format 1's work plus 4 bytes a record).

Prints min / median / max over RAFTLOG_BENCH_RUNS runs (default 5) of each mode,
interleaved, and the ratio of the medians. ``durability="os"``: an fsync per apply
would hide the CPU cost being measured.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

from raftlog import checksum
from raftlog.commands import Append, AppendEntry, encode
from raftlog.state import store as state_store
from raftlog.state.machine import StateMachine

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

APPLIES = 400
PER_APPLY = 50  # entries per Raft entry
SIZES = (100, 1000)  # bytes of each JSON value


def run(path: Path, size: int) -> tuple[float, float]:
    """(appended entries/s, read entries/s) for one fresh state."""
    value = json.dumps("v" * (size - 2)).encode()
    entries = tuple(AppendEntry(value_json=value) for _ in range(PER_APPLY))
    commands = [encode(Append(log="b", entries=entries, timestamp_ms=i)) for i in range(APPLIES)]
    with StateMachine(path, durability="os") as sm:
        t0 = time.perf_counter()
        for i, cmd in enumerate(commands, start=1):
            sm.apply(i, 1, cmd)
        t1 = time.perf_counter()
        total = APPLIES * PER_APPLY
        read = 0
        for start in range(0, total, 256):
            read += len(sm.read_range("b", start, 256))
        t2 = time.perf_counter()
    assert read == total
    return total / (t1 - t0), total / (t2 - t1)


def test_checksum_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = int(os.environ.get("RAFTLOG_BENCH_RUNS", "5"))
    real_crc = state_store.record_crc
    for size in SIZES:
        results: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for i in range(runs):
            for mode in ("with", "without"):
                if mode == "without":
                    monkeypatch.setattr(state_store, "record_crc", lambda db, key, body: 0)
                    checksum.set_verification(False)
                try:
                    results[mode].append(run(tmp_path / f"{size}-{mode}-{i}", size))
                finally:
                    monkeypatch.setattr(state_store, "record_crc", real_crc)
                    checksum.set_verification(True)
        for k, what in ((0, "append"), (1, "read")):
            med = {m: statistics.median(r[k] for r in results[m]) for m in results}
            for m in ("with", "without"):
                xs = [r[k] for r in results[m]]
                print(
                    f"{size:>5} B values, {what:6} {m:7} checksums: entries/s "
                    f"min {min(xs):>9.0f} median {med[m]:>9.0f} max {max(xs):>9.0f}"
                )
            ratio = med["with"] / med["without"]
            print(f"{size:>5} B values, {what:6} ratio with/without: {ratio:.3f}")
