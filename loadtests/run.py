"""Run the Locust load test headless, then check that nothing acknowledged was lost.

    python loadtests/run.py [--url http://HOST:PORT ...] --users 8 --spawn-rate 4 \\
        --time 20s --profile mixed --out DIR

Without ``--url`` it starts a local 3-node cluster (``loadtests.local_cluster``) and
stops it at the end. Locust runs as a child process writing ``DIR/locust_*.csv``,
``DIR/report.html`` and ``DIR/locust.log``; each append is recorded under
``DIR/records/``. Afterwards every log the run wrote is read back with
``consistency=quorum`` and judged by the fault suite's checkers (``loadtests.presence``).
The summary is printed and written to ``DIR/summary.json``.

Exit status: 0 when Locust reported no failure and no exception and the presence check
passed; 1 otherwise; 2 for bad arguments; 128 + N after signal N (SIGINT, SIGTERM,
SIGHUP). On every exit it stops what it started (the Locust child and the local
cluster's nodes, by process group) and removes the local cluster's data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `python loadtests/run.py` from anywhere
    sys.path.insert(0, str(_ROOT))

from loadtests.local_cluster import LocalCluster  # noqa: E402
from loadtests.presence import ReadBack, Reader, check_presence  # noqa: E402
from loadtests.profiles import PROFILES  # noqa: E402
from loadtests.records import load_records  # noqa: E402
from loadtests.steps import SHAPE_ENV, StepPlan  # noqa: E402
from loadtests.summary import (  # noqa: E402
    RunSummary,
    parse_timespan,
    read_failures,
    read_stats_json,
)
from raftlog.client import Client  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CSV_PREFIX = "locust"
READ_PAGE = 10_000
LOCUST_GRACE_S = 60.0  # beyond --time + stop timeout before the Locust child is killed
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _install_signals() -> None:
    """The first of the signals raises Interrupted in the main thread; later ones are
    ignored, so the cleanup runs to its end (it kills after bounded waits)."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    for sig in _SIGNALS:
        signal.signal(sig, handle)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtests/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--url",
        action="append",
        default=[],
        help="a node URL (repeatable, or comma-separated); none: start a local 3-node cluster",
    )
    p.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    p.add_argument("--spawn-rate", type=float, default=4.0, help="users started per second")
    p.add_argument("--time", default="20s", help="run time, e.g. 20s, 5m (default 20s)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="mixed")
    p.add_argument(
        "--shape",
        choices=("constant", "step"),
        default="constant",
        help="step: add --step-users every --step-seconds up to --users",
    )
    p.add_argument("--step-users", type=int, default=4)
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument("--logs", type=int, default=4, help="logs written (default 4)")
    p.add_argument("--tail-wait", type=float, default=2.0, help="tail long-poll wait, s")
    p.add_argument("--redirect", action="store_true", help="writers follow 307s themselves")
    p.add_argument("--out", required=True, help="directory for reports (created)")
    args = p.parse_args(argv)
    try:
        args.seconds = parse_timespan(args.time)
    except ValueError as exc:
        p.error(str(exc))
    args.urls = [u.strip().rstrip("/") for arg in args.url for u in arg.split(",") if u.strip()]
    if min(args.users, args.logs, args.step_users) < 1 or args.spawn_rate <= 0:
        p.error("--users, --logs and --step-users must be at least 1, --spawn-rate positive")
    if not 0 <= args.tail_wait <= 60 or args.step_seconds <= 0:
        p.error("--tail-wait must be 0 to 60 (the API's limit), --step-seconds positive")
    return args


def locust_command(args: argparse.Namespace, urls: list[str], run_id: str, out: Path) -> list[str]:
    stop_timeout = int(args.tail_wait) + 5  # users finish the request they are in
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--csv", str(out / CSV_PREFIX), "--html", str(out / "report.html"),
        "--json-file", str(out / CSV_PREFIX), "--logfile", str(out / "locust.log"),
        "--stop-timeout", str(stop_timeout),
        "--host", urls[0], "--raftlog-url", ",".join(urls), "--raftlog-run-id", run_id,
        "--raftlog-record", str(out / "records"), "--raftlog-logs", str(args.logs),
        "--raftlog-tail-wait", f"{args.tail_wait:g}",
    ]  # fmt: skip
    if args.redirect:
        cmd.append("--raftlog-redirect")
    if args.shape == "constant":
        cmd += ["-u", str(args.users), "-r", f"{args.spawn_rate:g}", "-t", f"{args.seconds}s"]
    return [*cmd, *PROFILES[args.profile]]


