"""A test-only node process: one RaftNode plus a JSON-lines control socket on 127.0.0.1.

Until the HTTP API exists, integration tests drive real node processes through this.
Run: ``python -m tests.support.nodeproc CONFIG NODE_ID DATA_DIR CONTROL_PORT``.
One request per line, one JSON reply per line:

    {"op": "append", "log": "l", "values": [...], "timeout": 5}
    {"op": "status"} | {"op": "digest"} | {"op": "barrier"}
    {"op": "read", "log": "l", "from": 0, "limit": 1000}
    {"op": "wait_applied", "index": 12, "timeout": 5}

Replies: {"ok": true, ...} or {"ok": false, "error": code, "definite": bool, "message": ...}.
Exit codes: 0 after SIGTERM, 70 after a fail-stop, 78 for a configuration refusal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from raftlog.commands import Append, AppendEntry
from raftlog.config import load_config
from raftlog.errors import ConfigError, RaftlogError, UnsupportedFormat
from raftlog.raft.node import RaftNode
from raftlog.state.machine import Appended, Rejected


async def handle(node: RaftNode, req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "append":
        entries = tuple(
            AppendEntry(value_json=json.dumps(v, separators=(",", ":")).encode())
            for v in req["values"]
        )
        cmd = Append(log=req["log"], entries=entries, timestamp_ms=int(time.time() * 1000))
        result = await node.propose(cmd, timeout=float(req.get("timeout", 10)))
        if isinstance(result, Rejected):
            return {"ok": False, "error": result.code, "definite": True, "message": result.message}
        assert isinstance(result, Appended)
        return {
            "ok": True,
            "offset": result.offset,
            "last_offset": result.last_offset,
            "index": result.index,
            "term": result.term,
        }
    if op == "barrier":
        return {"ok": True, "index": await node.barrier(float(req.get("timeout", 10)))}
    if op == "status":
        return {"ok": True, "status": node.status().to_dict(), "pid": os.getpid()}
    if op == "digest":
        index, digest = node.state.digest()
        return {"ok": True, "index": index, "digest": digest}
    if op == "read":
        entries = node.state.read_range(
            req["log"], int(req.get("from", 0)), int(req.get("limit", 1000))
        )
        return {"ok": True, "entries": [e.to_json_dict() for e in entries]}
    if op == "wait_applied":
        done = await node.wait_applied(int(req["index"]), float(req.get("timeout", 10)))
        return {"ok": done, "applied_index": node.applied_index}
    return {"ok": False, "error": "bad_op", "definite": True, "message": f"unknown op {op!r}"}


async def serve(node: RaftNode, port: int, stop: asyncio.Event) -> None:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = await handle(node, json.loads(line))
                except RaftlogError as exc:
                    reply = {
                        "ok": False,
                        "error": exc.code,
                        "message": exc.message,
                        "definite": not exc.may_have_applied,
                    }
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", port, limit=64 << 20)
    print(f"CONTROL-READY {port}", flush=True)
    async with server:
        await stop.wait()


def main() -> int:
    config_path, node_id, data_dir, port = sys.argv[1:5]
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    fatal: list[str] = []
    try:
        config = load_config(config_path, node_id=node_id, data_dir=data_dir)
        node = RaftNode(config, on_fatal=fatal.append)
        node.start()
    except (ConfigError, UnsupportedFormat) as exc:
        print(f"REFUSED: {exc}", file=sys.stderr, flush=True)
        return 78

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def watch_failure() -> None:
            while not fatal:
                await asyncio.sleep(0.05)
            stop.set()

        watcher = asyncio.create_task(watch_failure())
        await serve(node, int(port), stop)
        watcher.cancel()

    asyncio.run(run())
    node.stop()
    return 70 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
