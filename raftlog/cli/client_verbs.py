"""Client verbs of the ``raftlog`` command: ``status``, ``append``, ``read``, ``tail``.

Thin verbs over ``raftlog.client.Client``; ``raftlog.cli`` adds them with ``register``.
Every verb takes ``--url`` (repeatable, or comma-separated; default ``$RAFTLOG_URL``, else
http://127.0.0.1:8001), ``--timeout``, ``--retries`` and ``--token`` (default
``$RAFTLOG_TOKEN``).

Exit codes: 0 ok; 1 an error (answered by the server, or no node reachable), printed as
``error <code>: <message>``; 2 usage; 3 a write whose outcome is unknown (it may or may not
have been applied).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

import httpx

from raftlog.client import (
    Ack,
    AppendResult,
    Client,
    ClusterStatus,
    Consistency,
    Entry,
    OutcomeUnknown,
    RaftlogClientError,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_OUTCOME_UNKNOWN",
    "EXIT_USAGE",
    "cmd_append",
    "cmd_read",
    "cmd_status",
    "cmd_tail",
    "make_client",
    "parse_value",
    "register",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_OUTCOME_UNKNOWN = 3

ENV_TOKEN = "RAFTLOG_TOKEN"
OUTCOME_UNKNOWN_MESSAGE = "outcome unknown: the write may or may not have been applied"

# Tests put an httpx.MockTransport here; make_client hands it to every Client it builds.
_transport_for_tests: httpx.BaseTransport | None = None


def make_client(args: argparse.Namespace) -> Client:
    """The client a verb uses, from ``--url``, ``--timeout``, ``--retries``, ``--token``."""
    urls = [u for item in (args.url or []) for u in item.split(",") if u.strip()] or None
    token = args.token or os.environ.get(ENV_TOKEN) or None
    return Client(
        urls,
        timeout=args.timeout,
        retries=args.retries,
        token=token,
        transport=_transport_for_tests,
    )


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses as JSON, else the text itself.

    ``NaN`` and ``Infinity`` are not JSON here: they stay strings."""

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError:
        return text


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _run(args: argparse.Namespace, body: Callable[[Client, argparse.Namespace], int]) -> int:
    """Run a verb with a client, turning client errors into messages and exit codes."""
    try:
        client = make_client(args)
    except ValueError as exc:
        print(f"raftlog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            return body(client, args)
    except OutcomeUnknown as exc:
        print(OUTCOME_UNKNOWN_MESSAGE, file=sys.stderr)
        print(f"  ({exc.code}: {exc.message})", file=sys.stderr)
        return EXIT_OUTCOME_UNKNOWN
    except RaftlogClientError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR


# -- status ----------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_status(status: ClusterStatus) -> str:
    """The cluster table printed by ``raftlog status``."""
    lines = [
        f"cluster {status.cluster} ({status.cluster_id or 'no id yet'})",
        f"leader {status.leader or 'none'}  term {status.term}  commit index {status.commit_index}",
        "",
    ]
    rows = [("NODE", "ROLE", "APPLIED", "MATCH", "LAG", "LAST CONTACT", "REACHABLE", "HTTP")]
    for n in status.nodes:
        contact = "-" if n.last_contact_ms is None else f"{n.last_contact_ms} ms"
        rows.append(
            (
                n.id,
                n.role,
                _cell(n.applied_index),
                _cell(n.match_index),
                _cell(n.lag),
                contact,
                _cell(n.reachable),
                n.http,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _status(client: Client, args: argparse.Namespace) -> int:
    status = client.cluster()
    if args.json:
        print(json.dumps(dict(status.raw), indent=2, ensure_ascii=False))
    else:
        print(format_status(status))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    return _run(args, _status)


# -- append ----------------------------------------------------------------------------------


def _append(client: Client, args: argparse.Namespace) -> int:
    values = [parse_value(v) for v in args.values]
    ack = cast(Ack, args.ack)
    if args.idempotency_key is not None and len(values) > 1 and not args.batch:
        print("raftlog append: --idempotency-key needs one VALUE or --batch", file=sys.stderr)
        return EXIT_USAGE
    if args.batch:
        result = client.append_batch(
            args.log,
            [(value, args.key) for value in values],
            ack=ack,
            expected_offset=args.expected_offset,
            idempotency_key=args.idempotency_key,
        )
        print(_dumps(result.to_dict()), flush=True)
        return EXIT_OK
    expected = args.expected_offset
    for value in values:
        one = client.append(
            args.log,
            value,
            key=args.key,
            ack=ack,
            expected_offset=expected,
            idempotency_key=args.idempotency_key,
        )
        print(_dumps(one.to_dict()), flush=True)
        if expected is not None and isinstance(one, AppendResult):
            expected = one.last_offset + 1
    return EXIT_OK


def cmd_append(args: argparse.Namespace) -> int:
    return _run(args, _append)


# -- read and tail ---------------------------------------------------------------------------


def _print_entry(entry: Entry) -> None:
    print(_dumps(entry.to_dict()), flush=True)


def _read(client: Client, args: argparse.Namespace) -> int:
    page = client.read(
        args.log,
        args.start,
        args.limit,
        consistency=cast(Consistency, args.consistency),
        min_index=args.min_index,
        max_lag=args.max_lag,
        max_staleness_ms=args.max_staleness_ms,
    )
    for entry in page.entries:
        _print_entry(entry)
    return EXIT_OK


def cmd_read(args: argparse.Namespace) -> int:
    return _run(args, _read)


def _tail(client: Client, args: argparse.Namespace) -> int:
    entries = client.tail(
        args.log,
        args.start,
        consistency=cast(Consistency, args.consistency),
        poll_wait=args.wait,
        max_entries=args.max_entries,
    )
    try:
        for entry in entries:
            _print_entry(entry)
    except KeyboardInterrupt:  # the normal way to stop following
        return EXIT_OK
    return EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    return _run(args, _tail)


# -- the parsers -----------------------------------------------------------------------------


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _wait_seconds(text: str) -> float:
    value = _positive_float(text)
    if value > 60:
        raise argparse.ArgumentTypeError("must be at most 60 seconds")
    return value


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="a node's URL (repeatable, or comma-separated); default $RAFTLOG_URL, "
        "else http://127.0.0.1:8001",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="server-side timeout of each request in seconds (default 10)",
    )
    p.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        metavar="N",
        help="rounds of retries after definite failures (default 3)",
    )
    p.add_argument("--token", metavar="TOKEN", help="bearer token (default $RAFTLOG_TOKEN)")


def _add_read_args(p: argparse.ArgumentParser, default_consistency: str) -> None:
    p.add_argument("log", metavar="LOG", help="the log's name")
    p.add_argument(
        "--from",
        dest="start",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="first offset (default 0)",
    )
    p.add_argument(
        "--consistency",
        choices=("quorum", "leader", "any"),
        default=default_consistency,
        help=f"read consistency (default {default_consistency})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``, ``append``, ``read`` and ``tail`` to a ``raftlog`` parser."""
    p = subparsers.add_parser("status", help="show the cluster: leader, term, every node")
    _add_connection_args(p)
    p.add_argument("--json", action="store_true", help="print GET /v1/cluster as JSON")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser(
        "append",
        help="append values to a log",
        description="Append each VALUE (JSON when it parses as JSON, else a string) in "
        "order, or all of them as one atomic batch with --batch; prints each result as JSON. "
        "Exit 3 when a write's outcome is unknown.",
    )
    _add_connection_args(p)
    p.add_argument("log", metavar="LOG", help="the log's name")
    p.add_argument("values", metavar="VALUE", nargs="+", help="a JSON value or a string")
    p.add_argument("--key", help="the entries' key (an opaque label)")
    p.add_argument(
        "--ack", choices=("quorum", "all", "leader"), default="quorum", help="default quorum"
    )
    p.add_argument(
        "--expected-offset",
        type=_non_negative_int,
        metavar="N",
        help="append only if the log's next offset is N (advances by one per VALUE)",
    )
    p.add_argument("--batch", action="store_true", help="send all values as one atomic batch")
    p.add_argument("--idempotency-key", metavar="KEY", help="Idempotency-Key header")
    p.set_defaults(func=cmd_append)

    p = subparsers.add_parser("read", help="print a range of entries, one JSON per line")
    _add_connection_args(p)
    _add_read_args(p, "quorum")
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=100,
        metavar="M",
        help="at most M entries (default 100)",
    )
    p.add_argument("--min-index", type=_non_negative_int, metavar="I", help="read-your-writes")
    p.add_argument("--max-lag", type=_non_negative_int, metavar="K", help="with --consistency any")
    p.add_argument(
        "--max-staleness-ms", type=_non_negative_int, metavar="T", help="with --consistency any"
    )
    p.set_defaults(func=cmd_read)

    p = subparsers.add_parser(
        "tail", help="follow a log, printing entries as they are committed (Ctrl-C stops)"
    )
    _add_connection_args(p)
    _add_read_args(p, "any")
    p.add_argument("--max-entries", type=_positive_int, metavar="N", help="stop after N entries")
    p.add_argument(
        "--wait",
        type=_wait_seconds,
        default=30.0,
        metavar="S",
        help="long-poll wait per request in seconds (default 30, at most 60)",
    )
    p.set_defaults(func=cmd_tail)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb alone (``raftlog.cli`` is the real entry point)."""
    parser = argparse.ArgumentParser(prog="raftlog")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args))
