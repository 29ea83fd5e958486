"""Exceptions of the raftlog Python client: one class per error code of the v1 contract.

The tree (status in brackets; ``*``: the class for unknown codes of that status)::

    RaftlogClientError                   every error the client raises
    ├── InvalidRequest           [400]   bad parameter, body or log name; also raised locally
    │                                    for a value that is not JSON
    ├── Unauthorized             [401]   missing or wrong bearer token
    ├── Forbidden                [403]   the token's role does not allow this
    ├── NotFound*                [404]
    │   ├── LogNotFound                  also from Client.get on a log that does not exist
    │   └── OffsetNotFound               .next_offset
    ├── Conflict*                [409]
    │   ├── OffsetMismatch               .next_offset
    │   ├── IdempotencyKeyReused
    │   └── MembershipChangeInProgress
    ├── Trimmed                  [410]   .first_offset
    ├── TooLarge*                [413]
    │   ├── EntryTooLarge
    │   ├── BatchTooLarge
    │   └── RequestTooLarge
    ├── Overloaded               [429]   .retry_after (retried by the client)
    ├── Unavailable*             [503]   (retried by the client, on another node first)
    │   ├── NoLeader
    │   ├── NoQuorum
    │   └── TooStale
    ├── InsufficientStorage      [507]
    ├── Timeout                  [504]   a read's wait (min_index) ran out
    ├── NotFullyReplicated       [504]   ack=all: committed (.committed, .offset, .last_offset)
    ├── OutcomeUnknown           [504]   a write's fate is unknown: 504 outcome_unknown, or no
    │   │                                answer after the write was sent (read timeout, a
    │   │                                connection broken mid-way: code "connection_lost",
    │   │                                status None). Never retried by the client.
    │   └── UnexpectedWriteResponse      an undocumented answer to a write (also an
    │                                    UnexpectedResponse)
    ├── ConnectionFailed                 no node could be reached (a write was never sent:
    │                                    definitely not applied), or a read got no answer
    └── UnexpectedResponse               an undocumented status or a body off the contract

Every instance has ``status`` (None when no HTTP answer), ``code``, ``message``, ``details``
(the envelope's other fields), ``node`` (``X-Raftlog-Node``), ``meta`` (all ``X-Raftlog-*``
headers), ``retry_after`` and ``definitely_not_applied``: True when the request certainly
changed nothing (always for reads; for writes, statuses 400, 401, 403, 409, 413, 429, 503,
507 and connections that never opened). ``isinstance(exc, OutcomeUnknown)`` is the test for
"the write may or may not have been applied": retry it only with the same Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raftlog.client.models import AppendResult, ResponseMeta

__all__ = [
    "DEFINITE_STATUSES",
    "BatchTooLarge",
    "Conflict",
    "ConnectionFailed",
    "EntryTooLarge",
    "Forbidden",
    "IdempotencyKeyReused",
    "InsufficientStorage",
    "InvalidRequest",
    "LogNotFound",
    "MembershipChangeInProgress",
    "NoLeader",
    "NoQuorum",
    "NotFound",
    "NotFullyReplicated",
    "OffsetMismatch",
    "OffsetNotFound",
    "OutcomeUnknown",
    "Overloaded",
    "RaftlogClientError",
    "RequestTooLarge",
    "Timeout",
    "TooLarge",
    "TooStale",
    "Trimmed",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnexpectedWriteResponse",
    "error_class",
]

# A write answered with one of these was definitely not applied (the contract's rule).
DEFINITE_STATUSES = frozenset({400, 401, 403, 409, 413, 429, 503, 507})


class RaftlogClientError(Exception):
    """Base of every error the client raises."""

    code = "error"
    definitely_not_applied_default = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
        definitely_not_applied: bool | None = None,
        retry_after: float | None = None,
        meta: ResponseMeta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.status = status
        self.details: dict[str, Any] = dict(details or {})
        self.definitely_not_applied = (
            self.definitely_not_applied_default
            if definitely_not_applied is None
            else definitely_not_applied
        )
        self.retry_after = retry_after
        self.meta = meta or ResponseMeta()
        self.node: str | None = self.meta.node

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
            f"message={self.message!r}, details={self.details!r})"
        )

    def _detail_int(self, name: str) -> int | None:
        value = self.details.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class InvalidRequest(RaftlogClientError):
    code = "invalid_request"


class Unauthorized(RaftlogClientError):
    code = "unauthorized"


class Forbidden(RaftlogClientError):
    code = "forbidden"


class NotFound(RaftlogClientError):
    code = "not_found"


class LogNotFound(NotFound):
    code = "log_not_found"


class OffsetNotFound(NotFound):
    """No entry at that offset: it is at or past the end of the log (``next_offset``)."""

    code = "offset_not_found"

    @property
    def next_offset(self) -> int | None:
        """The log's next offset as the answering node knew it."""
        return self._detail_int("next_offset")


