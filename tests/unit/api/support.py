"""Shared helpers of the API tests."""

from __future__ import annotations

from typing import Any

import httpx

from raftlog.service.fake import FakeLogService
from raftlog.service.types import AppendRequest, Limits, NewEntry

# Small byte and batch limits keep the "too large" cases cheap.
TEST_LIMITS = Limits(
    max_entry_bytes=1024, max_batch_entries=5, max_batch_bytes=3000, max_request_bytes=16384
)

NODE_HEADERS = (
    "X-Raftlog-Node",
    "X-Raftlog-Cluster",
    "X-Raftlog-Term",
    "X-Raftlog-Applied-Index",
    "X-Raftlog-Leader",
    "X-Raftlog-Last-Contact-Ms",
)


def assert_node_headers(response: httpx.Response, node_id: str = "fake-1") -> None:
    for name in NODE_HEADERS:
        assert name in response.headers, f"{name} missing on {response.status_code}"
    assert response.headers["X-Raftlog-Node"] == node_id


def assert_error(
    response: httpx.Response, status: int, code: str, *, names: str | None = None
) -> dict[str, Any]:
    """The envelope with ``code``; ``names`` must appear in the message. Returns the
    inner error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    if names is not None:
        assert names in error["message"], error["message"]
    if status in (429, 503):
        assert response.headers["Retry-After"] == "1"
    else:
        assert "Retry-After" not in response.headers
    return error


async def seed(fake: FakeLogService, log: str, *values: bytes, key: str | None = None) -> None:
    """Append ``values`` (compact JSON bytes) one per append, then forget the calls."""
    for value in values:
        await fake.append(AppendRequest(log, (NewEntry(value, key),)))
    fake.calls.clear()
