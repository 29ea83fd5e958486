"""``raftlog bench --growth``: what a node costs as the stored log grows (issue 11).

One run on its own local 3-node raftlog cluster (production settings, fsync), in order:

1. **Stages.** For each stage size (default 1M then 10M stored entries) it appends
   batches (``BATCH`` entries of ``VALUE_BYTES`` bytes per request, ``connections``
   keep-alive connections) up to that count, waits until every node has applied the
   leader's index, then measures per node: RSS of the serve process and its children
   (``/proc/PID/status``: VmRSS, RssAnon, RssFile), the data dir's size on disk, and
   read-by-offset latency (wrk, random offsets over the whole stored range) with
   ``consistency=any`` and ``consistency=leader`` against the leader.
2. **Catch-up.** A follower is stopped (SIGSTOP of its process group), ``catchup``
   entries are appended, it is resumed (SIGCONT) and timed until its own applied index
   (``GET /v1/cluster`` with ``X-Raftlog-No-Forward``) reaches the leader's; its log
   says whether it caught up by log or by installing a snapshot.
3. **Snapshot.** Every node is restarted with ``snapshot_min_interval_s`` of
   ``SNAPSHOT_INTERVAL_S`` and fed appends until the leader has written a snapshot of its
   whole state (``SNAPSHOT_INTERVAL_S`` says why not ``snapshot_min_entries``); then a follower is
   killed, its data dir deleted, and it is restarted and timed until it has installed
   the leader's snapshot and applied the leader's index. The leader's snapshot file is
   also copied raw over a 127.0.0.1 TCP socket into a file (fsynced at the end), once
   before and once after the install; the ratio is install time / mean raw copy time.

Contracts: main thread only (the fill's worker threads are joined before it returns).
Every wait has a deadline (``TimeoutError``); every load loop is bounded in requests and
time. Processes are started and ended through ``Spawner`` (the caller's ``stop_all``
stops them on every path; a SIGSTOPped member is resumed in a ``finally``). Raises
``RuntimeError`` for a refused write, a node that exited, or a read that failed.
``run_growth`` returns the exit code like ``raftlog.bench.runner.run_bench``: 0 the
table was printed (targets met or not), 1 a failure, 128+N after signal N.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from raftlog.bench.clusters import VALUE_BYTES, Leadership, RaftlogCluster, value_text
from raftlog.bench.control import http_json
from raftlog.bench.procs import Spawner
from raftlog.bench.runner import BenchInterrupted, _signals_raise, _tails, stop_and_clean
from raftlog.bench.wrk import RequestSpec, lua_script, run_wrk

__all__ = [
    "GrowthOptions",
    "GrowthResult",
    "copy_over_loopback",
    "node_rss",
    "render_growth_table",
    "run_growth",
]

LOG = "growth"
BATCH = 100  # entries per append request
READY_TIMEOUT_S = 120.0
READ_PATHS = 5000  # random offsets per wrk script
READ_CONNECTIONS = 8
RSS_FLAT = 1.2  # the "flat within 20%"
LATENCY_FLAT = 1.2  # the same bound for read latency (the issue says "flat")
SNAPSHOT_RATIO = 2.0  # install within 2x of a raw copy
MIN_RATE = 1000.0  # entries/s below which a fill or catch-up counts as stuck (deadlines)
POLL_S = 0.05
APPEND_UNTIL_MAX = 100_000  # requests
# The snapshot row restarts the nodes with this snapshot_min_interval_s and appends until
# the leader has written a snapshot. Not snapshot_min_entries: a compaction that starts
# while the last applied entry is the new leader's no-op is refused by
# SnapshotWriter.serialize, which wedges PySyncObj's serializer (no snapshot is written
# or sent again); appends flowing when the interval expires avoid that (DESIGN.md).
SNAPSHOT_INTERVAL_S = 10
NO_FORWARD = {"X-Raftlog-No-Forward": "1"}
RESTORED = "snapshot: state restored to index"  # raftlog.raft.snapshots, on install
BUILT = "snapshot at index"  # ... when a node has written its own snapshot


@dataclass(frozen=True, slots=True)
class GrowthOptions:
    stages: tuple[int, ...] = (1_000_000, 10_000_000)
    catchup: int | None = None  # entries the stopped follower misses; default: stages[0]
    read_s: float = 5.0
    connections: int = 8
    snapshot: bool = True
    json_path: Path | None = None

    @property
    def catchup_entries(self) -> int:
        return self.catchup if self.catchup is not None else min(self.stages[0], 1_000_000)


@dataclass
class GrowthResult:
    """Every figure of a run (``asdict`` is the JSON)."""

    options: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    catchup: dict[str, Any] | None = None
    snapshot: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: str | None = None  # why the run stopped early
    pids: list[int] = field(default_factory=list)


# -- small HTTP helpers ---------------------------------------------------------------------


def _own_view(url: str) -> dict[str, Any] | None:
    """The node's own ``/v1/cluster`` view, or None when it does not answer 200."""
    try:
        status, body = http_json("GET", f"{url}/v1/cluster", headers=NO_FORWARD)
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def applied_index(url: str) -> int | None:
    """The node's own applied index (its first entry in its own cluster view)."""
    view = _own_view(url)
    if view is None:
        return None
    return int(view["nodes"][0]["applied_index"])


