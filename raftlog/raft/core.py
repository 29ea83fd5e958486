"""The PySyncObj subclass: one replicated method, our journal, transport and snapshots.

This module and its siblings in ``raftlog.raft`` are the only ones importing pysyncobj.
Everything here runs on the Raft tick thread that :class:`raftlog.raft.node.RaftNode`
owns (``autoTick=False``): PySyncObj's state is never touched concurrently.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.poller import POLL_EVENT_TYPE

from raftlog.raft.journal import DurableJournal
from raftlog.raft.transport import RaftlogNode, RaftlogTransport, TransportHooks

_original_create_journal = _syncobj_module.createJournal


def _create_journal(journal_file: Any = None) -> Any:
    # SyncObj builds its journal from conf.journalFile through this module-level
    # function; passing our journal object there is the only way to inject it.
    if isinstance(journal_file, DurableJournal):
        return journal_file
    return _original_create_journal(journal_file)


_syncobj_module.createJournal = _create_journal


class RaftCore(SyncObj):  # type: ignore[misc]
    """PySyncObj with a single replicated method taking a versioned command (bytes)."""

    def __init__(
        self,
        self_address: str,
        peer_addresses: list[str],
        conf: SyncObjConf,
        hooks: TransportHooks,
        apply: Callable[[int, bytes], Any],
    ) -> None:
        self.rl_transport_hooks = hooks
        self._rl_apply = apply
        super().__init__(
            self_address,
            peer_addresses,
            conf,
            nodeClass=RaftlogNode,
            transportClass=RaftlogTransport,
        )
        self._rl_wake_r, self._rl_wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller.subscribe(self._rl_wake_r, self._rl_on_wake, POLL_EVENT_TYPE.READ)

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, data: bytes) -> Any:
        # Runs on the tick thread for each committed entry, in index order; PySyncObj
        # increments raftLastApplied only after this returns.
        return self._rl_apply(self.raftLastApplied + 1, data)

    # -- waking the tick thread from other threads --------------------------------------

    def wake(self) -> None:
        """Any thread: make the tick thread's poll return now (a proposal is queued)."""
        fd = self._rl_wake_w
        if fd < 0:
            return  # the tick thread has ended
        with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is pending
            os.write(fd, b"w")

    def _rl_on_wake(self, _fd: int, _mask: int) -> None:
        try:
            while os.read(self._rl_wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def close_wake_pipe(self) -> None:
        fds = (self._rl_wake_r, self._rl_wake_w)
        self._rl_wake_r = self._rl_wake_w = -1
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- private PySyncObj state, read in one place ---------------------------------------
    # Methods, not properties: SyncObj.__init__ calls getattr() on every attribute name.

    def rl_state(self) -> int:
        return int(self._SyncObj__raftState)

    def rl_leader_address(self) -> str | None:
        leader = self._SyncObj__raftLeader
        return None if leader is None else str(leader.address)

    def rl_match_index(self) -> dict[str, int]:
        return {n.address: int(i) for n, i in list(self._SyncObj__raftMatchIndex.items())}

    def rl_last_response(self) -> dict[str, float]:
        return {n.address: float(t) for n, t in list(self._SyncObj__lastResponseTime.items())}

    def rl_connected(self) -> set[str]:
        return {getattr(n, "address", str(n)) for n in list(self._SyncObj__connectedNodes)}

    def rl_noop_index(self) -> int | None:
        value = self._SyncObj__noopIDx
        return None if value is None else int(value)

    def rl_leader_commit_index(self) -> int | None:
        value = self._SyncObj__leaderCommitIndex
        return None if value is None else int(value)

    def rl_send_append_entries(self) -> None:
        self._SyncObj__sendAppendEntries()

    def rl_reset_election_deadline(self, seconds: float) -> None:
        from pysyncobj.monotonic import monotonic

        self._SyncObj__raftElectionDeadline = monotonic() + seconds

    def rl_destroy_transport_only(self) -> None:
        """Close sockets without flushing anything: what kill -9 leaves behind."""
        self._SyncObj__transport.destroy()
