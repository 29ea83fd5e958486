"""Ports handed to child processes stay outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from raftlog import ports
from raftlog.ports import ephemeral_range, free_port

pytestmark = pytest.mark.unit


def test_ports_are_unique_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(not low <= p <= high for p in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_someone_else_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        # Make the busy port the next candidate, as if this process had never seen it.
        monkeypatch.setattr(ports, "_handed_out", set())
        ports._candidates.append(port)
        assert free_port() != port
