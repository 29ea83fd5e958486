"""``raftlog serve``: one node in the foreground (Raft + HTTP) until SIGTERM/SIGINT.

Shutdown order on SIGTERM/SIGINT: (1) a leader stops taking commands (refused as
definite failures, so clients retry elsewhere), waits until every peer has its whole
log and hands leadership over, while HTTP keeps serving; (2) responses start saying
``Connection: close`` for a short drain, then uvicorn stops accepting and finishes the
requests in flight; (3) the node stops (journal flushed, LMDB closed).

Exit codes:

- 0: a clean shutdown;
- 65 (``EXIT_CORRUPT_DATA``, sysexits' EX_DATAERR): the node's stored data is damaged
  (``CorruptStorage``): at start-up a bad record in ``raft.journal`` that is not a torn
  tail, a ``raft.meta``, a state record or its own ``raft.snapshot`` that fails its
  checksum; at run time a state record that fails its checksum when read (nothing
  damaged is served: the read is answered 503 and the node stops), or a leader's
  snapshot that fails its checksum while it ships it. The files are left as found; the
  message names the file; a restart will refuse again: the data needs an operator;
- 70 (``EXIT_FAIL_STOP``): a fail-stop (any storage error in the Raft journal, raft.meta
  or LMDB, or a command of an unknown version; for the journal and raft.meta also at
  start-up). A restart after the disk is repaired resumes;
- 78 (``EXIT_CONFIG``): a configuration (or data format) the node refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn

from raftlog import checksum
from raftlog.config import Config, parse_address
from raftlog.errors import ConfigError, CorruptStorage, FatalStorageError
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.raft.transport import RaftlogNode
from raftlog.raft.unsafe import UnsafeSwitches
from raftlog.service.log_service import LogService

__all__ = [
    "CONNECTION_DRAIN_S",
    "EXIT_CONFIG",
    "EXIT_CORRUPT_DATA",
    "EXIT_FAIL_STOP",
    "HANDOVER_TIMEOUT_S",
    "HTTP_PARSER",
    "LOOP",
    "FaultSwitches",
    "JsonFormatter",
    "check_http_stack",
    "fault_switches",
    "serve",
    "setup_logging",
]

log = logging.getLogger("raftlog.cli.serve")

EXIT_CORRUPT_DATA = 65  # EX_DATAERR: stored Raft data is damaged (module docstring)
EXIT_FAIL_STOP = 70
EXIT_CONFIG = 78
HANDOVER_TIMEOUT_S = 5.0
CONNECTION_DRAIN_S = 0.5
# The event loop and HTTP parser, chosen explicitly (never uvicorn's "auto", which falls
# back to asyncio and h11 in silence when a package is missing). Measured in
# docs/PERFORMANCE.md ("The HTTP request path"): uvloop and httptools are the faster pair.
LOOP = "uvloop"
HTTP_PARSER = "httptools"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.node.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {config.node_id} %(levelname)s %(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class FaultSwitches:
    """Test-only environment switches. The two UNSAFE ones exist so the fault suite can
    prove its checkers catch real bugs (negative controls); never set them otherwise."""

    dial_overrides: dict[str, tuple[str, int]]
    local_quorum_reads: bool
    volatile_journal: bool
    raft: UnsafeSwitches
    skip_checksums: bool = False


def fault_switches(environ: Mapping[str, str]) -> FaultSwitches:
    overrides: dict[str, tuple[str, int]] = {}
    raw = environ.get("RAFTLOG_TEST_DIAL_OVERRIDES")
    if raw:
        for address, target in json.loads(raw).items():
            overrides[address] = parse_address(target, "RAFTLOG_TEST_DIAL_OVERRIDES")
        RaftlogNode.dial_overrides = overrides
        log.warning("test switch: dialing peers through %s", overrides)
    local = environ.get("RAFTLOG_UNSAFE_LOCAL_QUORUM_READS") == "1"
    volatile = environ.get("RAFTLOG_UNSAFE_VOLATILE_JOURNAL") == "1"
    if local:
        log.warning("UNSAFE test switch: quorum reads are served locally (not linearizable)")
    if volatile:
        log.warning("UNSAFE test switch: the Raft journal lives in memory (lost on exit)")
    raft = UnsafeSwitches(
        torn_tail_any=environ.get("RAFTLOG_UNSAFE_TORN_TAIL_ANY") == "1",
        vote_with_empty_data=environ.get("RAFTLOG_UNSAFE_VOTE_WITH_EMPTY_DATA") == "1",
    )
    if raft.torn_tail_any:
        log.warning("UNSAFE test switch: the journal cuts everything from its first bad record")
    if raft.vote_with_empty_data:
        log.warning("UNSAFE test switch: a node on an empty data dir votes at once")
    skip = environ.get("RAFTLOG_UNSAFE_SKIP_CHECKSUMS") == "1"
    checksum.set_verification(not skip)
    if skip:
        log.warning(
            "UNSAFE test switch: checksums of stored records and snapshots are not verified "
            "(damaged data is served and installed)"
        )
    return FaultSwitches(overrides, local, volatile, raft, skip)


def check_http_stack() -> None:
    """Raise ConfigError naming what is missing when uvloop or httptools cannot be
    imported (both come with raftlog's ``uvicorn[standard]`` dependency)."""
    missing = [name for name in (LOOP, HTTP_PARSER) if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"raftlog serve needs the Python package(s) {', '.join(missing)} (the event "
            "loop and HTTP parser it is measured and tested with); install raftlog with "
            "its dependencies (uvicorn[standard]) and start the node again"
        )


class _CloseConnections:
    """ASGI wrapper: once ``closing`` is set, every response says ``Connection: close``,
    so clients drop their keep-alive connections gracefully before the server closes
    them (a request racing a server-side close would end in a reset: outcome unknown)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.closing = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.closing:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class _Server(uvicorn.Server):
    """Runs the ordered shutdown on SIGTERM/SIGINT (module docstring). uvicorn's own
    handlers would re-raise the signal after its shutdown, killing the process before
    the node is closed; these do not."""

    def __init__(
        self, config: uvicorn.Config, node: RaftNode, wrapper: _CloseConnections, rl: Config
    ) -> None:
        super().__init__(config)
        self._rl_config = rl
        self._node = node
        self._wrapper = wrapper
        self._shutdown: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: shutting down", signal.Signals(sig).name)
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._graceful())
        elif sig == signal.SIGINT:
            self.force_exit = True
            self.should_exit = True

    async def _graceful(self) -> None:
        # 1. A leader stops taking commands, waits until peers have its whole log and
        #    hands over; HTTP keeps serving (as a follower it forwards writes).
        await _hand_over(self._node, self._rl_config)
        # 2. Ask clients to drop keep-alive connections, then close HTTP (uvicorn waits
        #    for requests in flight).
        self._wrapper.closing = True
        await asyncio.sleep(CONNECTION_DRAIN_S)
        self.should_exit = True


# Python's cyclic garbage collector, tuned for a server (docs/PERFORMANCE.md, "Garbage
# collection"): collecting the young generation every 700 allocations (the default)
# promoted objects that live for one Raft round trip and then walked them again in
# older passes; every 10,000 it cost 15-25% less CPU per request on every node.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Once, after start-up: move what start-up built (modules, the app, the node) out
    of the collector's sight for good (``gc.freeze``), and collect less often. Only the
    cadence changes: cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(config: Config) -> int:
    """Run the node until a signal; returns the process exit code. Raises ConfigError
    (before anything starts) when the HTTP stack is incomplete (``check_http_stack``)."""
    from api.app import create_app
    from api.forward import HttpForwarder

    check_http_stack()
    setup_logging(config)
    switches = fault_switches(os.environ)
    fatal: list[str] = []
    node = RaftNode(
        config,
        on_fatal=fatal.append,
        disk=LossyDisk(volatile=True) if switches.volatile_journal else None,
        unsafe=switches.raft,
    )
    try:
        node.start()
    except FatalStorageError as exc:
        # The node has logged its FAIL-STOP line; nothing was served. Damaged data
        # (CorruptStorage) gets its own exit code: a restart would refuse again.
        corrupt = isinstance(exc, CorruptStorage)
        why = "refuses to start, its Raft data is damaged" if corrupt else "could not start"
        log.critical("node %s %s: %s", config.node_id, why, exc)
        try:
            node.stop()
        except Exception:
            log.exception("error while closing the failed node")
        return EXIT_CORRUPT_DATA if corrupt else EXIT_FAIL_STOP
    service = LogService(node, config, unsafe_local_quorum_reads=switches.local_quorum_reads)
    wrapper = _CloseConnections(create_app(service, forwarder=HttpForwarder(timeout=30.0)))
    tune_gc()
    host, port = parse_address(config.http_bind, "http_bind")
    server = _Server(
        uvicorn.Config(
            wrapper,
            host=host,
            port=port,
            loop=LOOP,
            http=HTTP_PARSER,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=config.node.tls_cert_file,
            ssl_keyfile=config.node.tls_key_file,
            timeout_graceful_shutdown=10,
        ),
        node,
        wrapper,
        config,
    )

    async def run() -> None:
        await service.start()
        watcher = asyncio.create_task(_watch(server, node, fatal, config))
        try:
            await server.serve()
        finally:
            watcher.cancel()
            await service.close()

    try:
        # The loop uvicorn's config names: server.serve() inside asyncio.run() would run
        # on a plain asyncio loop whatever ``loop`` says.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(run())
    finally:
        node.stop()
    if fatal:
        log.critical("node %s stopped after a fail-stop: %s", config.node_id, fatal[0])
        # RaftNode hands on_fatal "<exception type>: <message>" (node.failed).
        if fatal[0].startswith(f"{CorruptStorage.__name__}:"):
            return EXIT_CORRUPT_DATA
        return EXIT_FAIL_STOP
    log.info("node %s stopped cleanly", config.node_id)
    return 0


async def _watch(server: uvicorn.Server, node: RaftNode, fatal: list[str], config: Config) -> None:
    while not server.started:
        await asyncio.sleep(0.02)
    scheme = "https" if config.node.tls_cert_file else "http"
    log.info(
        "raftlog node %s listening on %s://%s (raft %s, cluster %r)",
        config.node_id,
        scheme,
        config.http_bind,
        config.raft_bind,
        config.cluster_name,
    )
    while not fatal:
        await asyncio.sleep(0.05)
    server.should_exit = True


async def _hand_over(node: RaftNode, config: Config) -> None:
    """A leader asks an up-to-date peer to take over before it stops (bounded wait)."""
    if not node.is_leader() or len(config.nodes) == 1 or node.failed:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANDOVER_TIMEOUT_S
    node.start_draining()
    while loop.time() < deadline and node.is_leader() and not node.drained():
        await asyncio.sleep(0.01)
    while loop.time() < deadline and node.is_leader():
        node.transfer_leadership()  # refused until a peer's match index is at our last index
        await asyncio.sleep(0.1)
    if node.is_leader():
        log.warning("no peer took over leadership within %.0f s; stopping", HANDOVER_TIMEOUT_S)
    else:
        log.info("leadership handed over to %s", node.leader_id())