def locust_env(args: argparse.Namespace) -> dict[str, str]:
    # This run's shape is set here only: a step plan left in the caller's environment
    # must not change it.
    env = {
        k: v for k, v in os.environ.items() if k != SHAPE_ENV and not k.startswith("RAFTLOG_STEP_")
    }
    if args.shape == "step":
        env[SHAPE_ENV] = "step"
        env["RAFTLOG_STEP_USERS"] = str(args.step_users)
        env["RAFTLOG_STEP_SECONDS"] = f"{args.step_seconds:g}"
        env["RAFTLOG_STEP_MAX_USERS"] = str(args.users)
        env["RAFTLOG_STEP_TIME_S"] = str(args.seconds)
        StepPlan.from_environ(env)  # fails here, not in the child, on a bad value
    return env


def run_locust(cmd: list[str], env: dict[str, str], out: Path, budget_s: float) -> int | None:
    """Run the Locust child (its own process group) to its end; kill it after
    ``budget_s``. Its output goes to ``out/locust.out``. None: it had to be killed."""
    with open(out / "locust.out", "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            return proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def quorum_reader(client: Client) -> Reader:
    """Reads a whole log with ``consistency=quorum``, page by page (``next_offset``)."""

    def read(log: str) -> ReadBack:
        entries: list[tuple[int, Any]] = []
        start = 0
        while True:
            page = client.read(log, start, READ_PAGE, consistency="quorum")
            if not page.entries:
                return entries
            entries += [(e.offset, e.value) for e in page.entries]
            start = page.next_offset

    return read


def run(args: argparse.Namespace, out: Path, cleanup: list[LocalCluster]) -> RunSummary:
    urls = args.urls
    if not urls:
        data_root = Path(tempfile.mkdtemp(prefix="raftlog-load-"))
        cluster = LocalCluster(data_root, out / "nodes")
        cleanup.append(cluster)
        print(f"starting a local 3-node cluster (data in {data_root}, logs in {out / 'nodes'})")
        urls = cluster.start()
        print(f"  ready: {', '.join(urls)}")
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    records = out / "records"
    for old in records.glob("ops-*.jsonl"):  # a reused --out: judge this run only
        old.unlink()
    cmd = locust_command(args, urls, run_id, out)
    print(f"locust: profile {args.profile}, shape {args.shape}, {args.users} users, "
          f"{args.seconds} s, run {run_id}")  # fmt: skip
    budget = args.seconds + args.tail_wait + 5 + LOCUST_GRACE_S
    code = run_locust(cmd, locust_env(args), out, budget)
    problems = [] if code is not None else [f"locust did not end within {budget:g} s: killed"]
    # The final figures (the CSV files are rewritten each second and can miss the last).
    final = out / f"{CSV_PREFIX}.json"
    stats = read_stats_json(final) if final.exists() else []
    if not stats:
        problems.append(f"no statistics from locust (see {out / 'locust.out'})")
    with Client(urls, timeout=10.0, retries=5) as client:
        presence = check_presence(load_records(records), quorum_reader(client))
    return RunSummary(
        urls=urls,
        run_id=run_id,
        profile=args.profile,
        locust_exit_code=code,
        stats=stats,
        failures=read_failures(out / f"{CSV_PREFIX}_failures.csv"),
        exceptions=read_failures(out / f"{CSV_PREFIX}_exceptions.csv"),
        presence=presence.to_dict(),
        problems=problems,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _install_signals()
    cleanup: list[LocalCluster] = []
    try:
        summary = run(args, out, cleanup)
        (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        print("\n".join(summary.lines()))
        print(f"reports: {out / 'report.html'}, {out / CSV_PREFIX}_*.csv, {out / 'summary.json'}")
        return 0 if summary.ok else 1
    except Interrupted as exc:
        print(f"interrupted by {exc}", file=sys.stderr)
        return 128 + exc.signum
    except RuntimeError as exc:  # the local cluster did not come up
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for cluster in cleanup:
            codes = cluster.stop()
            shutil.rmtree(cluster.data_root, ignore_errors=True)
            print(f"stopped the local cluster (exit codes {codes})")


if __name__ == "__main__":
    sys.exit(main())
