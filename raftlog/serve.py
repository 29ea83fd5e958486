"""``raftlog serve``: one node in the foreground (Raft + HTTP) until SIGTERM/SIGINT.

Shutdown order: uvicorn stops accepting and finishes in-flight requests; then a
leader hands leadership to an up-to-date peer and waits (bounded) until another node
leads; then the node stops (journal flushed, LMDB closed). Exit 0, or 70 after a
fail-stop, 78 for a configuration the node refuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import uvicorn

from raftlog.config import Config, parse_address
from raftlog.raft.node import RaftNode
from raftlog.service import LogService

log = logging.getLogger("raftlog.serve")

EXIT_FAIL_STOP = 70
EXIT_CONFIG = 78
HANDOVER_TIMEOUT_S = 5.0


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


def serve(config: Config) -> int:
    """Run the node until a signal; returns the process exit code."""
    from api.app import create_app
    from api.forward import HttpForwarder

    setup_logging(config)
    fatal: list[str] = []
    node = RaftNode(config, on_fatal=fatal.append)
    node.start()
    service = LogService(node, config)
    app = create_app(service, forwarder=HttpForwarder(timeout=30.0))
    host, port = parse_address(config.http_bind, "http_bind")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=config.node.tls_cert_file,
            ssl_keyfile=config.node.tls_key_file,
            timeout_graceful_shutdown=10,
        )
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
        asyncio.run(run())
    finally:
        _hand_over(node, config)
        node.stop()
    if fatal:
        log.critical("node %s stopped after a fail-stop: %s", config.node_id, fatal[0])
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


def _hand_over(node: RaftNode, config: Config) -> None:
    """A leader asks an up-to-date peer to take over before it stops (bounded wait)."""
    if not node.is_leader() or len(config.nodes) == 1 or node.failed:
        return
    deadline = time.monotonic() + HANDOVER_TIMEOUT_S
    node.start_draining()
    while time.monotonic() < deadline and node.is_leader() and not node.drained():
        time.sleep(0.01)
    while time.monotonic() < deadline and node.is_leader():
        node.transfer_leadership()  # refused until a peer's match index is at our last index
        time.sleep(0.1)
    if node.is_leader():
        log.warning("no peer took over leadership within %.0f s; stopping", HANDOVER_TIMEOUT_S)
    else:
        log.info("leadership handed over to %s", node.leader_id())
