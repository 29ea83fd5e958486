"""PySyncObj transport with durability, identity and admission rules.

Every outgoing Raft message goes through :meth:`RaftlogTransport.send`, which first
flushes the journal for every message type that vouches for its contents (see
``VOUCHING_TYPES``): a vote or an append response never leaves before the writes it
vouches for are durable (and one fsync covers everything added since the previous
send: group commit).

Entries a leader ships (``append_entries``) leave *before* its own fsync, which then
runs while the followers write theirs (Raft dissertation 10.2.1; etcd does the same).
They vouch for nothing yet: a follower stores and acknowledges them on its own fsync,
and the leader counts its own copy toward a commit only once it is durable, because
``RaftCore`` flushes the journal at the start of every leader tick, before PySyncObj
computes the commit index, and the node flushes right after shipping (node.py). A
leader that crashes before its fsync may lose entries a follower holds: they were
never committed, and Raft's log matching settles them like any uncommitted tail.

Incoming connections must introduce themselves as a configured member. PySyncObj's
anonymous read-only connections (which receive the whole log) and its "utility"
admin messages (membership, leadership transfer from anyone who connects) are
refused. Every dict message carries the sender's cluster id once it has one; a
peer that reports a different cluster is disconnected.

For the leader lease (``guard.py``) every append a leader sends carries its send time
on the Raft clock (``rl_sent``); a follower's reply to an append it accepted echoes that
stamp (``rl_echo``). A vote request of an election that a leadership transfer started
carries ``rl_transfer``, so peers that still hear from the old leader let it through.
A node that started on an empty data dir and may still bootstrap a new cluster marks
every message ``rl_fresh`` (voting.py).
Every message of a leader that is draining before a handover carries ``rl_draining``:
a follower that saw it knows the commands it forwarded and still awaits an answer for
were never appended (the draining leader refuses them), see ``RaftCore``.

A leader shipping its snapshot (``raft.snapshot``) feeds every chunk to a
``DumpVerifier`` per follower; when the last chunk is due and the checksums do not
match, it raises ``CorruptStorage`` instead of sending it (the follower never
completes the transfer) and the node fail-stops (``raftlog serve`` exits 65): sending
the same file again would send the same damage, and another node can lead.

Threading: all methods run on the Raft tick thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pysyncobj.config import FAIL_REASON
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from raftlog.errors import CorruptStorage
from raftlog.raft import clock
from raftlog.raft.dump_format import DumpVerifier
from raftlog.raft.journal import DurableJournal

__all__ = [
    "CLUSTER_ID_FIELD",
    "ECHO_FIELD",
    "FRESH_FIELD",
    "SENT_FIELD",
    "TRANSFER_FIELD",
    "VOUCHING_TYPES",
    "RaftlogNode",
    "RaftlogTransport",
    "TransportHooks",
]

log = logging.getLogger(__name__)

CLUSTER_ID_FIELD = "rl_cid"
# Messages that vouch for journal contents (entries stored, a term or a vote). Others
# (a command forwarded to the leader, the index it was given) do not, and flushing for
# them would cost one fsync per forwarded command; a leader's append_entries is
# flushed for after it leaves (module doc).
VOUCHING_TYPES = frozenset({"next_node_idx", "request_vote", "response_vote"})
SENT_FIELD = "rl_sent"
ECHO_FIELD = "rl_echo"
TRANSFER_FIELD = "rl_transfer"
DRAINING_FIELD = "rl_draining"
FRESH_FIELD = "rl_fresh"


@dataclass
class TransportHooks:
    """What the transport needs from the node; set on the SyncObj before it starts."""

    journal: DurableJournal
    cluster_id: Callable[[], str | None]
    # Called after the flush, just before a message is handed to the socket (tests trace).
    on_send: Callable[[str, dict[str, Any]], None] | None = None
    # Raft-clock time (clock.now) of the last message from each peer address.
    last_heard: dict[str, float] = field(default_factory=dict)
    # Per peer address: the rl_sent stamp of the last append we accepted from it, echoed
    # in our replies to it (set by RaftCore before PySyncObj handles the append).
    echo_to: dict[str, float | None] = field(default_factory=dict)
    # The term of an election a leadership transfer started (its vote requests say so).
    transfer_term: int | None = None
    refused: dict[str, str] = field(default_factory=dict)
    # Set while a leader drains before handing over: commands forwarded by followers are
    # answered NOT_LEADER (definitely not applied) instead of being appended.
    draining: bool = False
    # True while this node is pending and fresh (voting.py): its messages say rl_fresh.
    fresh: Callable[[], bool] = lambda: False
    # Set by the node's fail-stop: from then on nothing is sent (a node that stopped
    # halfway through handling a message must not answer it, e.g. acknowledge a
    # snapshot it failed to install).
    halted: bool = False


class RaftlogTransport(TCPTransport):  # type: ignore[misc]
    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
        self._hooks: TransportHooks = syncObj.rl_transport_hooks
        self._shipping: dict[str, DumpVerifier] = {}  # follower address -> its transfer
        super().__init__(syncObj, selfNode, otherNodes)

    def _check_snapshot_chunk(self, address: str, data: Any) -> None:
        """Feed one snapshot chunk ``(bytes, is_first, is_last)``; CorruptStorage when the
        last one is due and the file failed its checksums."""
        chunk, is_first, is_last = data
        if is_first or address not in self._shipping:
            self._shipping[address] = DumpVerifier()
        verifier = self._shipping[address]
        verifier.feed(chunk)
        if is_last:
            del self._shipping[address]
            problem = verifier.problem()
            if problem is not None:
                dump = str(getattr(self._syncObj.conf, "fullDumpFile", "raft.snapshot"))
                raise CorruptStorage(
                    f"{dump} (this leader's own snapshot) is damaged: {problem}; not shipped "
                    f"to {address}; the files are left as found",
                    file=dump,
                )

    def send(self, node: Any, message: Any) -> bool:
        if self._hooks.halted:
            return False
        if not isinstance(message, dict) or message.get("type") in VOUCHING_TYPES:
            self._hooks.journal.flush()
        if isinstance(message, dict):
            cid = self._hooks.cluster_id()
            if cid is not None:
                message[CLUSTER_ID_FIELD] = cid
            kind = message.get("type")
            if self._hooks.draining:
                message[DRAINING_FIELD] = True
            if self._hooks.fresh():
                message[FRESH_FIELD] = True
            if kind == "append_entries" and message.get("serialized") is not None:
                self._check_snapshot_chunk(node.address, message["serialized"])
            if kind == "append_entries":
                # Taken just before the message is serialized: a later stamp than the
                # real send would lengthen the lease; an earlier one is safe.
                message[SENT_FIELD] = clock.now()
            elif kind == "next_node_idx":
                message[ECHO_FIELD] = self._hooks.echo_to.get(node.address)
            elif kind == "request_vote" and message.get("term") == self._hooks.transfer_term:
                message[TRANSFER_FIELD] = True
            if self._hooks.on_send is not None:
                self._hooks.on_send(node.address, message)
        return bool(super().send(node, message))

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:  # noqa: N802
        if self._syncObj.encryptor and not conn.sendRandKey:
            super()._onIncomingMessageReceived(conn, message)  # key exchange
            return
        if (
            isinstance(message, list)
            or message == "readonly"
            or (message not in self._nodeAddrToNode)
        ):
            what = "utility message" if isinstance(message, list) else repr(message)[:80]
            log.warning("raft: refusing a connection that is not a cluster member (%s)", what)
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        address = getattr(node, "address", str(node))
        if isinstance(message, dict):
            theirs = message.get(CLUSTER_ID_FIELD)
            ours = self._hooks.cluster_id()
            if theirs is not None and ours is not None and theirs != ours:
                if self._hooks.refused.get(address) != theirs:
                    log.error(
                        "raft: refusing peer %s: it belongs to cluster %s, this node to %s",
                        address,
                        theirs,
                        ours,
                    )
                self._hooks.refused[address] = theirs
                conn = self._connections.get(node)
                if conn is not None:
                    conn.disconnect()
                return
            if self._hooks.draining and message.get("type") == "apply_command":
                if "request_id" in message:
                    super().send(
                        node,
                        {
                            "type": "apply_command_response",
                            "request_id": message["request_id"],
                            "error": FAIL_REASON.NOT_LEADER,
                        },
                    )
                return
            self._hooks.last_heard[address] = clock.now()
        super()._onMessageReceived(node, message)


class RaftlogNode(TCPNode):  # type: ignore[misc]
    """A peer. ``address`` is its identity; ``dial`` (host, port) is where to connect.

    The two differ only when a test routes a link through a proxy.
    """

    dial_overrides: dict[str, tuple[str, int]] = {}

    @property
    def ip(self) -> str:
        override = self.dial_overrides.get(self.address)
        return override[0] if override else str(super().ip)

    @property
    def port(self) -> int:
        override = self.dial_overrides.get(self.address)
        return override[1] if override else int(super().port)
