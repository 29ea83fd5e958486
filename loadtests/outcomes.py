"""What one HTTP answer means, by the error contract (pure; no Locust, no I/O).

An append answered 400, 401, 403, 409, 413, 429, 503 or 507 was definitely not
applied ("fail"). 201 is acknowledged at its offsets ("ok"); so is 504
``not_fully_replicated`` (``ack=all``: committed by a majority, carries the offsets).
202 (``ack=leader``) was accepted before commit and carries no offset: it may still be
lost, so it counts as maybe written ("unknown"). 504 ``outcome_unknown``, any other
status and a broken connection leave the outcome unknown.

Each outcome also says how Locust reports it: ``event`` is the request name to report
under when it is not the request's own name, and ``failure`` the failure message (None
when the request did what the contract allows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFINITE_REFUSALS",
    "AppendOutcome",
    "ReadVerdict",
    "classify_append",
    "classify_head",
    "classify_read",
    "error_code",
]

# Statuses after which a write was definitely not applied (the contract's table).
DEFINITE_REFUSALS = frozenset({400, 401, 403, 409, 413, 429, 503, 507})

HistoryOutcome = Literal["ok", "fail", "unknown"]


def error_code(body: Any) -> str | None:
    """The ``error.code`` of an error body, None when the body is not one."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            return str(err["code"])
    return None


@dataclass(frozen=True)
class AppendOutcome:
    """``history``: the outcome recorded for the presence check; ``offset``: the first
    acknowledged offset (``ok`` only); ``index``: the Raft index it returned."""

    history: HistoryOutcome
    offset: int | None = None
    index: int | None = None
    event: str | None = None
    failure: str | None = None


def _int_field(body: Any, name: str) -> int | None:
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_detail(body: Any) -> dict[str, Any]:
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def classify_append(
    status: int | None, body: Any, transport_error: str | None = None
) -> AppendOutcome:
    """The outcome of one append answered ``status`` with JSON ``body`` (None when the
    body was not JSON), or that never got an answer (``status`` None, ``transport_error``
    saying why)."""
    if status is None:
        return AppendOutcome("unknown", failure=f"no answer: {transport_error}")
    code = error_code(body)
    if status == 201:
        offset = _int_field(body, "offset")
        if offset is None:
            return AppendOutcome("unknown", failure="201 without an offset")
        return AppendOutcome("ok", offset, _int_field(body, "index"))
    if status == 202:
        return AppendOutcome("unknown")  # ack=leader: accepted, not yet committed
    if status == 504 and code == "outcome_unknown":
        return AppendOutcome("unknown", event="outcome_unknown")
    if status == 504 and code == "not_fully_replicated":
        detail = _error_detail(body)
        offset = _int_field(detail, "offset")
        if detail.get("committed") is True and offset is not None:
            index = _int_field(detail, "index")
            return AppendOutcome("ok", offset, index, event="not_fully_replicated")
        return AppendOutcome("unknown", failure="504 not_fully_replicated without offsets")
    if status in DEFINITE_REFUSALS:
        return AppendOutcome("fail", failure=f"{status} {code or 'refused'}")
    return AppendOutcome("unknown", failure=f"{status} {code or 'unexpected answer'}")


@dataclass(frozen=True)
class ReadVerdict:
    """``event``: a request name of its own (a legitimately stale ``any`` read);
    ``failure``: what was wrong, None when the answer is one the contract allows."""

    event: str | None = None
    failure: str | None = None


def _linearizable(consistency: str) -> bool:
    return consistency in ("quorum", "leader")


def classify_read(status: int | None, body: Any, expected: str, consistency: str) -> ReadVerdict:
    """One ``GET .../entries/{offset}`` of an offset a writer had been acknowledged at
    (before the read was sent) with value id ``expected``. A wrong value is always a
    failure (offsets are immutable). 404 is a failure for ``quorum``/``leader`` (the
    acknowledged write must be visible) and a stale read for ``any``."""
    if status is None:
        return ReadVerdict(failure="no answer")
    if status == 200:
        value = body.get("value") if isinstance(body, dict) else None
        got = value.get("w") if isinstance(value, dict) else None
        if got != expected:
            return ReadVerdict(failure=f"wrong value at an acknowledged offset: {got!r}")
        return ReadVerdict()
    code = error_code(body)
    if status == 404 and not _linearizable(consistency):
        return ReadVerdict(event=f"read consistency={consistency} stale")
    if status == 404:
        return ReadVerdict(failure=f"acknowledged offset not found ({code})")
    return ReadVerdict(failure=f"{status} {code or 'unexpected answer'}")


def classify_head(
    status: int | None, body: Any, acked_before: int | None, consistency: str
) -> ReadVerdict:
    """One ``GET /v1/logs/{log}``. ``acked_before``: the highest offset acknowledged in
    this log before the read was sent (None: none yet). A linearizable read must show
    ``next_offset`` past it; 404 ``log_not_found`` is fine while nothing was acknowledged
    (and for ``any``)."""
    if status is None:
        return ReadVerdict(failure="no answer")
    if status == 200:
        next_offset = _int_field(body, "next_offset")
        if next_offset is None:
            return ReadVerdict(failure="log without next_offset")
        if _linearizable(consistency) and acked_before is not None and next_offset <= acked_before:
            return ReadVerdict(
                failure=f"stale {consistency} read: next_offset {next_offset} but offset "
                f"{acked_before} was acknowledged before the read"
            )
        return ReadVerdict()
    code = error_code(body)
    if status == 404 and code == "log_not_found":
        if acked_before is None or not _linearizable(consistency):
            return ReadVerdict()
        return ReadVerdict(failure="log_not_found after an acknowledged write")
    return ReadVerdict(failure=f"{status} {code or 'unexpected answer'}")