def _wait_for(
    what: str, timeout: float, check: Callable[[], bool], alive: Callable[[], None]
) -> float:
    """Poll ``check`` until true; the seconds it took. TimeoutError past ``timeout``."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        alive()
        if check():
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


# -- load -----------------------------------------------------------------------------------


def append_until(url: str, done: Callable[[], bool], timeout: float) -> int:
    """Append batches of ``BATCH`` entries on one connection until ``done()`` (checked
    after each answer); the entries appended. Bounded: ``APPEND_UNTIL_MAX`` requests and
    ``timeout`` seconds, past which it is a TimeoutError."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30.0)
    body = _batch_body(BATCH)
    deadline = time.monotonic() + timeout
    appended = 0
    try:
        for _ in range(APPEND_UNTIL_MAX):
            if done():
                return appended
            if time.monotonic() > deadline:
                break
            conn.request("POST", f"/v1/logs/{LOG}/entries", body=body,
                         headers={"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            answer = response.read()
            if response.status == 201:
                appended += BATCH
            elif response.status not in (429, 503, 504):
                raise RuntimeError(f"append answered {response.status}: {answer[:300]!r}")
    finally:
        conn.close()
    raise TimeoutError(f"appended {appended} entries over {timeout:.0f} s: no snapshot came")


def _batch_body(count: int) -> bytes:
    return json.dumps({"entries": [{"value": value_text()}] * count}).encode()


def append_entries(
    url: str, total: int, connections: int, timeout: float
) -> tuple[float, dict[int, int]]:
    """Append ``total`` entries to ``LOG`` in batches of ``BATCH`` over ``connections``
    keep-alive connections; the seconds it took and the retries by status. Bounded:
    ceil(total / BATCH) requests, each retried on 429/503/504 (overloaded, election,
    leader change) until ``timeout`` for the whole fill; any other answer or a timeout is
    a RuntimeError (the workers are joined first)."""
    sizes = [BATCH] * (total // BATCH) + ([total % BATCH] if total % BATCH else [])
    full = _batch_body(BATCH)
    lock = threading.Lock()
    errors: list[str] = []
    retried: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    path = f"/v1/logs/{LOG}/entries"
    headers = {"Content-Type": "application/json"}

    def take() -> int | None:
        with lock:
            if errors or not sizes:
                return None
            return sizes.pop()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 0, timeout=30.0)
        try:
            while (size := take()) is not None:
                body = full if size == BATCH else _batch_body(size)
                while True:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the fill ran over {timeout:.0f} s")
                    try:
                        conn.request("POST", path, body=body, headers=headers)
                        response = conn.getresponse()
                        answer = response.read()
                    except (OSError, http.client.HTTPException):
                        conn.close()  # reconnects on the next request
                        time.sleep(0.1)
                        continue
                    if response.status == 201:
                        break
                    if response.status in (429, 503, 504):
                        # overloaded, no leader, or the leader changed mid-request (504
                        # outcome_unknown: it may have been appended; counting it once is
                        # safe, the log then holds at least what the reads assume)
                        with lock:
                            retried[response.status] = retried.get(response.status, 0) + 1
                        time.sleep(0.05)
                        continue
                    raise RuntimeError(f"append answered {response.status}: {answer[:300]!r}")
        except Exception as exc:  # reported by the main thread
            with lock:
                errors.append(str(exc))
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 40.0))  # a request's own timeout
    if any(t.is_alive() for t in threads):
        raise RuntimeError("append workers did not finish")
    if errors:
        raise RuntimeError(errors[0])
    return time.monotonic() - started, retried


