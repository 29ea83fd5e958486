"""RaftlogTransport's own rules (transport.py), with PySyncObj's socket layer faked.

The transport is built without TCPTransport.__init__ (no poller, no sockets); what it
hands to PySyncObj (``TCPTransport.send`` and ``_onMessageReceived``) is recorded
instead. Covered: the flush before every vouching message, the fields stamped on
outgoing messages, refusing a peer of another cluster, a draining leader answering
forwarded commands NOT_LEADER, refusing non-member connections, the leader's snapshot
check while it ships, and silence after a fail-stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pysyncobj.config import FAIL_REASON
from pysyncobj.transport import TCPTransport

from raftlog.errors import CorruptStorage
from raftlog.raft import clock
from raftlog.raft.transport import (
    CLUSTER_ID_FIELD,
    DRAINING_FIELD,
    ECHO_FIELD,
    FRESH_FIELD,
    SENT_FIELD,
    TRANSFER_FIELD,
    VOUCHING_TYPES,
    RaftlogNode,
    RaftlogTransport,
    TransportHooks,
)

pytestmark = pytest.mark.unit

PEER = "127.0.0.1:4002"


class FakeJournal:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


@dataclass(eq=False)  # hashable by identity, as PySyncObj's connections are
class FakeConn:
    disconnected: bool = False
    sendRandKey: Any = None  # noqa: N815 - PySyncObj's attribute name

    def disconnect(self) -> None:
        self.disconnected = True


@dataclass
class Recorder:
    sent: list[tuple[str, Any]] = field(default_factory=list)
    received: list[tuple[str, Any]] = field(default_factory=list)
    incoming: list[Any] = field(default_factory=list)


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()

    def send(_self: Any, node: Any, message: Any) -> bool:
        recorder.sent.append((node.address, message))
        return True

    def received(_self: Any, node: Any, message: Any) -> None:
        recorder.received.append((node.address, message))

    def incoming(_self: Any, _conn: Any, message: Any) -> None:
        recorder.incoming.append(message)

    monkeypatch.setattr(TCPTransport, "send", send)
    monkeypatch.setattr(TCPTransport, "_onMessageReceived", received)
    monkeypatch.setattr(TCPTransport, "_onIncomingMessageReceived", incoming)
    return recorder


def make(hooks: TransportHooks) -> tuple[RaftlogTransport, RaftlogNode]:
    transport = RaftlogTransport.__new__(RaftlogTransport)
    transport._hooks = hooks
    transport._shipping = {}
    transport._syncObj = SimpleNamespace(
        encryptor=None, conf=SimpleNamespace(fullDumpFile="raft.snapshot")
    )
    peer = RaftlogNode(PEER)
    transport._nodeAddrToNode = {PEER: peer}
    transport._connections = {peer: FakeConn()}
    transport._unknownConnections = set()
    return transport, peer


def hooks(journal: FakeJournal, cid: str | None = None, **kw: Any) -> TransportHooks:
    return TransportHooks(journal=journal, cluster_id=lambda: cid, **kw)  # type: ignore[arg-type]


# -- sending ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VOUCHING_TYPES))
def test_every_vouching_message_leaves_after_a_journal_flush(rec: Recorder, kind: str) -> None:
    journal = FakeJournal()
    flushes_at_send: list[int] = []
    h = hooks(journal, on_send=lambda _a, _m: flushes_at_send.append(journal.flushes))
    transport, peer = make(h)
    assert transport.send(peer, {"type": kind, "term": 1})
    assert flushes_at_send == [1]  # flushed before the message was handed on
    assert len(rec.sent) == 1


def test_a_leaders_entries_leave_before_its_fsync(rec: Recorder) -> None:
    # The leader syncs right after shipping and before counting itself (core.py, node.py).
    journal = FakeJournal()
    transport, peer = make(hooks(journal))
    assert transport.send(peer, {"type": "append_entries", "term": 1, "entries": []})
    assert journal.flushes == 0
    assert len(rec.sent) == 1


def test_messages_that_vouch_for_nothing_cost_no_flush(rec: Recorder) -> None:
    journal = FakeJournal()
    transport, peer = make(hooks(journal))
    transport.send(peer, {"type": "apply_command", "command": b"x"})
    transport.send(peer, {"type": "apply_command_response", "request_id": 1})
    assert journal.flushes == 0
    transport.send(peer, "not a dict")  # anything unknown is flushed for, to be safe
    assert journal.flushes == 1
    assert len(rec.sent) == 3


def test_outgoing_messages_carry_the_cluster_id_and_our_flags(rec: Recorder) -> None:
    journal = FakeJournal()
    h = hooks(journal, cid="c-1", fresh=lambda: True)
    transport, peer = make(h)
    transport.send(peer, {"type": "request_vote", "term": 3})
    message = rec.sent[-1][1]
    assert message[CLUSTER_ID_FIELD] == "c-1"
    assert message[FRESH_FIELD] is True
    assert DRAINING_FIELD not in message
    assert TRANSFER_FIELD not in message  # term 3 was no transfer's election
    h.draining = True
    h.transfer_term = 4
    transport.send(peer, {"type": "request_vote", "term": 4})
    message = rec.sent[-1][1]
    assert message[DRAINING_FIELD] is True
    assert message[TRANSFER_FIELD] is True


def test_no_cluster_id_is_sent_before_the_cluster_has_one(rec: Recorder) -> None:
    transport, peer = make(hooks(FakeJournal(), cid=None))
    transport.send(peer, {"type": "append_entries", "term": 1})
    assert CLUSTER_ID_FIELD not in rec.sent[-1][1]
    assert FRESH_FIELD not in rec.sent[-1][1]


def test_appends_are_stamped_and_replies_echo_the_stamp(rec: Recorder) -> None:
    h = hooks(FakeJournal())
    transport, peer = make(h)
    before = clock.now()
    transport.send(peer, {"type": "append_entries", "term": 1})
    stamp = rec.sent[-1][1][SENT_FIELD]
    assert before <= stamp <= clock.now()
    h.echo_to[PEER] = 12.5
    transport.send(peer, {"type": "next_node_idx", "term": 1})
    assert rec.sent[-1][1][ECHO_FIELD] == 12.5
    assert SENT_FIELD not in rec.sent[-1][1]


def test_a_fail_stopped_node_sends_nothing(rec: Recorder) -> None:
    journal = FakeJournal()
    h = hooks(journal)
    transport, peer = make(h)
    h.halted = True
    assert not transport.send(peer, {"type": "next_node_idx", "success": True})
    assert rec.sent == []
    assert journal.flushes == 0  # not even a flush: the journal may be the failed part


def test_the_leader_refuses_to_ship_the_last_chunk_of_a_damaged_snapshot(
    rec: Recorder,
) -> None:
    transport, peer = make(hooks(FakeJournal()))
    chunks = [(b"RLRAFT02" + b"\xff" * 64, True, False), (b"garbage", False, False)]
    for chunk in chunks:
        transport.send(peer, {"type": "append_entries", "term": 1, "serialized": chunk})
    assert len(rec.sent) == 2  # damage is judged when the last chunk is due
    with pytest.raises(CorruptStorage, match="not shipped"):
        transport.send(
            peer, {"type": "append_entries", "term": 1, "serialized": (b"", False, True)}
        )
    assert len(rec.sent) == 2  # the last chunk never left
    assert transport._shipping == {}


# -- receiving --------------------------------------------------------------------------


def test_a_peer_of_another_cluster_is_refused_and_disconnected(rec: Recorder) -> None:
    h = hooks(FakeJournal(), cid="ours")
    transport, peer = make(h)
    transport._onMessageReceived(peer, {"type": "append_entries", CLUSTER_ID_FIELD: "theirs"})
    assert rec.received == []
    assert h.refused == {PEER: "theirs"}
    assert transport._connections[peer].disconnected
    assert PEER not in h.last_heard


def test_a_peer_of_our_cluster_is_heard(rec: Recorder) -> None:
    h = hooks(FakeJournal(), cid="ours")
    transport, peer = make(h)
    before = clock.now()
    message = {"type": "append_entries", CLUSTER_ID_FIELD: "ours"}
    transport._onMessageReceived(peer, message)
    transport._onMessageReceived(peer, {"type": "append_entries"})  # not stamped yet
    assert rec.received == [(PEER, message), (PEER, {"type": "append_entries"})]
    assert before <= h.last_heard[PEER] <= clock.now()
    assert h.refused == {}


def test_a_draining_leader_answers_forwarded_commands_not_leader(rec: Recorder) -> None:
    h = hooks(FakeJournal(), draining=True)
    transport, peer = make(h)
    transport._onMessageReceived(peer, {"type": "apply_command", "request_id": 7})
    transport._onMessageReceived(peer, {"type": "apply_command"})  # wants no answer
    assert rec.received == []  # PySyncObj never appends them
    assert rec.sent == [
        (
            PEER,
            {
                "type": "apply_command_response",
                "request_id": 7,
                "error": FAIL_REASON.NOT_LEADER,
            },
        )
    ]


@pytest.mark.parametrize(
    "hello",
    ["readonly", ["utility", "add", "x"], "127.0.0.1:9"],
    ids=["readonly", "utility", "stranger"],
)
def test_connections_that_are_not_a_member_are_refused(rec: Recorder, hello: Any) -> None:
    transport, _peer = make(hooks(FakeJournal()))
    conn = FakeConn(sendRandKey=b"k")
    transport._unknownConnections.add(conn)
    transport._onIncomingMessageReceived(conn, hello)
    assert conn.disconnected
    assert conn not in transport._unknownConnections
    assert rec.incoming == []


def test_a_member_introducing_itself_is_let_in(rec: Recorder) -> None:
    transport, _peer = make(hooks(FakeJournal()))
    conn = FakeConn(sendRandKey=b"k")
    transport._onIncomingMessageReceived(conn, PEER)
    assert not conn.disconnected
    assert rec.incoming == [PEER]


# -- dialing ------------------------------------------------------------------------------


def test_a_peer_is_dialed_at_its_override_but_keeps_its_identity() -> None:
    node = RaftlogNode("127.0.0.1:4003")
    assert (node.ip, node.port) == ("127.0.0.1", 4003)
    RaftlogNode.dial_overrides["127.0.0.1:4003"] = ("127.0.0.2", 5003)
    try:
        assert (node.ip, node.port) == ("127.0.0.2", 5003)
        assert node.address == "127.0.0.1:4003"
    finally:
        del RaftlogNode.dial_overrides["127.0.0.1:4003"]
