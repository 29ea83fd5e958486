"""What Locust loads: ``locust -f loadtests/locustfile.py --raftlog-url URL[,URL...]``.

User classes (``loadtests.users``): ``WriterAckLeader``, ``WriterAckQuorum``,
``WriterAckAll``, ``ReaderLeader``, ``ReaderQuorum``, ``ReaderAny``, ``TailFollower``;
name some on the command line to run only those (``loadtests.profiles`` has named sets).
``RAFTLOG_LOAD_SHAPE=step`` adds the step-load shape (``loadtests.shapes``).
Options (also as environment variables) are added below; see loadtests/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Locust imports this file by path: make the checkout's root importable for `loadtests.*`.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from locust import events  # noqa: E402

from loadtests.shapes import StepLoadShape  # noqa: E402
from loadtests.users import (  # noqa: E402
    ReaderAny,
    ReaderLeader,
    ReaderQuorum,
    TailFollower,
    WriterAckAll,
    WriterAckLeader,
    WriterAckQuorum,
)

__all__ = [
    "ReaderAny",
    "ReaderLeader",
    "ReaderQuorum",
    "StepLoadShape",
    "TailFollower",
    "WriterAckAll",
    "WriterAckLeader",
    "WriterAckQuorum",
]


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def add_arguments(parser: Any, **_kwargs: Any) -> None:
    group = parser.add_argument_group("raftlog")
    group.add_argument(
        "--raftlog-url",
        env_var="RAFTLOG_URL",
        default="",
        help="the cluster's node URLs, comma-separated; each request goes to one at random "
        "(default: --host)",
    )
    group.add_argument(
        "--raftlog-run-id",
        env_var="RAFTLOG_LOAD_RUN_ID",
        default="",
        help="names this run's logs (load-<run id>-<i>) and values (default: time + random)",
    )
    group.add_argument(
        "--raftlog-logs", env_var="RAFTLOG_LOAD_LOGS", type=int, default=4, help="logs written"
    )
    group.add_argument(
        "--raftlog-record",
        env_var="RAFTLOG_LOAD_RECORD",
        default="",
        help="directory for the record of every append (for run.py's presence check)",
    )
    group.add_argument(
        "--raftlog-pad-bytes",
        env_var="RAFTLOG_LOAD_PAD_BYTES",
        type=int,
        default=64,
        help="padding in each value (64: about 100-byte values)",
    )
    group.add_argument(
        "--raftlog-timeout",
        env_var="RAFTLOG_LOAD_TIMEOUT",
        type=float,
        default=10.0,
        help="the server-side timeout sent with each request, seconds",
    )
    group.add_argument(
        "--raftlog-tail-wait",
        env_var="RAFTLOG_LOAD_TAIL_WAIT",
        type=float,
        default=2.0,
        help="tail followers' long-poll wait, seconds (0 to 60)",
    )
    group.add_argument(
        "--raftlog-redirect",
        env_var="RAFTLOG_LOAD_REDIRECT",
        action="store_true",
        default=False,
        help="writers ask followers for a 307 to the leader instead of forwarding",
    )
