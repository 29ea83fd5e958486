"""Per-entry CPU of a batched append's steps, in process (docs/PERFORMANCE.md, "Batched
appends: per-entry cost"): the API parse of a 100-entry body, building the Append as
the service does, encode, decode and ``StateMachine.apply``. Prints min/median/max µs
per entry over several repeats, with the garbage collector enabled."""

from __future__ import annotations

import json
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path

import pytest

from api.validation import parse_append
from raftlog.bulk import columns_of
from raftlog.commands import Append, SetClusterMeta, append_entries, decode, encode
from raftlog.service.types import Limits
from raftlog.state.machine import StateMachine

pytestmark = [pytest.mark.bench, pytest.mark.timeout(300)]

N = 100
REPEATS = 7
NUMBER = 200


def _per_entry(fn: Callable[[], object]) -> tuple[float, float, float]:
    runs = timeit.repeat(fn, setup="import gc; gc.enable()", repeat=REPEATS, number=NUMBER)
    us = [t / NUMBER / N * 1e6 for t in runs]
    return min(us), statistics.median(us), max(us)


def test_batched_append_per_entry_cost(tmp_path: Path) -> None:
    body = json.dumps({"entries": [{"value": "v" * 98}] * N}).encode()
    limits = Limits()
    request = parse_append("bench", body, limits)

    def build() -> Append:  # as LogService.append
        entries = append_entries(*columns_of(request.entries, "value_json", "key"))
        return Append("bench", entries, timestamp_ms=1)

    command = build()
    data = encode(command)
    sm = StateMachine(tmp_path / "state", durability="os", batch_max_entries=1024)
    sm.apply(1, 1, encode(SetClusterMeta(enable_version=2)))
    index = [1]

    def apply() -> None:
        index[0] += 1
        sm.apply(index[0], 1, data)

    figures = {
        "parse_append": _per_entry(lambda: parse_append("bench", body, limits)),
        "build Append": _per_entry(build),
        "encode": _per_entry(lambda: encode(command)),
        "decode": _per_entry(lambda: decode(data)),
        "StateMachine.apply": _per_entry(apply),
    }
    sm.close()
    print(f"\nbatched append, {N} entries of 100 bytes: µs per entry, min/median/max")
    for name, (lo, mid, hi) in figures.items():
        print(f"  {name:20s} {lo:.2f} / {mid:.2f} / {hi:.2f}")
    assert decode(data)[1] == command