# -- measurements ---------------------------------------------------------------------------

_STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (scan of /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def node_rss(pid: int) -> dict[str, int]:
    """kB of VmRSS/RssAnon/RssFile/VmHWM summed over ``pid`` and its descendants."""
    total = dict.fromkeys(_STATUS_FIELDS, 0)
    for p in [pid, *_children(pid)]:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name in total:
                total[name] += int(rest.split()[0])
    return total


def dir_bytes(path: Path) -> int:
    """Bytes on disk (allocated blocks) under ``path``."""
    size = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return size


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_latency(
    spawner: Spawner, scripts: Path, url: str, count: int, level: str, seconds: float, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    paths = tuple(
        f"/v1/logs/{LOG}/entries/{rng.randrange(count)}?consistency={level}"
        for _ in range(READ_PATHS)
    )
    script = scripts / f"read-{level}-{count}.lua"
    script.write_text(lua_script(RequestSpec("GET", paths)))
    result = run_wrk(spawner, url, script, READ_CONNECTIONS, seconds)
    if result.ok == 0 or result.status_errors or result.socket_errors:
        raise RuntimeError(
            f"reads ({level}) at {count} entries: {result.ok} ok, {result.status_errors} "
            f"status errors, {result.socket_errors} socket errors"
        )
    return {
        "consistency": level,
        "connections": READ_CONNECTIONS,
        "ops_per_s": result.ok_per_s,
        "p50_ms": result.percentile(50.0),
        "p99_ms": result.percentile(99.0),
        "requests": result.requests,
    }


def copy_over_loopback(source: Path, target: Path, timeout: float) -> float:
    """Copy ``source`` to ``target`` through a TCP connection on 127.0.0.1 (sendfile on
    the sending side, 1 MiB writes on the receiving one, fsync of ``target`` at the end);
    the seconds from connect to the fsync's return. A sender thread is joined."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(timeout)
    port = listener.getsockname()[1]
    failure: list[BaseException] = []

    def send() -> None:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=timeout) as s,
                open(source, "rb") as f,
            ):
                s.sendfile(f)
        except BaseException as exc:  # reported below
            failure.append(exc)

    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        conn, _ = listener.accept()
    finally:
        listener.close()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with conn, open(target, "wb") as out:
        conn.settimeout(timeout)
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            out.write(view[:n])
        out.flush()
        os.fsync(out.fileno())
    seconds = time.monotonic() - started
    sender.join(timeout)
    if failure:
        raise RuntimeError(f"raw copy failed: {failure[0]!r}")
    if target.stat().st_size != source.stat().st_size:
        raise RuntimeError("raw copy is short")
    return seconds


# -- the phases -----------------------------------------------------------------------------


class _Run:
    def __init__(
        self, opts: GrowthOptions, root: Path, spawner: Spawner, say: Callable[[str], None]
    ) -> None:
        self.opts = opts
        self.root = root
        self.spawner = spawner
        self.say = say
        self.cluster = RaftlogCluster(spawner, root / "raftlog")
        self.scripts = root / "scripts"
        self.scripts.mkdir()
        self.stored = 0
        self.retried: dict[str, int] = {}  # appends retried, by HTTP status
        self.result = GrowthResult(options=_options_json(opts))

    # helpers

    def leader(self) -> str:
        lead = self.cluster.leadership()
        if lead is None:
            raise RuntimeError("the cluster has no leader")
        return lead.leader

    def alive(self) -> None:
        self.cluster.check_alive()

    def log_lines(self, member: str, needle: str) -> int:
        path = self.cluster.root / f"{member}.log"
        try:
            return path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def wait_ready(self) -> None:
        self.cluster.wait_ready(READY_TIMEOUT_S)

    def wait_all_applied(self, timeout: float) -> float:
        """Until every running node's own applied index equals the leader's."""

        def check() -> bool:
            lead = self.cluster.leadership()
            if lead is None:
                return False
            target = applied_index(self.cluster.urls[lead.leader])
            if target is None:
                return False
            for m in self.cluster.running():
                got = applied_index(self.cluster.urls[m])
                if got is None or got < target:
                    return False
            return True

        return _wait_for("every node to apply the leader's index", timeout, check, self.alive)

    def fill(self, url: str, entries: int) -> float:
        timeout = 60.0 + entries / MIN_RATE
        seconds, retried = append_entries(url, entries, self.opts.connections, timeout)
        self.stored += entries
        for status, count in retried.items():
            self.retried[str(status)] = self.retried.get(str(status), 0) + count
        return seconds

    def graceful_stop(self, member: str, timeout: float = 60.0) -> None:
        proc = self.cluster.procs[member]
        if proc is None:
            return
        Spawner.signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except Exception:
            self.spawner.kill9(proc)
        self.cluster.procs[member] = None

    # phases

    def stage(self, target: int, seed: int) -> dict[str, Any]:
        appended = target - self.stored
        seconds = self.fill(self.cluster.urls[self.leader()], appended)
        settle = self.wait_all_applied(60.0 + target / (10 * MIN_RATE))
        leader = self.leader()
        url = self.cluster.urls[leader]
        reads = [
            _read_latency(self.spawner, self.scripts, url, target, level, self.opts.read_s, seed)
            for level in ("any", "leader")
        ]
        nodes = {}
        for m in self.cluster.members:
            proc = self.cluster.procs[m]
            assert proc is not None
            nodes[m] = {
                "rss_kb": node_rss(proc.pid),
                "data_dir_bytes": dir_bytes(self.cluster.root / m),
                # the uncompacted Raft log, which the journal also holds in memory
                "journal_bytes": _file_size(self.cluster.root / m / "raft.journal"),
                "snapshot_bytes": _file_size(self.cluster.root / m / "raft.snapshot"),
                "role": "leader" if m == leader else "follower",
            }
        return {
            "entries": target,
            "appended": appended,  # in fill_s
            "appends_retried": dict(self.retried),
            "term": (self.cluster.leadership() or Leadership("", 0)).term,
            "fill_s": seconds,
            "settle_s": settle,
            "reads": reads,
            "nodes": nodes,
        }

    def catchup(self) -> dict[str, Any]:
        leader = self.leader()
        follower = next(m for m in self.cluster.members if m != leader)
        proc = self.cluster.procs[follower]
        assert proc is not None
        installs_before = self.log_lines(follower, RESTORED)
        entries = self.opts.catchup_entries
        term_before = self.cluster.leadership()
        Spawner.signal(proc, signal.SIGSTOP)
        resumed = False
        try:
            before = applied_index(self.cluster.urls[leader]) or 0
            fill_s = self.fill(self.cluster.urls[leader], entries)
            target = applied_index(self.cluster.urls[leader])
            if target is None:
                raise RuntimeError("the leader does not answer")
            Spawner.signal(proc, signal.SIGCONT)
            resumed = True
            url = self.cluster.urls[follower]
            seconds = _wait_for(
                f"{follower} to apply the leader's index {target}",
                60.0 + entries / MIN_RATE,
                lambda: (applied_index(url) or 0) >= target,
                self.alive,
            )
        finally:
            if not resumed:
                Spawner.signal(proc, signal.SIGCONT)
        by_snapshot = self.log_lines(follower, RESTORED) > installs_before
        term_after = self.cluster.leadership()
        return {
            # a leader change while it caught up shows as a new leader or term here
            "leader_before": None if term_before is None else asdict(term_before),
            "leader_after": None if term_after is None else asdict(term_after),
            "follower": follower,
            "entries": entries,
            "raft_entries": target - before,
            "fill_s": fill_s,
            "seconds": seconds,
            "entries_per_s": entries / seconds if seconds > 0 else 0.0,
            "by": "snapshot" if by_snapshot else "log",
        }

    def snapshot(self) -> dict[str, Any]:
        cluster = self.cluster
        for m in cluster.members:
            self.graceful_stop(m)
        # A time-based compaction, fed by appends: see SNAPSHOT_INTERVAL_S.
        _set_node_setting(cluster.config_path, "snapshot_min_interval_s", SNAPSHOT_INTERVAL_S)
        built_before = {m: self.log_lines(m, BUILT) for m in cluster.members}
        cluster.start()
        self.wait_ready()
        leader = self.leader()
        url = cluster.urls[leader]
        dump = cluster.root / leader / "raft.snapshot"
        building = cluster.root / leader / "raft.snapshot.building"

        def built() -> bool:
            return self.log_lines(leader, BUILT) > built_before[leader] and not building.exists()

        self.stored += append_until(url, built, 60.0 + self.stored / (20 * MIN_RATE))
        # Entries that arrived while it built make one more snapshot an interval later;
        # after that nothing new arrives, so the dump stays as it is while it is shipped.
        time.sleep(SNAPSHOT_INTERVAL_S + 2.0)
        _wait_for(f"{leader} to finish its snapshot", 120.0, lambda: not building.exists(),
                  self.alive)  # fmt: skip
        self.wait_all_applied(120.0)
        size = dump.stat().st_size
        copy = self.root / "snapshot.copy"
        held = self.root / "snapshot.held"
        os.link(dump, held)  # the same bytes even if the leader writes a new one
        timeout = 60.0 + size / 10e6
        raw = [copy_over_loopback(held, copy, timeout)]
        copy.unlink()

        follower = next(m for m in cluster.members if m != leader)
        target = applied_index(cluster.urls[leader])
        if target is None:
            raise RuntimeError("the leader does not answer")
        proc = cluster.procs[follower]
        assert proc is not None
        self.spawner.kill9(proc)
        cluster.procs[follower] = None
        shutil.rmtree(cluster.root / follower)
        installs_before = self.log_lines(follower, RESTORED)
        url = cluster.urls[follower]
        started = time.monotonic()
        cluster.restart(follower)
        up = _wait_for(
            f"{follower} to answer HTTP", 60.0, lambda: _own_view(url) is not None, self.alive
        )
        _wait_for(
            f"{follower} to install the snapshot and apply index {target}",
            timeout + 120.0,
            lambda: (applied_index(url) or 0) >= target,
            self.alive,
        )
        install = time.monotonic() - started
        installed = self.log_lines(follower, RESTORED) > installs_before
        raw.append(copy_over_loopback(held, copy, timeout))
        copy.unlink()
        held.unlink()
        mean_raw = statistics.mean(raw)
        return {
            "leader": leader,
            "follower": follower,
            "snapshot_bytes": size,
            "state_entries": self.stored,
            "install_s": install,
            "startup_s": up,
            "by": "snapshot" if installed else "log",
            "raw_copy_s": raw,
            "raw_copy_mb_per_s": size / mean_raw / 1e6 if mean_raw > 0 else 0.0,
            "ratio": install / mean_raw if mean_raw > 0 else None,
            # the same without the process start (spawn until HTTP answers)
            "ratio_after_start": (install - up) / mean_raw if mean_raw > 0 else None,
        }

    def run(self) -> None:
        cluster = self.cluster
        cluster.start()
        self.wait_ready()
        pids = ", ".join(str(p.pid) for p in cluster.procs.values() if p is not None)
        self.say(f"raftlog: 3 members ready (pids {pids})")
        for i, target in enumerate(self.opts.stages):
            stage = self.stage(target, seed=i + 1)
            self.result.stages.append(stage)
            self.say(_stage_line(stage))
        catch = self.catchup()
        self.result.catchup = catch
        self.say(
            f"catch-up: {catch['follower']} {catch['entries']:,} entries behind caught up in "
            f"{catch['seconds']:.2f} s ({catch['entries_per_s']:,.0f} entries/s, by {catch['by']})"
        )
        if self.opts.snapshot:
            snap = self.snapshot()
            self.result.snapshot = snap
            self.say(
                f"snapshot: {snap['snapshot_bytes'] / 1e6:,.1f} MB installed on a wiped "
                f"{snap['follower']} in {snap['install_s']:.2f} s (HTTP up after "
                f"{snap['startup_s']:.2f} s, by {snap['by']}); raw copy "
                + "/".join(f"{s:.2f}" for s in snap["raw_copy_s"])
                + " s"
            )


def _set_node_setting(config_path: Path, name: str, value: int) -> None:
    """Add ``name = value`` to the ``[node]`` table (the last one the generator writes)."""
    text = config_path.read_text(encoding="utf-8")
    tables = [line for line in text.splitlines() if line.startswith("[")]
    if not tables or tables[-1] != "[node]" or f"\n{name} =" in text:
        raise RuntimeError(f"cannot add {name} to {config_path}: unexpected layout")
    config_path.write_text(text.rstrip("\n") + f"\n{name} = {value}\n", encoding="utf-8")


def _options_json(opts: GrowthOptions) -> dict[str, Any]:
    data = asdict(opts)
    data["json_path"] = str(opts.json_path) if opts.json_path else None
    data["catchup"] = opts.catchup_entries
    data["batch"] = BATCH
    data["value_bytes"] = VALUE_BYTES
    return data


def _stage_line(stage: dict[str, Any]) -> str:
    rss = ", ".join(
        f"{m} {n['rss_kb']['VmRSS'] / 1024:.0f} MB (anon {n['rss_kb']['RssAnon'] / 1024:.0f})"
        for m, n in stage["nodes"].items()
    )
    reads = "; ".join(
        f"{r['consistency']} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms" for r in stage["reads"]
    )
    rate = stage["appended"] / stage["fill_s"] if stage["fill_s"] > 0 else 0.0
    return f"{stage['entries']:,} entries (filled at {rate:,.0f} entries/s): RSS {rss}; {reads}"


# -- the table ------------------------------------------------------------------------------


def _fmt_count(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


def _build_rows(result: GrowthResult) -> list[dict[str, Any]]:
    """One dict per table row: name, per-stage values, ratio last/first, target, met."""
    rows: list[dict[str, Any]] = []
    stages = result.stages

    def staged(name: str, unit: str, values: list[float], bound: float | None) -> None:
        ratio = values[-1] / values[0] if len(values) > 1 and values[0] > 0 else None
        met = None if bound is None or ratio is None else ratio <= bound
        rows.append(
            {
                "name": name,
                "unit": unit,
                "values": values,
                "ratio": ratio,
                "target": None if bound is None else f"last/first <= {bound:g}",
                "met": met,
            }
        )

    if stages:
        for key, label in (("VmRSS", "RSS"), ("RssAnon", "RSS anon")):
            staged(
                f"{label} per node, max, MB",
                "MB",
                [max(n["rss_kb"][key] for n in s["nodes"].values()) / 1024 for s in stages],
                RSS_FLAT,
            )
        staged(
            "RSS file-backed (LMDB map), max, MB",
            "MB",
            [max(n["rss_kb"]["RssFile"] for n in s["nodes"].values()) / 1024 for s in stages],
            None,
        )
        for level in ("any", "leader"):
            for pct in ("p50", "p99"):
                staged(
                    f"read by offset, {level}, {pct}, ms",
                    "ms",
                    [
                        next(r for r in s["reads"] if r["consistency"] == level)[f"{pct}_ms"]
                        for s in stages
                    ],
                    LATENCY_FLAT,
                )
        staged(
            "Raft journal per node (held in memory too), max, MB",
            "MB",
            [max(n["journal_bytes"] for n in s["nodes"].values()) / 1e6 for s in stages],
            None,
        )
        staged(
            "data dir per node, max, MB",
            "MB",
            [max(n["data_dir_bytes"] for n in s["nodes"].values()) / 1e6 for s in stages],
            None,
        )
        staged(
            "fill rate, entries/s",
            "entries/s",
            [s["appended"] / s["fill_s"] if s["fill_s"] > 0 else 0.0 for s in stages],
            None,
        )
    catch = result.catchup
    if catch is not None:
        rows.append(
            {
                "name": f"catch-up, {_fmt_count(catch['entries'])} behind, entries/s "
                f"(by {catch['by']})",
                "unit": "entries/s",
                "values": [catch["entries_per_s"]],
                "ratio": None,
                "target": "caught up (rate stated)",
                "met": catch["entries_per_s"] > 0,
            }
        )
    snap = result.snapshot
    if snap is None and result.failure and result.options.get("snapshot", True):
        rows.append(
            {
                "name": f"snapshot install / raw copy (NOT MEASURED: {result.failure[:120]})",
                "unit": "s",
                "values": [],
                "ratio": None,
                "target": f"<= {SNAPSHOT_RATIO:g}x",
                "met": None,
            }
        )
    if snap is not None:
        rows.append(
            {
                "name": f"snapshot {snap['snapshot_bytes'] / 1e6:,.0f} MB install / raw copy "
                f"(by {snap['by']})",
                "unit": "s",
                "values": [snap["install_s"], statistics.mean(snap["raw_copy_s"])],
                "ratio": snap["ratio"],
                "target": f"<= {SNAPSHOT_RATIO:g}x",
                "met": None if snap["ratio"] is None else snap["ratio"] <= SNAPSHOT_RATIO,
            }
        )
    return rows


def _value_text(value: float, unit: str) -> str:
    if unit == "ms" or unit == "s":
        return f"{value:.2f}"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def render_growth_table(result: GrowthResult) -> list[str]:
    """Markdown lines: a header naming the stages, then one line per row."""
    names = [_fmt_count(s["entries"]) for s in result.stages]
    lines = [
        "| cost as the work grows | " + " | ".join(names) + " | last/first | target | met |",
        "| --- | " + " | ".join("---:" for _ in names) + " | ---: | --- | --- |",
    ]
    width = len(names)
    for row in result.rows:
        values = [_value_text(v, row["unit"]) for v in row["values"]]
        if row["name"].startswith("snapshot") and len(values) == 2:
            values = [f"{values[0]} s install", f"{values[1]} s raw copy"]
        values = (values + [""] * width)[: max(width, len(values))]
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        met = {True: "yes", False: "NO", None: "n/a"}[row["met"]]
        lines.append(
            f"| {row['name']} | "
            + " | ".join(values)
            + f" | {ratio} | {row['target'] or ''} | {met} |"
        )
    return lines


# -- the run --------------------------------------------------------------------------------


def run_growth(opts: GrowthOptions, say: Callable[[str], None] | None = None) -> int:
    """The whole run (module docstring)."""

    def echo(text: str) -> None:
        print(text, flush=True)

    emit = say or echo
    if shutil.which("wrk") is None:
        emit("raftlog bench --growth: wrk is not installed (Debian package wrk); nothing was run")
        return 1
    if list(opts.stages) != sorted(set(opts.stages)) or opts.stages[0] < 1:
        emit("raftlog bench --growth: stages must be increasing positive counts")
        return 2
    root = Path(tempfile.mkdtemp(prefix="raftlog-growth-"))
    spawner = Spawner()
    run = _Run(opts, root, spawner, emit)
    code = 1
    with _signals_raise(spawner) as ignore_signals:
        try:
            try:
                run.run()
                code = 0
            except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                run.result.failure = str(exc)
                emit(f"\nraftlog bench --growth FAILED: {exc}")
                _tails(root, emit)
            except (BenchInterrupted, KeyboardInterrupt) as exc:
                signum = exc.signum if isinstance(exc, BenchInterrupted) else signal.SIGINT
                code = 128 + signum
                emit(f"\nraftlog bench --growth interrupted ({signal.Signals(signum).name})")
            result = run.result
            result.pids = list(spawner.pids)
            if code in (0, 1):
                result.rows = _build_rows(result)
                emit("")
                for line in render_growth_table(result):
                    emit(line)
                if opts.json_path is not None:
                    try:
                        opts.json_path.write_text(json.dumps(asdict(result), indent=1) + "\n")
                    except OSError as exc:
                        emit(f"raftlog bench --growth: could not write {opts.json_path}: {exc}")
                        code = 1
        finally:
            ignore_signals()
            stop_and_clean(spawner, root, emit)
    return code


def parse_stages(text: str) -> tuple[int, ...]:
    """``"1000000,10000000"`` (or ``"1M,10M"``, ``"20k"``) -> counts."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1
        if part.endswith("m"):
            scale, part = 1_000_000, part[:-1]
        elif part.endswith("k"):
            scale, part = 1000, part[:-1]
        out.append(int(float(part) * scale))
    return tuple(out)
