"""``raftlog bench``: raftlog and etcd side by side (the engine is ``raftlog.bench``).

This module only parses the verb's arguments; ``raftlog.bench`` is imported when the
verb runs, so ``raftlog --help`` loads none of it. Exit codes: those of
``raftlog.bench.runner.run_bench``, and 2 for bad arguments (argparse).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["cmd_bench", "register"]

# --quick: correctness, not speed (CI); explicit flags still win.
QUICK_REPEAT, QUICK_DURATION_S, QUICK_FAILOVERS = 1, 2.0, 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 1.0 <= value <= 300.0:
        raise argparse.ArgumentTypeError(f"must be between 1 and 300 seconds (got {value:g})")
    return value


def _stages(text: str) -> tuple[int, ...]:
    from raftlog.bench.growth import parse_stages

    try:
        stages = parse_stages(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from exc
    if not stages or stages[0] < 1 or list(stages) != sorted(set(stages)):
        raise argparse.ArgumentTypeError(f"must be increasing positive counts (got {text!r})")
    return stages


def _growth(args: argparse.Namespace) -> int:
    from raftlog.bench.growth import GrowthOptions, run_growth

    return run_growth(
        GrowthOptions(
            stages=args.growth_entries or (1_000_000, 10_000_000),
            catchup=args.growth_catchup,
            read_s=args.duration or 5.0,
            json_path=Path(args.json) if args.json else None,
        )
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from raftlog.bench.runner import BenchOptions, run_bench

    if args.growth:
        return _growth(args)

    quick = args.quick
    options = BenchOptions(
        repeat=args.repeat or (QUICK_REPEAT if quick else 3),
        duration_s=args.duration or (QUICK_DURATION_S if quick else 5.0),
        failovers=args.failovers or (QUICK_FAILOVERS if quick else 5),
        warmup_s=0.0 if quick else 1.0,
        etcd=not args.no_etcd,
        clients=not args.no_clients,
        json_path=Path(args.json) if args.json else None,
        plots_dir=Path(args.plots) if args.plots else None,
        quick=quick,
    )
    return run_bench(options)


def register(sub: Any) -> None:
    """Add the ``bench`` verb to the ``raftlog`` subcommands."""
    p = sub.add_parser(
        "bench",
        help="benchmark a local raftlog cluster beside a local etcd cluster (wrk)",
        description="Starts a local 3-node raftlog cluster (production timing, fsync) and, "
        "when etcd is installed, a local 3-member etcd cluster; drives both with the same "
        "wrk scripts (100-byte values), interleaved, each workload repeated; prints "
        "min/median/max figures and ratios against the targets of issue 11. Stops what it "
        "started and removes its temp dir on every exit, Ctrl-C included. Needs wrk "
        "(Debian package wrk); etcd from Debian's etcd-server; plots need matplotlib "
        "(pip install 'raftlog[bench]').",
    )
    p.add_argument("--repeat", type=_positive_int, metavar="N", help="repetitions (default 3)")
    p.add_argument("--duration", type=_seconds, metavar="S", help="seconds per point (default 5)")
    p.add_argument(
        "--failovers", type=_positive_int, metavar="N", help="kill -9 trials per system (default 5)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: 2 s points, 1 repetition, 1 failover (correctness, not speed)",
    )
    p.add_argument("--json", metavar="PATH", help="write every raw figure as JSON to PATH")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots to DIR (needs matplotlib)")
    p.add_argument("--no-etcd", action="store_true", help="benchmark raftlog alone")
    p.add_argument(
        "--no-clients", action="store_true", help="skip the Python client (AsyncClient/Client) rows"
    )
    p.add_argument(
        "--growth",
        action="store_true",
        help="instead: cost as the work grows (RSS, read latency and data dir per stage, "
        "a follower's catch-up, a snapshot install against a raw copy); --json and "
        "--duration (seconds per read point) apply",
    )
    p.add_argument(
        "--growth-entries",
        type=_stages,
        metavar="N,N",
        help="stored entries per stage, increasing (default 1M,10M; k and M suffixes)",
    )
    p.add_argument(
        "--growth-catchup",
        type=_positive_int,
        metavar="N",
        help="entries a stopped follower misses (default: the first stage, at most 1M)",
    )
    p.set_defaults(func=cmd_bench)
