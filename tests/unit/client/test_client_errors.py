"""Every error code of the contract becomes its exception class, with its details."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from raftlog import client as rc
from raftlog.client import errors as client_errors

from ._fakes import Recorder, Sleeps, appended, error

pytestmark = pytest.mark.unit

# (status, code, class, details) for every row of the contract's table.
TABLE: list[tuple[int, str, type[rc.RaftlogClientError], dict[str, Any]]] = [
    (400, "invalid_request", rc.InvalidRequest, {"field": "limit"}),
    (401, "unauthorized", rc.Unauthorized, {}),
    (403, "forbidden", rc.Forbidden, {}),
    (404, "log_not_found", rc.LogNotFound, {}),
    (404, "offset_not_found", rc.OffsetNotFound, {"next_offset": 3}),
    (409, "offset_mismatch", rc.OffsetMismatch, {"next_offset": 12}),
    (409, "idempotency_key_reused", rc.IdempotencyKeyReused, {}),
    (409, "membership_change_in_progress", rc.MembershipChangeInProgress, {}),
    (410, "trimmed", rc.Trimmed, {"first_offset": 50}),
    (413, "entry_too_large", rc.EntryTooLarge, {}),
    (413, "batch_too_large", rc.BatchTooLarge, {}),
    (413, "request_too_large", rc.RequestTooLarge, {}),
    (429, "overloaded", rc.Overloaded, {}),
    (503, "no_leader", rc.NoLeader, {}),
    (503, "no_quorum", rc.NoQuorum, {}),
    (503, "too_stale", rc.TooStale, {}),
    (504, "outcome_unknown", rc.OutcomeUnknown, {}),
    (504, "timeout", rc.Timeout, {}),
    (504, "not_fully_replicated", rc.NotFullyReplicated, {"committed": True, **appended(7, 2)}),
    (507, "insufficient_storage", rc.InsufficientStorage, {}),
]

DEFINITE = {400, 401, 403, 409, 413, 429, 503, 507}


def _client(status: int, code: str, details: dict[str, Any]) -> tuple[rc.Client, Recorder]:
    rec = Recorder(
        lambda r: error(
            status, code, f"{code} happened", extra_headers={"Retry-After": "1"}, **details
        )
    )
    client = rc.Client("http://n1:8001", retries=0, transport=rec.transport())
    client._sleep = Sleeps()
    return client, rec


@pytest.mark.parametrize(("status", "code", "cls", "details"), TABLE, ids=[t[1] for t in TABLE])
def test_write_error_maps_to_its_class(
    status: int, code: str, cls: type[rc.RaftlogClientError], details: dict[str, Any]
) -> None:
    client, _ = _client(status, code, details)
    with pytest.raises(cls) as info:
        client.append("orders", 1)
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.code, exc.message) == (status, code, f"{code} happened")
    assert exc.details == details
    assert exc.node == "n1" and exc.meta.term == 3
    # The contract's rule for writes: these statuses mean nothing was written.
    assert exc.definitely_not_applied is (status in DEFINITE)


@pytest.mark.parametrize(("status", "code", "cls", "details"), TABLE, ids=[t[1] for t in TABLE])
def test_read_errors_never_claim_a_write(
    status: int, code: str, cls: type[rc.RaftlogClientError], details: dict[str, Any]
) -> None:
    client, _ = _client(status, code, details)
    with pytest.raises(cls) as info:
        client.get("orders", 0)
    assert info.value.definitely_not_applied


def test_details_are_exposed_as_properties() -> None:
    client, _ = _client(409, "offset_mismatch", {"next_offset": 12})
    with pytest.raises(rc.OffsetMismatch) as mismatch:
        client.append("orders", 1, expected_offset=3)
    assert mismatch.value.next_offset == 12

    client, _ = _client(410, "trimmed", {"first_offset": 50})
    with pytest.raises(rc.Trimmed) as trimmed:
        client.get("orders", 1)
    assert trimmed.value.first_offset == 50

    details = {"committed": True, **appended(7, 2)}
    client, rec = _client(504, "not_fully_replicated", details)
    with pytest.raises(rc.NotFullyReplicated) as nfr:
        client.append("orders", 1, ack="all")
    assert nfr.value.committed and (nfr.value.offset, nfr.value.last_offset) == (7, 8)
    result = nfr.value.result
    assert result is not None and (result.count, result.index) == (2, 1207)
    assert len(rec.requests) == 1  # a 504 is never retried

    client, _ = _client(429, "overloaded", {})
    with pytest.raises(rc.Overloaded) as overloaded:
        client.append("orders", 1)
    assert overloaded.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "not_found", rc.NotFound),
        (409, "some_new_conflict", rc.Conflict),
        (413, "too_big", rc.TooLarge),
        (503, "node_stopped", rc.Unavailable),
        (503, "not_ready", rc.Unavailable),
    ],
)
def test_unknown_codes_fall_back_to_the_status_class(
    status: int, code: str, cls: type[rc.RaftlogClientError]
) -> None:
    client, _ = _client(status, code, {})
    with pytest.raises(cls) as info:
        client.get("orders", 0)
    assert type(info.value) is cls and info.value.code == code


def test_an_error_without_the_envelope_still_maps_by_status() -> None:
    rec = Recorder(lambda r: httpx.Response(503, text="Service Unavailable"))
    client = rc.Client("http://n1:8001", retries=0, transport=rec.transport())
    with pytest.raises(rc.Unavailable) as info:
        client.append("orders", 1)
    assert info.value.code == "http_503" and info.value.definitely_not_applied


def test_hierarchy_lets_callers_catch_by_kind() -> None:
    assert issubclass(rc.NoLeader, rc.Unavailable)
    assert issubclass(rc.OffsetMismatch, rc.Conflict)
    assert issubclass(rc.UnexpectedWriteResponse, rc.OutcomeUnknown)
    assert not issubclass(rc.OutcomeUnknown, rc.ConnectionFailed)
    assert set(client_errors.__all__) - {"DEFINITE_STATUSES", "error_class"} <= set(rc.__all__)
