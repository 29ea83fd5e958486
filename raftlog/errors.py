"""Domain errors of raftlog. No HTTP here: `api/` maps these to statuses in one place.

The tree::

    RaftlogError                      every error a caller of the service can see
    ├── DefinitelyNotApplied          nothing reached the replicated log; safe to retry
    │   ├── InvalidRequest            bad input (field named in the message)
    │   ├── NoLeader                  no leader known; refused before proposing
    │   ├── NoQuorum                  the node cannot reach a majority
    │   ├── Overloaded                the proposal queue is full
    │   └── NodeStopped               the node is shutting down or has fail-stopped
    └── OutcomeUnknown                the command reached Raft; it may or may not commit

    ConfigError                       a configuration is invalid (raised at start-up)
    FatalStorageError                 a node-local storage failure: the node must stop
    ├── CorruptStorage                stored data is damaged (a bad record or checksum): refuse
    └── InvariantBroken               Raft's own rules would be broken (a committed
                                      entry replaced): stop before acting
    UnsupportedFormat                 data or a command of a version this code does not know

Each `RaftlogError` carries `code` (the contract's snake_case error code) and
`may_have_applied`: False means the write definitely did not happen.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BatchTooLarge",
    "ConfigError",
    "CorruptStorage",
    "DefinitelyNotApplied",
    "EntryTooLarge",
    "FatalStorageError",
    "IdempotencyKeyReused",
    "InsufficientStorage",
    "InvalidRequest",
    "InvalidRequestField",
    "InvariantBroken",
    "LogNotFound",
    "NoLeader",
    "NoQuorum",
    "NodeStopped",
    "NotFullyReplicated",
    "OffsetMismatch",
    "OffsetNotFound",
    "OutcomeUnknown",
    "Overloaded",
    "RaftlogError",
    "ReadTimeout",
    "RequestTooLarge",
    "ServedByLeader",
    "TooStale",
    "Trimmed",
    "UnsupportedFormat",
]


class RaftlogError(Exception):
    """Base of every error a service caller can observe."""

    code = "internal"
    may_have_applied = True

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class DefinitelyNotApplied(RaftlogError):
    """The command never reached the replicated log."""

    may_have_applied = False


class InvalidRequest(DefinitelyNotApplied):
    code = "invalid_request"


class NoLeader(DefinitelyNotApplied):
    code = "no_leader"


class NoQuorum(DefinitelyNotApplied):
    code = "no_quorum"


class Overloaded(DefinitelyNotApplied):
    code = "overloaded"


class NodeStopped(DefinitelyNotApplied):
    code = "node_stopped"


class OutcomeUnknown(RaftlogError):
    """The command reached Raft; it may still commit. Retry only with an idempotency key."""

    code = "outcome_unknown"


class ConfigError(ValueError):
    """An invalid configuration. The message names the setting and the rule it broke."""


class FatalStorageError(Exception):
    """A failure of this node's own storage (full map that cannot grow, ENOSPC, EIO).

    Raised inside apply; the node must stop (fail-stop) without advancing its applied
    index. Recording an error result instead would make this replica diverge.
    """


class CorruptStorage(FatalStorageError):
    """This node's stored data is damaged.

    Raised when the journal opens: a bad record that is not a torn tail (valid records
    follow it, or it lies at or below the commit index raft.meta records), a gap or step
    back in the indexes, or a raft.meta that fails its checksum or does not decode. And
    whenever a record of the LMDB state (``data.mdb``) or the node's own
    ``raft.snapshot`` fails its CRC32C (reads, apply, snapshot writes, start-up; see
    DESIGN.md "Checksums"). The file is left exactly as found. ``raftlog serve`` exits 65
    (not 70): restarting will not help, the data needs an operator.

    A subclass of FatalStorageError, so every handler that stops the node on a storage
    failure stops it here too; a handler that picks an exit code tests for this first.

    ``file`` names the damaged file; ``offset`` is the byte offset of the damage (None
    when it concerns the whole file); the indexes are those the message names (None when
    unknown): the last good index before the damage, the first index found intact after
    it, and the commit index raft.meta records.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        offset: int | None = None,
        last_good_index: int | None = None,
        next_index: int | None = None,
        commit_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.offset = offset
        self.last_good_index = last_good_index
        self.next_index = next_index
        self.commit_index = commit_index


class InvariantBroken(FatalStorageError):
    """Acting on a message would break one of Raft's own rules on this node.

    Raised on the tick thread when a leader's append conflicts with an entry this node
    counts as committed or has applied (committed entries never change), or carries other
    bytes under an index and term this node holds. One of the two logs is wrong (damaged
    storage, a lost disk that voted, a bug); replacing applied entries would make this
    replica diverge silently. The node fail-stops first (``raftlog serve`` exits 70), the
    message names the index and both terms.
    """


class UnsupportedFormat(Exception):
    """Data (on disk, in a snapshot or a command) of a version this code does not know.

    For a replicated command this is node-local (an older binary during a rolling
    upgrade), so the node fail-stops rather than record a result others would not.
    """


# -- errors of the service layer (each maps to one contract code in api/errors.py) ------


class InvalidRequestField(InvalidRequest):
    """A request field is malformed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)
        self.field = field


class LogNotFound(DefinitelyNotApplied):
    code = "log_not_found"


class OffsetNotFound(DefinitelyNotApplied):
    code = "offset_not_found"


class Trimmed(DefinitelyNotApplied):
    """Reading below the first retained offset. details: first_offset."""

    code = "trimmed"


class OffsetMismatch(DefinitelyNotApplied):
    """``expected_offset`` did not hold when the batch was applied. details: next_offset."""

    code = "offset_mismatch"


class IdempotencyKeyReused(DefinitelyNotApplied):
    code = "idempotency_key_reused"


class EntryTooLarge(DefinitelyNotApplied):
    code = "entry_too_large"


class BatchTooLarge(DefinitelyNotApplied):
    code = "batch_too_large"


class RequestTooLarge(DefinitelyNotApplied):
    code = "request_too_large"


class TooStale(DefinitelyNotApplied):
    """An ``any`` read refused by ``max_lag`` or ``max_staleness_ms``."""

    code = "too_stale"


class InsufficientStorage(DefinitelyNotApplied):
    code = "insufficient_storage"


class ReadTimeout(DefinitelyNotApplied):
    """A read's wait (``min_index``, a barrier) ran out. Reads never write anything."""

    code = "timeout"


class NotFullyReplicated(RaftlogError):
    """``ack=all``: committed by a majority, not yet on every member.

    details: committed=True plus the offsets of the append.
    """

    code = "not_fully_replicated"
    may_have_applied = True


class ServedByLeader(RaftlogError):
    """This request must be served by the leader; ``leader_url`` is its HTTP base URL.

    The API layer forwards the request there (or answers 307 with ``redirect=true``).
    Raised before anything was proposed.
    """

    code = "served_by_leader"
    may_have_applied = False

    def __init__(self, leader_url: str) -> None:
        super().__init__(f"this request is served by the leader at {leader_url}")
        self.leader_url = leader_url
