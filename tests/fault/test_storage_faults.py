"""Storage integrity (issue 9): one byte flipped in a node's files, or its data dir lost,
followed by the loss of another node.

Each scenario runs a 3-node `raftlog serve` cluster (proxy back-end, 127.0.0.1), writes
values that are unique and recognisable (``<tag>-<offset-ish number>-<26 letters>``, so
one flipped byte makes a value no client wrote), damages one node's storage while it is
stopped, takes another node away, and probes every running node at every consistency
level. Invariants, checked on the operations recorded and on the final logs of the nodes
still serving at the end (the healthy majority):

* I1 no acknowledged write lost, I2 at its acknowledged offset, I3 no phantoms;
* I4 no two replicas disagree (final logs, LMDB digests, every ok read a prefix);
* I5 quorum reads linearizable; I7 definite failures absent;
* I11 no damaged value ever answered with 200 (checked on every read, majority or not).

Scenarios (F1, F2 the followers, L the leader):

* SF1 journal: F2 paused; 200 writes acknowledged by L+F1; F1 killed, one byte flipped
  inside a record a third of the way into its raft.journal (state-lost: F1's LMDB state
  removed too); L killed; F2 resumed; F1 restarted. F1 must refuse to start (exit 65,
  naming raft.journal and the record's offset); F2 is alone and must stay leader-less;
  L restarted: every acknowledged write is on L and F2.
* SF2 LMDB: all 3 hold 200 writes; F1 stopped, one byte flipped inside a stored value in
  its data.mdb, restarted, read at every level: it must never answer the damaged value
  and must fail-stop (exit 65) on the read. Then L is lost (F2 alone: no leader), then
  L returns: L and F2 hold every acknowledged write.
* SF3 snapshot file: small snapshot thresholds; F1 stopped; 180 more writes so L compacts
  past F1; one byte flipped inside a value in the LMDB copy of L's raft.snapshot; F1
  restarted (it needs that snapshot). L must fail-stop (exit 65) instead of shipping it,
  F2 leads and catches F1 up from its own snapshot; F1 never receives nor serves the
  damage. Then F2 is lost (F1 alone), the byte is put back, L returns, then F2.
* SF4 shipped snapshot: as SF3, but the file is intact and the proxy flips one byte of a
  value inside the snapshot chunk on its way from L to F1 (decompress, flip, recompress:
  PySyncObj frames carry only zlib's Adler-32, so a flip in the compressed bytes merely
  drops the connection; see harness/proxy.py). F1 must refuse it (raft.snapshot.refused,
  state kept) and install the intact copy L sends again. Then L is lost (F1 and F2 go
  on), then L returns.
* SF5 deleted data dir: F2 paused; 200 writes acknowledged; F1 killed, its data dir
  deleted, F1 restarted (cut off from L so it cannot catch up first); L killed; F2
  resumed. No leader may be elected (F1 is pending: no votes); L restarted: every
  acknowledged write is there, and F1 catches up and becomes a voter.

Negative controls (NC-SF*) run the same scenario with the UNSAFE switch that restores the
old behaviour and assert the suite flags the loss. A build that does not know the switch
(no "UNSAFE" line in any node log) and shows no violation is skipped, not passed. A node
that fail-stops on InvariantBroken (a leader's log contradicts its committed entries)
counts as a detected divergence (I4). NC-SF1 removes F1's state as well: with the state
kept, the start-up store check refuses the cut journal on its own (a test shows it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from raftlog import checksum
from raftlog.cli.serve import EXIT_CORRUPT_DATA, EXIT_FAIL_STOP
from raftlog.errors import CorruptStorage
from raftlog.state.machine import StateMachine
from tests.fault.harness import corrupt
from tests.fault.harness.checker import Violation, check_all, check_no_damaged_reads
from tests.fault.harness.history import History, Op
from tests.fault.harness.proxy import FrameCorrupter
from tests.fault.harness.runner import DEFINITE_WRITE_FAILURES, FaultCluster, fault_cluster
from tests.support.cluster import FAST_TIMING, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

LOG = "storage"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
LEVELS = ("any", "leader", "quorum")
WRITES = 200
E_MAX_S = FAST_TIMING["election_timeout_max_ms"] / 1000
# How long a node with no majority is watched for a leader it must not elect: twice the
# longest election timeout (PreVote and vote refusal need no more to show).
LEADERLESS_WINDOW_S = 2 * E_MAX_S + 0.4
START_DEADLINE_S = 20.0
SNAPSHOT_SETTINGS: dict[str, Any] = {"snapshot_min_entries": 50}
PROBE_PROCESS = 100  # the process number of the scenario's own reads

SWITCH_SKIP_CHECKSUMS = {"RAFTLOG_UNSAFE_SKIP_CHECKSUMS": "1"}
SWITCH_TORN_TAIL_ANY = {"RAFTLOG_UNSAFE_TORN_TAIL_ANY": "1"}
SWITCH_VOTE_EMPTY = {"RAFTLOG_UNSAFE_VOTE_WITH_EMPTY_DATA": "1"}


def value_for(tag: str, i: int) -> str:
    return f"{tag}-{i:05d}-{LETTERS}"


@dataclass
class Run:
    """One scenario's cluster, history and facts (printed, and asserted by the tests)."""

    c: FaultCluster
    history: History
    paused: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    def fact(self, key: str, value: Any) -> None:
        self.facts[key] = value
        print(f"  {key}: {value}")


