"""The ``raftlog`` command: serve, demo, check-config, and client verbs over HTTP."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from raftlog import __version__
from raftlog.config import load_config, parse_setting_text, setting_names
from raftlog.errors import ConfigError, UnsupportedFormat


def _add_node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="cluster TOML file (same on every node)")
    p.add_argument("--id", help="this node's id (or RAFTLOG_ID)")
    p.add_argument("--data-dir", help="this node's data directory (or RAFTLOG_DATA_DIR)")
    group = p.add_argument_group("per-node overrides of [node] settings (flag > env > file)")
    for name in setting_names():
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"setting_{name}", metavar="V")


def _load(args: argparse.Namespace) -> Any:
    flags = {}
    for name in setting_names():
        text = getattr(args, f"setting_{name}", None)
        if text is not None:
            flags[name] = parse_setting_text(name, text, f"--{name.replace('_', '-')}")
    return load_config(args.config, node_id=args.id, data_dir=args.data_dir, flags=flags)


def cmd_serve(args: argparse.Namespace) -> int:
    from raftlog.serve import EXIT_CONFIG, serve

    try:
        config = _load(args)
        return serve(config)
    except (ConfigError, UnsupportedFormat) as exc:
        print(f"raftlog serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 1
    from dataclasses import asdict

    settings = asdict(config.node)
    if settings.get("cluster_secret"):
        settings["cluster_secret"] = "***"
    for key in ("api_tokens", "api_read_tokens", "api_admin_tokens"):
        settings[key] = ["***" for _ in settings[key]]
    print(
        json.dumps(
            {
                "cluster": config.cluster_name,
                "node_id": config.node_id,
                "data_dir": str(config.data_dir),
                "raft_bind": config.raft_bind,
                "http_bind": config.http_bind,
                "nodes": [asdict(n) for n in config.nodes],
                "node": settings,
            },
            indent=2,
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from raftlog.demo import run_demo

    return run_demo(keep=args.keep, base_dir=args.dir, fast=not args.slow_timing)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlog", description="A Raft-replicated log service (PySyncObj + LMDB)."
    )
    parser.add_argument("--version", action="version", version=f"raftlog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run one node in the foreground")
    _add_node_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config and print the effective settings")
    _add_node_args(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="start a local 3-node cluster and tour it")
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.add_argument("--dir", help="where to put the nodes' data (default: a new temp dir)")
    p.add_argument(
        "--slow-timing",
        action="store_true",
        help="use the production timing defaults instead of fast demo timing",
    )
    p.set_defaults(func=cmd_demo)

    from raftlog.cli_client import register

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
