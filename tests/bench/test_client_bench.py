"""The Python clients beside ``wrk`` against the same leader (issue 11): is the client what
limits a user?

One local 3-node cluster. Each repetition measures, interleaved, for single appends
(``ack=quorum``, 100-byte values) and ``consistency=any`` gets (offsets 0-99):
``wrk`` with 32 connections and ``AsyncClient`` with 32 tasks; ``wrk`` with 1 connection and
the sync ``Client`` on 1 thread; and ``AsyncClient`` spreading its reads over all three
nodes. It prints ops/s (min/median/max over the repetitions) and each client's ratio to
``wrk`` at the same concurrency, computed per repetition. It asserts only that every
operation succeeded: speed is printed, never asserted (the machine is shared and noisy).

The client side is ``raftlog.client.load``, the same functions ``raftlog bench`` calls.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from raftlog.client.load import (
    LoadFigures,
    run_async_any_reads,
    run_async_appends,
    run_sync_any_reads,
    run_sync_appends,
)
from tests.support.http_cluster import http_cluster

pytestmark = [pytest.mark.bench, pytest.mark.timeout(300)]

REPETITIONS = 3
POINT_S = 2.0  # seconds per measured point
VALUE_BYTES = 100
OFFSETS = 100
LOG = "bench"

APPEND_LUA = """
wrk.method = "POST"
wrk.path = "/v1/logs/{log}/entries?ack=quorum&timeout=10"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{{"value":"{value}"}}'
"""

READ_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/logs/{log}/entries/" .. (counter % {offsets}) ..
                    "?consistency=any&timeout=10")
end
"""


@dataclass
class Wrk:
    requests_per_s: float
    failed: int  # non-2xx answers and socket errors


def run_wrk(url: str, connections: int, script: Path) -> Wrk:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{POINT_S:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=POINT_S + 30,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate, out
    failed = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        failed += sum(int(n) for n in errors.groups())
    return Wrk(float(rate.group(1)), failed)


@dataclass
class Row:
    """One line of the table: a client figure per repetition, and wrk's beside it."""

    label: str
    client: list[float] = field(default_factory=list)
    wrk: list[float] = field(default_factory=list)

    def add(self, figures: LoadFigures, wrk: Wrk | None) -> None:
        assert figures.error_count == 0, (self.label, figures.errors)
        assert figures.ok > 0, self.label
        self.client.append(figures.ops_per_s)
        if wrk is not None:
            assert wrk.failed == 0, (self.label, "wrk", wrk)
            self.wrk.append(wrk.requests_per_s)

    def line(self) -> str:
        text = f"{self.label:<44} client {spread(self.client)}"
        if self.wrk:
            ratios = [c / w for c, w in zip(self.client, self.wrk, strict=True)]
            text += f"  wrk {spread(self.wrk)}  ratio {spread(ratios, '.2f')}"
        return text


def spread(values: list[float], fmt: str = ".0f") -> str:
    return "/".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def test_clients_beside_wrk(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package 'wrk'): nothing to compare with")
    append_lua = tmp_path / "append.lua"
    append_lua.write_text(APPEND_LUA.format(log=LOG, value="x" * (VALUE_BYTES - 2)))
    read_lua = tmp_path / "read.lua"
    read_lua.write_text(READ_LUA.format(log=LOG, offsets=OFFSETS))

    with http_cluster(tmp_path / "cluster") as cluster:
        cluster.start_all()
        leader = cluster.wait_ready()
        url = cluster.url(leader)
        everyone = cluster.urls()
        prefill = run_sync_appends([url], 4, 30.0, VALUE_BYTES, log=LOG, max_ops=OFFSETS)
        assert prefill.ok == OFFSETS, prefill.errors

        rows = {
            "a32": Row("appends, AsyncClient 32 tasks vs wrk -c32"),
            "s1": Row("appends, Client 1 thread vs wrk -c1"),
            "r32": Row("any reads, AsyncClient 32 tasks vs wrk -c32"),
            "rs1": Row("any reads, Client 1 thread vs wrk -c1"),
            "spread": Row("any reads, AsyncClient 32 tasks, 3 nodes"),
        }
        points: list[tuple[str, Callable[[], LoadFigures], Path | None, int]] = [
            (
                "a32",
                lambda: asyncio.run(run_async_appends([url], 32, POINT_S, VALUE_BYTES, log=LOG)),
                append_lua,
                32,
            ),
            (
                "s1",
                lambda: run_sync_appends([url], 1, POINT_S, VALUE_BYTES, log=LOG),
                append_lua,
                1,
            ),
            (
                "r32",
                lambda: asyncio.run(
                    run_async_any_reads([url], 32, POINT_S, log=LOG, offsets=OFFSETS)
                ),
                read_lua,
                32,
            ),
            (
                "rs1",
                lambda: run_sync_any_reads([url], 1, POINT_S, log=LOG, offsets=OFFSETS),
                read_lua,
                1,
            ),
            (
                "spread",
                lambda: asyncio.run(
                    run_async_any_reads(everyone, 32, POINT_S, log=LOG, offsets=OFFSETS)
                ),
                None,
                32,
            ),
        ]
        for repetition in range(REPETITIONS):
            order = points if repetition % 2 == 0 else points[::-1]
            for key, client_run, script, connections in order:
                # wrk and the client alternate which goes first from one repetition to the next
                if script is not None and repetition % 2 == 0:
                    wrk = run_wrk(url, connections, script)
                    figures = client_run()
                else:
                    figures = client_run()
                    wrk = run_wrk(url, connections, script) if script is not None else None
                rows[key].add(figures, wrk)
        still = cluster.status(leader)["role"]

    print(
        f"\nclients beside wrk against the leader {leader} (3-node local cluster, "
        f"{REPETITIONS} repetitions x {POINT_S:g} s per point; ops/s and ratios "
        "min/median/max):"
    )
    for row in rows.values():
        print("  " + row.line())
    if still != "leader":
        print(f"  note: {leader} was no longer leader at the end ({still}): figures suspect")
