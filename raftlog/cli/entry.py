"""The ``raftlog`` command: serve, demo, config, check-config, and client verbs over HTTP.

Exit codes of ``raftlog config``: 0 done; 1 the file could not be written or read (or
exists, without ``--force``); 2 usage (a node count that is not odd and within 1..7).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftlog import __version__
from raftlog.config import load_config, parse_setting_text, setting_names
from raftlog.errors import ConfigError, UnsupportedFormat

__all__ = [
    "build_parser",
    "cmd_check_config",
    "cmd_config",
    "cmd_demo",
    "cmd_serve",
    "main",
]


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
    from raftlog.cli.serve import EXIT_CONFIG, serve

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


def _program() -> list[str]:
    """How this process was started, as words a shell can run again: ``raftlog`` as typed
    (``.venv/bin/raftlog``, say), else ``python -m raftlog`` with this interpreter."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "raftlog":
        return [argv0]
    return [sys.executable, "-m", "raftlog"]


def _write_private(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it holds the secret);
    refuse to replace an existing file unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _config_urls(path: str) -> int:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        first = raw["cluster"]["nodes"][0]["id"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, IndexError, TypeError) as exc:
        print(f"raftlog config: cannot read the nodes of {path}: {exc}", file=sys.stderr)
        return 1
    try:
        config = load_config(path, node_id=str(first), data_dir=".", environ={})
    except ConfigError as exc:
        print(f"raftlog config: {exc}", file=sys.stderr)
        return 1
    scheme = "https" if config.node.tls_cert_file else "http"
    print(",".join(f"{scheme}://{n.http}" for n in config.nodes))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``--local N``: generate a cluster file for N nodes on 127.0.0.1 and say how to
    start them; ``--urls FILE``: print FILE's HTTP URLs, comma-separated (RAFTLOG_URL)."""
    from raftlog.cli.local_config import check_node_count, generate_local_config, serve_command

    if args.urls is not None:
        if args.out or args.force or args.data_root:
            print("raftlog config: --out, --force, --data-root go with --local", file=sys.stderr)
            return 2
        return _config_urls(args.urls)
    try:
        check_node_count(args.local)
    except ConfigError as exc:
        print(f"raftlog config: --local: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
    config_path = str(out) if out else "cluster.toml"
    if args.data_root:
        data_root = Path(args.data_root)
    else:
        data_root = (out.parent if out else Path(".")) / "raftlog-data"
    program = _program()
    ids = [f"n{i}" for i in range(1, args.local + 1)]
    commands = [serve_command(program, config_path, nid, data_root / nid) for nid in ids]
    header = [
        f"A local {args.local}-node raftlog cluster, generated by `raftlog config --local "
        f"{args.local}`.",
        "Ports were free when it was generated. Start each node (one terminal each):",
        *(f"  {c}" for c in commands),
    ]
    if out is None:
        header.insert(1, f"Save it as {config_path}.")
    cluster = generate_local_config(args.local, name=args.name, header=header)
    if out is None:
        sys.stdout.write(cluster.toml)
        return 0
    try:
        _write_private(out, cluster.toml, force=args.force)
    except FileExistsError:
        print(f"raftlog config: {out} exists; pass --force to replace it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"raftlog config: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"wrote {out}: cluster {cluster.name!r}, {args.local} node(s) on 127.0.0.1, "
        "a new cluster_secret (the file is readable by you only)"
    )
    print("start each node in its own terminal (or end each line with & for the background):")
    for c in commands:
        print(f"  {c}")
    print("then reach them at:")
    for node, url in zip(cluster.nodes, cluster.urls, strict=True):
        print(f"  {node.id}  {url}")
    print(f"  export RAFTLOG_URL={','.join(cluster.urls)}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from raftlog.cli.check_data import check_data_dir, render

    report = check_data_dir(Path(args.dir))
    print(render(report))
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from raftlog.cli.demo import run_demo

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

    p = sub.add_parser(
        "config",
        help="generate a cluster file for N local nodes (or print a file's URLs)",
        description="--local N prints a complete cluster TOML for N nodes (odd, 1 to 7) on "
        "127.0.0.1 with free ports and a generated cluster_secret, or writes it with --out "
        "and prints the raftlog serve command of each node. --urls FILE prints FILE's HTTP "
        "URLs, comma-separated (the RAFTLOG_URL format).",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--local", type=int, metavar="N", help="number of nodes (odd, 1 to 7)")
    what.add_argument("--urls", metavar="FILE", help="print the HTTP URLs of FILE's nodes")
    p.add_argument("--out", metavar="FILE", help="write the TOML here instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="the serve commands use DIR/<id> as data dirs (default: raftlog-data next to "
        "--out, or in the current directory)",
    )
    p.add_argument("--name", default="local", help="cluster name (default local)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "check-data",
        help="scan a stopped node's data dir and report every problem (exit 1 if any)",
        description="Checks node.json, raft.meta, raft.journal, the LMDB state and "
        "raft.snapshot with the rules the node applies at start-up, and reports each "
        "problem with its file and location. Never modifies DIR; run it on a stopped "
        "node. Exit 0: no problem; 1: problems found.",
    )
    p.add_argument("dir", metavar="DIR", help="the node's data dir")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("demo", help="start a local 3-node cluster and tour it")
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.add_argument("--dir", help="where to put the nodes' data (default: a new temp dir)")
    p.add_argument(
        "--slow-timing",
        action="store_true",
        help="use the production timing defaults instead of fast demo timing",
    )
    p.set_defaults(func=cmd_demo)

    from raftlog.cli.bench import register as register_bench
    from raftlog.cli.client_verbs import register

    register_bench(sub)
    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