# -- cluster helpers ------------------------------------------------------------------------


def serving(run: Run) -> list[str]:
    return [n for n in run.c.running_ids() if n not in run.paused]


def followers(c: FaultCluster, leader: str) -> list[str]:
    return sorted(n for n in c.nodes if n != leader)


def own_view(c: FaultCluster, nid: str) -> dict[str, Any] | None:
    try:
        return c.status(nid)
    except (httpx.HTTPError, StopIteration, KeyError, ValueError):
        return None


def leader_among(c: FaultCluster, ids: list[str]) -> str | None:
    for nid in ids:
        view = own_view(c, nid)
        if view is not None and view["role"] == "leader":
            return nid
    return None


def watch_for_leader(c: FaultCluster, ids: list[str], seconds: float) -> str | None:
    """Poll ``ids`` for ``seconds``; the first node that says it leads, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leader = leader_among(c, [n for n in ids if c.nodes[n].running])
        if leader is not None:
            return leader
        time.sleep(0.05)
    return None


def start_node(c: FaultCluster, nid: str, timeout: float = START_DEADLINE_S) -> int | None:
    """Start ``nid``; None once it answers /healthz, its exit code if it exits first."""
    c.start(nid, wait=False)
    proc = c.nodes[nid].proc
    assert proc is not None

    def settled() -> tuple[int | None] | None:
        if proc.poll() is not None:
            return (proc.returncode,)
        with contextlib.suppress(httpx.HTTPError):
            if c.http(nid, "GET", "/healthz", timeout=1).status_code == 200:
                return (None,)
        return None

    return wait_until(settled, timeout, f"{nid} to start or exit")[0]  # type: ignore[no-any-return]


def agreed_leader(c: FaultCluster, ids: list[str], timeout: float) -> str:
    """The leader every node of ``ids`` still running names, itself running; a node that
    stops while asked (a fail-stop) is dropped rather than ending the wait. Followers
    still name a leader that has just fail-stopped until they miss its heartbeats: that
    one does not count (a CI run read the dead leader's status as None here)."""

    def agreed() -> str | None:
        views = [own_view(c, n) for n in ids if c.nodes[n].running]
        leaders = {None if v is None else v["leader_id"] for v in views}
        if len(leaders) != 1 or None in leaders:
            return None
        leader = str(leaders.pop())
        node = c.nodes.get(leader)
        return leader if node is not None and node.running else None

    return wait_until(agreed, timeout, f"one leader among {ids}")  # type: ignore[no-any-return]


def wait_exit(c: FaultCluster, nid: str, timeout: float) -> int | None:
    proc = c.nodes[nid].proc
    if proc is None:
        return None
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.poll()


def applied(c: FaultCluster, nid: str) -> int:
    view = own_view(c, nid)
    return -1 if view is None else int(view["applied_index"])


def wait_all_applied(c: FaultCluster, ids: list[str], timeout: float = 15) -> int:
    leader = c.wait_for_leader(timeout, ids)
    target = int(own_view(c, leader)["commit_index"])  # type: ignore[index]
    wait_until(
        lambda: all(applied(c, n) >= target for n in ids), timeout, f"{ids} at index {target}"
    )
    return target


def boot_log(c: FaultCluster, nid: str) -> str:
    """The node's log since its last start."""
    text = c.nodes[nid].log_path.read_text(errors="replace")
    marker = f"node {nid} started"
    return text[text.rfind(marker) :] if marker in text else text


def unsafe_switch_seen(c: FaultCluster) -> bool:
    return any(
        "UNSAFE" in n.log_path.read_text(errors="replace")
        for n in c.nodes.values()
        if n.log_path.exists()
    )


# -- operations (recorded) --------------------------------------------------------------------


def _append(http: httpx.Client, c: FaultCluster, process: int, nid: str, value: str) -> Op:
    invoke = time.monotonic()
    op = Op(process, "append", value, invoke, invoke, "unknown", node=nid)
    try:
        r = http.post(
            f"{c.url(nid)}/v1/logs/{LOG}/entries", json={"value": value}, params={"timeout": 3}
        )
    except httpx.ConnectError as exc:
        op.outcome, op.error = "fail", f"connect: {exc}"
    except httpx.HTTPError as exc:
        op.error = f"{type(exc).__name__}: {exc}"
    else:
        if r.status_code == 201:
            op.outcome, op.offset = "ok", int(r.json()["offset"])
        elif r.status_code in DEFINITE_WRITE_FAILURES:
            op.outcome, op.error = "fail", r.text[:200]
        else:
            op.error = f"{r.status_code}: {r.text[:200]}"
    op.complete = time.monotonic()
    return op


def write(run: Run, nid: str, tag: str, count: int, start: int = 0, workers: int = 4) -> int:
    """``count`` appends to ``nid`` from ``workers`` threads; returns how many were acked."""

    def worker(w: int) -> int:
        ok = 0
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
            for i in range(start + w, start + count, workers):
                op = _append(http, run.c, w + 1, nid, value_for(tag, i))
                run.history.add(op)
                ok += op.outcome == "ok"
        return ok

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(worker, range(workers)))


