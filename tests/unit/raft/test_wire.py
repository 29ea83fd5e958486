"""The stored-block framing of peer messages (raftlog.raft.wire)."""

from __future__ import annotations

import os
import socket
import time
import zlib
from typing import Any

import pysyncobj.tcp_server as tcp_server_module
import pysyncobj.transport as transport_module
import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj.poller import PollPoller
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

import raftlog.raft.core  # noqa: F401  (installs the framing, as the node does)
from raftlog.raft.wire import StoredFrameConnection, stored_zlib

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 100, 65_534, 65_535, 65_536, 131_070, 131_071, 300_000])
def test_stored_zlib_decodes_to_the_input_at_block_boundaries(size: int) -> None:
    data = os.urandom(size)
    framed = stored_zlib(data)
    assert zlib.decompress(framed) == data
    blocks = max(1, -(-size // 65_535))
    assert len(framed) == 2 + 5 * blocks + size + 4  # header, block headers, data, adler32


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=70_000))
def test_stored_zlib_round_trips_any_bytes(data: bytes) -> None:
    assert zlib.decompress(stored_zlib(data)) == data


def test_a_damaged_stored_frame_is_refused_by_the_receivers_decoder() -> None:
    framed = bytearray(stored_zlib(b"append_entries" * 10))
    framed[20] ^= 0x01  # a flipped bit in the data: the adler32 no longer matches
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(framed))


def test_pysyncobj_builds_every_peer_connection_with_the_stored_framing() -> None:
    assert transport_module.TcpConnection is StoredFrameConnection
    assert tcp_server_module.TcpConnection is StoredFrameConnection


def _pair(poller: PollPoller, received: list[Any], receiver_class: type) -> tuple[Any, Any]:
    """A StoredFrameConnection and a ``receiver_class`` connection over a socket pair;
    what the receiver decodes is appended to ``received``."""
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    sender = StoredFrameConnection(poller, socket=left)
    receiver = receiver_class(poller, onMessageReceived=received.append, socket=right)
    return sender, receiver


def _exchange(
    encrypted: bool, messages: list[Any], receiver_class: type = TcpConnection
) -> list[Any]:
    """Send ``messages`` from a StoredFrameConnection to PySyncObj's own TcpConnection
    over a socket pair; return what the receiver decoded (deadline 5 s)."""
    poller = PollPoller()
    received: list[Any] = []
    sender, receiver = _pair(poller, received, receiver_class)
    if encrypted:
        key = Fernet.generate_key()
        sender.encryptor = Fernet(key)
        receiver.encryptor = Fernet(key)
    try:
        for message in messages:
            sender.send(message)
        deadline = time.monotonic() + 5.0
        while len(received) < len(messages) and time.monotonic() < deadline:
            poller.poll(0.05)
        return received
    finally:
        sender.disconnect()
        receiver.disconnect()


@pytest.mark.parametrize("encrypted", [False, True])
def test_pysyncobjs_unchanged_receiver_decodes_stored_frames(encrypted: bool) -> None:
    big = os.urandom(200_000)  # several stored blocks, several socket reads
    messages: list[Any] = [
        {"type": "append_entries", "term": 3, "entries": [(b"cmd", 7, 3)], "commit_index": 6},
        {"type": "next_node_idx", "next_node_idx": 8, "success": True},
        {"type": "append_entries", "term": 3, "entries": [(big, 8, 3)], "commit_index": 7},
    ]
    assert _exchange(encrypted, messages) == messages


def test_a_queue_far_larger_than_the_socket_drains_in_order() -> None:
    # Partial sends delete the sent prefix from the buffer (no copy of the rest).
    messages: list[Any] = [{"n": i, "pad": os.urandom(1 << 20)} for i in range(8)]
    messages.append({"n": "last"})
    assert _exchange(True, messages) == messages


@pytest.mark.parametrize("encrypted", [False, True])
def test_our_receiver_decodes_frames_in_order_across_partial_reads(encrypted: bool) -> None:
    messages: list[Any] = [{"n": i, "pad": os.urandom(300_000 * (i % 3))} for i in range(12)]
    assert _exchange(encrypted, messages, StoredFrameConnection) == messages


def test_a_frame_that_does_not_verify_drops_the_connection() -> None:
    poller = PollPoller()
    received: list[Any] = []
    sender, receiver = _pair(poller, received, StoredFrameConnection)
    sender.encryptor = Fernet(Fernet.generate_key())
    receiver.encryptor = Fernet(Fernet.generate_key())  # another cluster's secret
    try:
        sender.send({"type": "append_entries"})
        deadline = time.monotonic() + 5.0
        while receiver.state != CONNECTION_STATE.DISCONNECTED and time.monotonic() < deadline:
            poller.poll(0.05)
        assert receiver.state == CONNECTION_STATE.DISCONNECTED
        assert received == []
    finally:
        sender.disconnect()
        receiver.disconnect()


def test_what_the_socket_did_not_take_goes_without_waiting_for_another_message() -> None:
    poller = PollPoller()
    received: list[Any] = []
    sender, receiver = _pair(poller, received, StoredFrameConnection)

    def poll_until(count: int) -> None:
        deadline = time.monotonic() + 5.0
        while len(received) < count and time.monotonic() < deadline:
            poller.poll(0.05)

    try:
        sender.send({"n": 0})
        poll_until(1)  # the first exchange empties the buffer: PySyncObj stops asking WRITE
        big = {"n": 1, "pad": os.urandom(8 << 20)}  # far more than a socket buffer
        sender.send(big)
        poll_until(2)  # nothing else is sent: only the WRITE events can finish it
        assert received == [{"n": 0}, big]
    finally:
        sender.disconnect()
        receiver.disconnect()