class Conflict(RaftlogClientError):
    code = "conflict"


class OffsetMismatch(Conflict):
    """``expected_offset`` did not hold; nothing was written."""

    code = "offset_mismatch"

    @property
    def next_offset(self) -> int | None:
        """The log's next offset when the batch was applied."""
        return self._detail_int("next_offset")


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class MembershipChangeInProgress(Conflict):
    code = "membership_change_in_progress"


class Trimmed(RaftlogClientError):
    """The offset was removed by retention."""

    code = "trimmed"

    @property
    def first_offset(self) -> int | None:
        """The first retained offset."""
        return self._detail_int("first_offset")


class TooLarge(RaftlogClientError):
    code = "too_large"


class EntryTooLarge(TooLarge):
    code = "entry_too_large"


class BatchTooLarge(TooLarge):
    code = "batch_too_large"


class RequestTooLarge(TooLarge):
    code = "request_too_large"


class Overloaded(RaftlogClientError):
    """429: the proposal queue is full; ``retry_after`` is the server's hint in seconds."""

    code = "overloaded"


class Unavailable(RaftlogClientError):
    code = "unavailable"


class NoLeader(Unavailable):
    code = "no_leader"


class NoQuorum(Unavailable):
    code = "no_quorum"


class TooStale(Unavailable):
    code = "too_stale"


class InsufficientStorage(RaftlogClientError):
    code = "insufficient_storage"


class Timeout(RaftlogClientError):
    """504 ``timeout``: a read's wait ran out (reads never write anything)."""

    code = "timeout"


class NotFullyReplicated(RaftlogClientError):
    """504 with ``ack=all``: committed by a majority, not yet on every member.

    The write WAS applied (``committed``); ``result`` has its offsets when the server sent
    them.
    """

    code = "not_fully_replicated"
    definitely_not_applied_default = False

    @property
    def committed(self) -> bool:
        return self.details.get("committed") is True

    @property
    def offset(self) -> int | None:
        return self._detail_int("offset")

    @property
    def last_offset(self) -> int | None:
        return self._detail_int("last_offset")

    @property
    def result(self) -> AppendResult | None:
        try:
            return AppendResult.from_body(self.details, self.meta)
        except ValueError:
            return None


class OutcomeUnknown(RaftlogClientError):
    """A write's fate is unknown. The client never retries it; retry it yourself only with
    the same Idempotency-Key, or read the log to find out."""

    code = "outcome_unknown"
    definitely_not_applied_default = False


class ConnectionFailed(RaftlogClientError):
    """No node could be reached (``sent`` False: the request never left, so a write was
    definitely not applied), or the connection of a read broke (``sent`` True)."""

    code = "connection_failed"

    def __init__(self, message: str, *, sent: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.sent = sent


class UnexpectedResponse(RaftlogClientError):
    """An undocumented status, or a body that does not match the contract."""

    code = "unexpected_response"
    definitely_not_applied_default = False


class UnexpectedWriteResponse(OutcomeUnknown, UnexpectedResponse):
    """An undocumented answer to a write: its outcome is unknown."""

    code = "unexpected_response"


_BY_CODE: dict[str, type[RaftlogClientError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        Forbidden,
        LogNotFound,
        OffsetNotFound,
        OffsetMismatch,
        IdempotencyKeyReused,
        MembershipChangeInProgress,
        Trimmed,
        EntryTooLarge,
        BatchTooLarge,
        RequestTooLarge,
        Overloaded,
        NoLeader,
        NoQuorum,
        TooStale,
        OutcomeUnknown,
        Timeout,
        NotFullyReplicated,
        InsufficientStorage,
    )
}

_BY_STATUS: dict[int, type[RaftlogClientError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Trimmed,
    413: TooLarge,
    429: Overloaded,
    503: Unavailable,
    507: InsufficientStorage,
}


def error_class(status: int, code: str | None, *, is_write: bool) -> type[RaftlogClientError]:
    """The class for an error answer: by code, else by status, else unexpected."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if is_write:
        return OutcomeUnknown if status == 504 else UnexpectedWriteResponse
    return UnexpectedResponse