def probe(run: Run, ids: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Read the whole log once from each serving node at each level; status per read."""
    statuses: dict[str, dict[str, int]] = {}
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
        for nid in ids if ids is not None else serving(run):
            if not run.c.nodes[nid].running or nid in run.paused:
                continue
            for level in LEVELS:
                invoke = time.monotonic()
                op = Op(
                    PROBE_PROCESS, "read", None, invoke, invoke, "fail", consistency=level, node=nid
                )
                status = 0
                try:
                    r = http.get(
                        f"{run.c.url(nid)}/v1/logs/{LOG}/entries",
                        params={"from": 0, "limit": 10000, "timeout": 1, "consistency": level},
                    )
                    status = r.status_code
                    if status == 200:
                        op.outcome = "ok"
                        op.read_values = [e["value"] for e in r.json()["entries"]]
                    else:
                        op.error = f"{status}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    op.error = f"{type(exc).__name__}: {exc}"
                op.complete = time.monotonic()
                run.history.add(op)
                statuses.setdefault(nid, {})[level] = status
    return statuses


# -- the final check --------------------------------------------------------------------------


def fail_stops(c: FaultCluster) -> dict[str, list[str]]:
    """Every FAIL-STOP line each node logged (all its boots): what it refused and why."""
    out: dict[str, list[str]] = {}
    for nid, node in c.nodes.items():
        if node.log_path.exists():
            lines = [
                ln
                for ln in node.log_path.read_text(errors="replace").splitlines()
                if "FAIL-STOP:" in ln
            ]
            if lines:
                out[nid] = lines
    return out


def invariant_fail_stops(c: FaultCluster) -> list[Violation]:
    """I4 for every node that fail-stopped with InvariantBroken: a leader's log conflicts
    with entries that node had committed or applied, so two replicas disagree on the
    committed log (the node saw the divergence and stopped before acting on it)."""
    return [
        Violation("I4", f"{nid} fail-stopped: {line.split('FAIL-STOP: ', 1)[1][:300]}")
        for nid, lines in fail_stops(c).items()
        for line in lines
        if "FAIL-STOP: InvariantBroken" in line
    ]


def state_digest(path: Path) -> tuple[str, str | None]:
    """The offline LMDB digest of one node's state and, when a record fails its
    checksum, what failed (the digest is then taken without verification, so the
    damaged replica still shows in the comparison)."""
    sm = StateMachine(path)
    try:
        try:
            index, digest = sm.digest()
            return f"{index}:{digest}", None
        except CorruptStorage as exc:
            checksum.set_verification(False)
            try:
                index, digest = sm.digest()
            finally:
                checksum.set_verification(True)
            return f"{index}:{digest}", str(exc)[:300]
    finally:
        sm.close()


def final_logs(
    run: Run, ids: list[str]
) -> tuple[dict[str, list[str]], dict[str, str], list[Violation]]:
    """Each node's local log and offline LMDB digest, the leader's first (the reference).

    Every node gets a bounded wait to apply the leader's applied index; one that never
    gets there (a node whose state ran ahead of a log it lost) is read as it is, so its
    disagreement shows in I4 instead of ending the check with a timeout. A node that
    stops while it is read (a fail-stop) is left out and its exit code recorded.
    """
    c = run.c
    leader = agreed_leader(c, ids, 30)
    ids = [n for n in ids if c.nodes[n].running]
    r = httpx.get(
        f"{c.url(leader)}/v1/logs/{LOG}/entries", params={"from": 0, "limit": 1}, timeout=30
    )
    target = int(r.headers["X-Raftlog-Applied-Index"])
    behind: dict[str, int] = {}
    stopped: dict[str, int | None] = {}
    logs: dict[str, list[str]] = {}
    for nid in [leader, *(n for n in ids if n != leader)]:

        def caught_up(n: str = nid) -> bool:
            return not c.nodes[n].running or applied(c, n) >= target

        try:
            wait_until(caught_up, 15, f"{nid} at index {target}")
        except TimeoutError:
            behind[nid] = applied(c, nid)
        try:
            r = httpx.get(
                f"{c.url(nid)}/v1/logs/{LOG}/entries",
                params={"from": 0, "limit": 10000, "consistency": "any"},
                timeout=30,
            )
            r.raise_for_status()
        except httpx.HTTPError:
            if c.nodes[nid].running and nid != leader:
                raise
            stopped[nid] = wait_exit(c, nid, 5.0)
            if nid == leader:
                raise
            continue
        logs[nid] = [e["value"] for e in r.json()["entries"]]
    if behind:
        run.fact("never_reached_leader_index", {"target": target, **behind})
    if stopped:
        run.fact("stopped_during_final_check", stopped)
    for nid in ids:
        c.kill9(nid)
    digests: dict[str, str] = {}
    out: list[Violation] = []
    for nid in logs:
        digests[nid], damage = state_digest(c.nodes[nid].data_dir / "state")
        if damage is not None:
            out.append(Violation("I4", f"{nid}'s state fails its checksums: {damage}"))
    return logs, digests, out


def finish(run: Run) -> list[Violation]:
    """Check every invariant on the nodes still serving (at least a majority).

    A node may have stopped on its own (exit 65 on damaged data, 70 on a broken Raft
    invariant): the checks run on the nodes that serve. A fail-stop on InvariantBroken
    is itself reported (I4): that node met a leader whose log contradicts its own
    committed entries."""
    ids = serving(run)
    run.fact("final_nodes", ids)
    run.fact(
        "exit_codes",
        {n: node.proc.poll() for n, node in run.c.nodes.items() if node.proc is not None},
    )
    out = check_no_damaged_reads(run.history)
    if len(ids) < len(run.c.nodes) // 2 + 1:
        out.append(Violation("I8", f"only {ids} left serving: no majority to check against"))
        out += invariant_fail_stops(run.c)
        return out
    try:
        logs, digests, damaged = final_logs(run, ids)
    except (TimeoutError, httpx.HTTPError, KeyError) as exc:
        out.append(Violation("I8", f"the nodes {ids} did not converge: {exc}"))
        out += invariant_fail_stops(run.c)
        return out
    out += damaged
    out += check_all(run.history, logs, digests)
    out += invariant_fail_stops(run.c)
    acked = {op.value for op in run.history.ops if op.kind == "append" and op.outcome == "ok"}
    run.fact("reference", next(iter(logs)))
    run.fact("acked", len(acked))
    run.fact("acked_missing_per_node", {n: len(acked - set(v)) for n, v in logs.items()})
    run.fact("final_lengths", {n: len(v) for n, v in logs.items()})
    return out


def rejoin(run: Run, nid: str) -> int | None:
    """Restart ``nid`` and wait for a leader among the serving nodes.

    The node must come up, or fail-stop on its own (65 damaged data, 70 a broken Raft
    invariant: the negative controls); its exit code is returned and recorded."""
    c = run.c
    code = start_node(c, nid)
    run.fact(f"{nid}_rejoin_exit", code)
    assert code in (None, EXIT_CORRUPT_DATA, EXIT_FAIL_STOP), (
        f"{nid} did not restart (exit {code}):\n{c.tail(nid)}"
    )
    agreed_leader(c, serving(run), 30)

    def ready(n: str) -> bool:
        try:
            return c.http(n, "GET", "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return not c.nodes[n].running

    # One bounded wait for all: a node that never gets ready (a diverged one, under an
    # UNSAFE switch) is noted, and the final check judges it.
    ids = serving(run)
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: all(ready(n) for n in ids), 10, "every serving node ready")
    not_ready = [n for n in ids if not ready(n)]
    if not_ready:
        run.fact("not_ready_after_rejoin", not_ready)
    return code


@contextlib.contextmanager
def scenario(
    tmp_path: Path,
    name: str,
    env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[Run]:
    started = time.monotonic()
    print(f"\nscenario {name}")
    history = History()
    with fault_cluster(tmp_path, "proxy", settings=settings or {}) as c:
        if env:
            for nid in c.nodes:
                c.node_env.setdefault(nid, {}).update(env)
        run = Run(c, history)
        try:
            yield run
        finally:
            for nid in list(run.paused):
                with contextlib.suppress(ProcessLookupError, AssertionError):
                    c.signal(nid, signal.SIGCONT)
        run.violations = finish(run)
        run.fact("unsafe_switch_logged", unsafe_switch_seen(c))
    history.to_jsonl(tmp_path / f"{name}-history.jsonl")
    summary = history.summary()
    damaged = [v for v in run.violations if v.invariant == "I11"]
    run.fact("damaged_200s", len(damaged))
    print(
        f"{name}: {time.monotonic() - started:.1f} s, appends {summary['append']}, "
        f"reads {summary['read']}, violations {len(run.violations)}"
    )
    kinds: dict[str, int] = {}
    for v in run.violations:
        kinds[v.invariant] = kinds.get(v.invariant, 0) + 1
    run.fact("violations_by_invariant", kinds)
    for v in run.violations[:12]:
        print(f"  VIOLATION {v}")


def pause(run: Run, nid: str) -> None:
    run.c.signal(nid, signal.SIGSTOP)
    run.paused.add(nid)


def resume(run: Run, nid: str) -> None:
    run.c.signal(nid, signal.SIGCONT)
    run.paused.discard(nid)


# -- SF1: a byte flipped in the middle of a follower's raft.journal ---------------------------


def sf1_journal(run: Run, lose_state: bool = False) -> None:
    c = run.c
    c.start_all()
    leader = c.wait_ready(timeout=30)
    f1, f2 = followers(c, leader)
    run.fact("f1", f1)
    pause(run, f2)
    run.fact("acked_with_f2_paused", write(run, leader, "sf1", WRITES))
    c.kill9(f1)
    flip = corrupt.flip_in_journal_record(c.nodes[f1].data_dir / "raft.journal")
    run.fact("flip", str(flip))
    run.facts["record_offset"] = flip.record_offset
    if lose_state:
        # The state (applied through the last write) would betray a journal cut short:
        # the start-up store check refuses a state ahead of the log. Without it only
        # the journal's own rule stands between the flip and a cut log.
        shutil.rmtree(c.nodes[f1].data_dir / "state")
        run.fact("state_removed", True)
    c.kill9(leader)
    resume(run, f2)
    code = start_node(c, f1)
    run.fact("f1_exit", code)
    run.fact(
        "f1_refusal",
        next((ln for ln in boot_log(c, f1).splitlines() if "FAIL-STOP" in ln), ""),
    )
    run.fact("leader_without_old_leader", watch_for_leader(c, [f1, f2], LEADERLESS_WINDOW_S))
    if run.facts["leader_without_old_leader"] is not None:
        new = run.facts["leader_without_old_leader"]
        run.fact("acked_by_new_leader", write(run, new, "sf1-after", 20))
    probe(run)
    rejoin(run, leader)
    probe(run)


@pytest.mark.parametrize("lose_state", [False, True], ids=["state-kept", "state-lost"])
def test_sf1_flipped_byte_mid_journal_refuses_start(tmp_path: Path, lose_state: bool) -> None:
    name = f"SF1-journal-{'state-lost' if lose_state else 'state-kept'}"
    with scenario(tmp_path, name) as run:
        sf1_journal(run, lose_state)
    f = run.facts
    assert f["f1_exit"] == EXIT_CORRUPT_DATA, f
    assert "raft.journal" in f["f1_refusal"], f["f1_refusal"]
    assert f"byte offset {f['record_offset']}" in f["f1_refusal"], (
        f"the refusal does not name the damaged record's offset {f['record_offset']}"
    )
    assert f["leader_without_old_leader"] is None, "a leader was elected without the old one"
    assert f["acked_with_f2_paused"] == WRITES
    assert not run.violations, [str(v) for v in run.violations[:10]]
    assert set(f["final_nodes"]) == set(run.c.nodes) - {f["f1"]}, f["final_nodes"]
    assert f["acked_missing_per_node"] == dict.fromkeys(f["final_nodes"], 0)


def test_nc_sf1_torn_tail_any_alone_meets_the_store_check(tmp_path: Path) -> None:
    """With RAFTLOG_UNSAFE_TORN_TAIL_ANY the journal cuts everything from the flipped
    record, but the start-up store check still refuses the node (exit 65): its state has
    applied the whole log, past the cut journal. A second line of defence, shown here;
    the negative control proper (state-lost) takes it out of the way."""
    with scenario(tmp_path, "NC-SF1-torn-tail-any-state-kept", env=SWITCH_TORN_TAIL_ANY) as run:
        sf1_journal(run)
    f = run.facts
    assert f["unsafe_switch_logged"], "no UNSAFE line: the switch was not honoured"
    assert f["f1_exit"] == EXIT_CORRUPT_DATA, f
    assert "does not fit together" in f["f1_refusal"], f["f1_refusal"]
    assert not run.violations, [str(v) for v in run.violations[:10]]


def test_nc_sf1_torn_tail_anywhere_is_caught(tmp_path: Path) -> None:
    with scenario(tmp_path, "NC-SF1-torn-tail-any", env=SWITCH_TORN_TAIL_ANY) as run:
        sf1_journal(run, lose_state=True)
    assert_caught(run, {"I1", "I2", "I4"})


# -- SF2: a byte flipped inside a stored value in a follower's data.mdb ----------------------


def sf2_lmdb(run: Run) -> None:
    c = run.c
    c.start_all()
    leader = c.wait_ready(timeout=30)
    f1, f2 = followers(c, leader)
    run.fact("f1", f1)
    run.fact("acked_writes", write(run, leader, "sf2", WRITES))
    wait_all_applied(c, list(c.nodes))
    c.kill9(f1)
    needle = value_for("sf2", WRITES // 2).encode()
    flips = corrupt.flip_stored_value(c.nodes[f1].data_dir / "state" / "data.mdb", needle)
    run.fact("flips", [str(f) for f in flips])
    code = start_node(c, f1)
    run.fact("f1_start_exit", code)
    if code is None:
        run.fact("f1_reads", probe(run, [f1]))
        probe(run)
        run.fact("f1_exit_after_reads", wait_exit(c, f1, 5.0))
    c.kill9(leader)  # the loss of another node: F1 and F2 are left
    run.fact("leader_without_old_leader", watch_for_leader(c, [f1, f2], LEADERLESS_WINDOW_S * 2))
    run.fact("reads_without_old_leader", probe(run))
    rejoin(run, leader)
    probe(run)


def test_sf2_flipped_byte_in_lmdb_value_is_never_served(tmp_path: Path) -> None:
    with scenario(tmp_path, "SF2-lmdb-value") as run:
        sf2_lmdb(run)
    f = run.facts
    stopped = f["f1_start_exit"] if f["f1_start_exit"] is not None else f["f1_exit_after_reads"]
    assert not run.violations, [str(v) for v in run.violations[:10]]
    assert stopped == EXIT_CORRUPT_DATA, (
        f"the damaged node did not fail-stop with exit 65 (exit {stopped})"
    )
    assert "checksum mismatch" in " ".join(fail_stops(run.c).get(f["f1"], [])), f
    assert f["leader_without_old_leader"] is None, "one node alone elected itself"
    assert set(f["final_nodes"]) == set(run.c.nodes) - {f["f1"]}, f["final_nodes"]
    assert f["acked_missing_per_node"] == dict.fromkeys(f["final_nodes"], 0)


def test_nc_sf2_skipped_checksums_serve_the_damaged_value(tmp_path: Path) -> None:
    with scenario(tmp_path, "NC-SF2-skip-checksums", env=SWITCH_SKIP_CHECKSUMS) as run:
        sf2_lmdb(run)
    assert_caught(run, {"I11", "I4"})


# -- SF3 / SF4: a damaged snapshot, at rest on the leader or on its way to a follower --------


def snapshot_scenario(run: Run, in_transit: bool) -> None:
    c = run.c
    c.start_all()
    leader = c.wait_ready(timeout=30)
    f1, f2 = followers(c, leader)
    run.facts.update(leader=leader, f1=f1, f2=f2)
    tag = "sf4" if in_transit else "sf3"
    run.fact("acked_before", write(run, leader, tag, 20))
    wait_all_applied(c, list(c.nodes))
    c.kill9(f1)
    f1_index = max(applied(c, n) for n in (leader, f2))
    run.fact("f1_index_when_stopped", f1_index)
    run.fact("acked_while_f1_down", write(run, leader, tag, 180, start=20))
    snap = c.nodes[leader].data_dir / "raft.snapshot"
    building = snap.with_name(snap.name + ".building")
    limit = int(SNAPSHOT_SETTINGS["snapshot_min_entries"])

    def settled() -> bool:
        # A snapshot past F1's index, none being built and too few entries since it for
        # another: the file stays as it is until F1 asks for it.
        if not snap.exists() or building.exists() or snap.stat().st_size == 0:
            return False
        last = corrupt.snapshot_last_index(snap)
        commit = int(own_view(c, leader)["commit_index"])  # type: ignore[index]
        return last > f1_index + 1 and commit - last < limit - 10

    # Concurrent appends share Raft entries (the coalescer), so 180 writes leave the log
    # anywhere between snapshots: top it up one sequential append at a time (one entry
    # each) until a snapshot lands that few entries follow. Bounded in count and time.
    extra = 0
    deadline = time.monotonic() + 30
    while not settled() and extra < 2 * limit and time.monotonic() < deadline:
        write(run, leader, tag, 1, start=200 + extra, workers=1)
        extra += 1
    run.fact("top_up_appends", extra)
    wait_until(settled, 20, f"a settled snapshot on {leader} past index {f1_index}")
    run.fact("snapshot_index", corrupt.snapshot_last_index(snap))
    start, end = corrupt.snapshot_body_span(snap)
    data = snap.read_bytes()
    needle = next(
        value_for(tag, i).encode()
        for i in range(110, 200)
        if data.find(value_for(tag, i).encode(), start, end) >= 0
    )
    run.fact("damaged_value", needle.decode())
    flip: corrupt.Flip | None = None
    corrupter: FrameCorrupter | None = None
    if in_transit:
        # The whole dump goes in one chunk (1 MiB batches): the first frame carries the
        # raft header's magic and the value.
        corrupter = FrameCorrupter(needle, require=corrupt.RAFT_SNAPSHOT_MAGIC, min_bytes=4096)
        name, way = link_between(c, leader, f1)
        c.net.get(name).corrupt(way, corrupter)
        run.fact("corrupted_link", f"{name} {way}")
    else:
        flip = corrupt.flip_in_snapshot_body(snap, needle)
        run.fact("flip", str(flip))
    code = start_node(c, f1)
    run.fact("f1_start_exit", code)
    assert code is None, f"{f1} did not start:\n{c.tail(f1)}"

    def f1_caught_up_or_leader_stopped() -> bool:
        if not c.nodes[leader].running:
            return True
        view = own_view(c, leader)
        return view is not None and applied(c, f1) >= int(view["commit_index"])

    wait_until(f1_caught_up_or_leader_stopped, START_DEADLINE_S, f"{f1} to catch up")
    run.fact("leader_exit", wait_exit(c, leader, 2.0) if not c.nodes[leader].running else None)
    if not c.nodes[leader].running:
        # The leader fail-stopped on its own damaged dump: F2 leads and ships its own.
        run.fact("leader_refusal", " ".join(fail_stops(c).get(leader, [])))
        new = agreed_leader(c, [f1, f2], 30)
        run.fact("new_leader", new)
        target = int(own_view(c, new)["commit_index"])  # type: ignore[index]
        wait_until(lambda: applied(c, f1) >= target, START_DEADLINE_S, f"{f1} at {target}")
    run.fact("f1_applied", applied(c, f1))
    run.fact("f1_reads", probe(run, [f1]))
    probe(run)
    f1_dir = c.nodes[f1].data_dir
    run.fact("f1_refused_file", (f1_dir / "raft.snapshot.refused").exists())
    run.fact(
        "f1_refusals",
        c.nodes[f1]
        .log_path.read_text(errors="replace")
        .count("snapshot received from the leader REFUSED"),
    )
    if corrupter is not None:
        run.fact("frames_corrupted", corrupter.notes)
        c.net.heal_all()
    if flip is not None:  # repaired before the old leader restarts on it
        corrupt.flip_byte(flip.path, flip.offset)
    # The loss of another node: the leader if it still runs, else F2 (F1 is then left
    # alone, with the repaired old leader to come back to it).
    lost = leader if c.nodes[leader].running else f2
    run.fact("lost", lost)
    c.kill9(lost)
    left = [n for n in (leader, f1, f2) if n != lost and c.nodes[n].running]
    run.fact("leader_after_loss", watch_for_leader(c, left, LEADERLESS_WINDOW_S * 2))
    run.fact("reads_after_loss", probe(run))
    if lost != leader:
        rejoin(run, leader)
        probe(run)
    rejoin(run, lost)
    probe(run)


def link_between(c: FaultCluster, sender: str, receiver: str) -> tuple[str, Any]:
    """The proxy link between two nodes and the direction ``sender -> receiver`` on it."""
    if f"{sender}->{receiver}" in c.net.links:
        return f"{sender}->{receiver}", "forward"
    return f"{receiver}->{sender}", "backward"


def test_sf3_damaged_snapshot_file_is_never_installed(tmp_path: Path) -> None:
    with scenario(tmp_path, "SF3-snapshot-file", settings=SNAPSHOT_SETTINGS) as run:
        snapshot_scenario(run, in_transit=False)
    f = run.facts
    assert not run.violations, [str(v) for v in run.violations[:10]]
    assert f["leader_exit"] == EXIT_CORRUPT_DATA, "the leader shipped its damaged dump"
    assert "raft.snapshot" in f["leader_refusal"], f["leader_refusal"]
    assert f["new_leader"] == f["f2"], f
    assert f["f1_refusals"] == 0 and not f["f1_refused_file"], "F1 received the damaged dump"
    assert f["acked_missing_per_node"] == dict.fromkeys(run.c.nodes, 0), f


def test_sf4_snapshot_damaged_in_transit_is_never_installed(tmp_path: Path) -> None:
    with scenario(tmp_path, "SF4-snapshot-shipped", settings=SNAPSHOT_SETTINGS) as run:
        snapshot_scenario(run, in_transit=True)
    f = run.facts
    assert f["frames_corrupted"], "the proxy damaged no snapshot chunk"
    assert not run.violations, [str(v) for v in run.violations[:10]]
    assert f["leader_exit"] is None, f
    assert f["f1_refusals"] >= 1 and f["f1_refused_file"], "F1 did not refuse the damaged dump"
    assert f["leader_after_loss"] is not None, "F1 and F2 could not go on without the leader"
    assert f["acked_missing_per_node"] == dict.fromkeys(run.c.nodes, 0), f


@pytest.mark.parametrize("in_transit", [False, True], ids=["file", "shipped"])
def test_nc_sf3_sf4_skipped_checksums_install_the_damaged_snapshot(
    tmp_path: Path, in_transit: bool
) -> None:
    name = f"NC-SF{4 if in_transit else 3}-skip-checksums"
    with scenario(tmp_path, name, env=SWITCH_SKIP_CHECKSUMS, settings=SNAPSHOT_SETTINGS) as run:
        snapshot_scenario(run, in_transit=in_transit)
    assert_caught(run, {"I11", "I4"})


# -- SF5: a follower's data dir deleted -----------------------------------------------------


def sf5_deleted_data_dir(run: Run) -> None:
    c = run.c
    c.start_all()
    leader = c.wait_ready(timeout=30)
    f1, f2 = followers(c, leader)
    run.facts.update(leader=leader, f1=f1, f2=f2)
    pause(run, f2)
    run.fact("acked_with_f2_paused", write(run, leader, "sf5", WRITES))
    c.kill9(f1)
    run.fact("files_deleted", corrupt.delete_data_dir(c.nodes[f1].data_dir))
    # F1 must not catch up from the leader before the leader is lost (that is the window
    # the bug needs; cutting the link makes it certain instead of a race).
    c.net.partition_pair(leader, f1)
    run.fact("f1_start_exit", start_node(c, f1))
    c.kill9(leader)
    c.net.heal_all()
    resume(run, f2)
    new = watch_for_leader(c, [f1, f2], LEADERLESS_WINDOW_S)
    run.fact("leader_without_old_leader", new)
    if new is not None:
        run.fact("acked_by_new_leader", write(run, new, "sf5-after", 20))
    probe(run)
    rejoin(run, leader)
    probe(run)
    if c.nodes[f1].running:
        # F1 becomes a voter once it has caught up with the leader (voting.py).
        marker = f"node {f1} now votes"
        with contextlib.suppress(TimeoutError):
            if node_json(run, f1).get("voter") is not True:  # else it voted from the start
                wait_until(lambda: marker in boot_log(c, f1), 15, f"{f1} to vote")
        run.fact(
            "f1_now_votes",
            next(
                (ln.split(" INFO ", 1)[-1] for ln in boot_log(c, f1).splitlines() if marker in ln),
                "",
            ),
        )
        r = c.http(f1, "GET", "/v1/cluster", headers={"X-Raftlog-No-Forward": "1"})
        me = next(n for n in r.json()["nodes"] if n["id"] == f1)
        run.fact("f1_status_voting", me.get("voting", "(no voting field in /v1/cluster)"))


def node_json(run: Run, nid: str) -> dict[str, Any]:
    path = run.c.nodes[nid].data_dir / "node.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_sf5_deleted_data_dir_elects_no_leader_lacking_writes(tmp_path: Path) -> None:
    with scenario(tmp_path, "SF5-deleted-data-dir") as run:
        sf5_deleted_data_dir(run)
    f = run.facts
    assert f["acked_with_f2_paused"] == WRITES
    assert f["f1_start_exit"] is None, "F1 did not start on its empty data dir"
    assert f["leader_without_old_leader"] is None, (
        "F1 (empty data dir) and the lagging F2 elected a leader"
    )
    assert not run.violations, [str(v) for v in run.violations[:10]]
    assert f["acked_missing_per_node"] == dict.fromkeys(run.c.nodes, 0), f
    assert "caught up" in f["f1_now_votes"], f"F1 never became a voter: {f}"
    assert node_json(run, f["f1"]).get("voter") is True, node_json(run, f["f1"])


def test_nc_sf5_vote_with_empty_data_is_caught(tmp_path: Path) -> None:
    with scenario(tmp_path, "NC-SF5-vote-with-empty-data", env=SWITCH_VOTE_EMPTY) as run:
        sf5_deleted_data_dir(run)
    assert_caught(run, {"I1", "I2", "I4"})


# -- negative controls ----------------------------------------------------------------------


def assert_caught(run: Run, invariants: set[str]) -> None:
    found = {v.invariant for v in run.violations}
    if not found & invariants and not run.facts.get("unsafe_switch_logged"):
        pytest.skip("this build does not know the UNSAFE switch (no UNSAFE line logged)")
    assert found & invariants, (
        f"the suite missed it: expected one of {sorted(invariants)}, got {sorted(found)}"
    )
