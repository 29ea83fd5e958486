"""Free local ports for nodes that some other process will bind later (demo, tests).

Contract: ``free_port()`` returns a port that nothing on 127.0.0.1 is bound to right now
and that this process has never handed out before. It prefers ports *outside* the
kernel's ephemeral range: a port taken from that range with ``bind(0)`` and released
again can be picked by any outgoing connection (an HTTP client, a proxy's upstream
socket) as its local port before the node gets to bind it. CI saw exactly that.
Ports outside the range are only ever taken by an explicit bind, so once a port is
checked free here only a listener started by someone else can take it.

Thread-safe; never blocks for longer than one ``bind`` per candidate.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

__all__ = [
    "ephemeral_range",
    "free_port",
]

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # stay clear of well-known and commonly configured service ports
_HIGHEST = 65535

_lock = threading.Lock()
_handed_out: set[int] = set()
_candidates: list[int] = []


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux default if it cannot be read)."""
    try:
        low, high = _EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _build_candidates() -> list[int]:
    low, high = ephemeral_range()
    ports = [p for p in range(_LOWEST, _HIGHEST + 1) if not low <= p <= high]
    # Start each process at a different point so parallel runs rarely collide.
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    rng.shuffle(ports)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port free now, outside the ephemeral range when possible, never repeated."""
    with _lock:
        if not _candidates and not _handed_out:
            _candidates.extend(_build_candidates())
        while _candidates:
            port = _candidates.pop()
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
        # Every non-ephemeral port is used up: fall back to the kernel's choice.
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
