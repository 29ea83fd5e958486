"""A snapshot transfer restarts from its first chunk when the peer's connection drops."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from pysyncobj.serializer import Serializer

from raftlog.raft.core import SNAPSHOT_SEND_AHEAD_BYTES, RaftCore
from raftlog.raft.transport import RaftlogNode

pytestmark = pytest.mark.unit

CHUNK = 1024


def test_a_dropped_connection_restarts_the_transfer_at_its_first_chunk(tmp_path: Path) -> None:
    dump = tmp_path / "raft.snapshot"
    data = os.urandom(5 * CHUNK)
    dump.write_bytes(data)
    serializer = Serializer(str(dump), CHUNK, False, None, None, None)
    peer = RaftlogNode("127.0.0.1:4002")
    core = RaftCore.__new__(RaftCore)  # only the state this hook touches
    core._SyncObj__serializer = serializer
    core._SyncObj__connectedNodes = {peer}

    first = serializer.getTransmissionData(peer)
    second = serializer.getTransmissionData(peer)
    assert first == (data[:CHUNK], True, False)
    assert second == (data[CHUNK : 2 * CHUNK], False, False)

    core._SyncObj__onNodeDisconnected(peer)  # the connection dropped (PySyncObj's callback)
    assert peer not in core._SyncObj__connectedNodes

    # Back again: the transfer starts over, no chunk skipped.
    received = b""
    while len(received) < len(data):
        chunk, is_first, is_last = serializer.getTransmissionData(peer)
        assert is_first == (received == b"") and not is_last
        received += chunk
    assert received == data
    core._SyncObj__onNodeDisconnected(peer)  # ends this one too (and closes its file)


class _Conn:
    def __init__(self) -> None:
        self.buffered = 0

    def getSendBufferSize(self) -> int:  # noqa: N802 - PySyncObj's name
        return self.buffered


def test_no_chunk_is_handed_out_while_the_peer_connection_holds_a_full_queue(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "raft.snapshot"
    data = os.urandom(3 * CHUNK)
    dump.write_bytes(data)
    serializer = Serializer(str(dump), CHUNK, False, None, None, None)
    peer = RaftlogNode("127.0.0.1:4002")
    conn = _Conn()
    core = RaftCore.__new__(RaftCore)
    core._SyncObj__serializer = serializer
    core._SyncObj__transport = SimpleNamespace(_connections={peer: conn})
    core._SyncObj__connectedNodes = {peer}
    core._rl_pace_snapshot_sends()

    assert serializer.getTransmissionData(peer) == (data[:CHUNK], True, False)
    conn.buffered = SNAPSHOT_SEND_AHEAD_BYTES + 1
    assert serializer.getTransmissionData(peer) is None  # PySyncObj ends its loop here
    conn.buffered = 0
    # The transfer resumes where it stopped.
    assert serializer.getTransmissionData(peer) == (data[CHUNK : 2 * CHUNK], False, False)
    core._SyncObj__onNodeDisconnected(peer)
