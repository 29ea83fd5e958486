"""A client that gives up mid-request is logged as one INFO line without a traceback, gets
no answer, and writes nothing (the ASGI messages are those uvicorn sends when the peer
closes the connection before the whole body arrived)."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message

from api.app import create_app
from raftlog.service.fake import FakeLogService

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


def _scope(path: str, declared_length: int) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"ack=quorum",
        "headers": [
            (b"host", b"t"),
            (b"content-type", b"application/json"),
            (b"content-length", str(declared_length).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
    }


async def test_a_body_cut_off_by_the_client_is_one_info_line(
    fake: FakeLogService, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(fake)
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"value": "par', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.DEBUG):
        await app(_scope("/v1/logs/audit/entries", 100), receive, send)
    records = [r for r in caplog.records if r.name.startswith("raftlog")]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        (
            "INFO",
            "client disconnected during POST /v1/logs/audit/entries; no answer sent",
        )
    ]
    assert all(r.exc_info is None for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sent == []  # nobody to answer
    assert fake.calls == [] and fake.logs == {}


async def test_other_unexpected_errors_still_log_a_traceback(
    fake: FakeLogService, caplog: pytest.LogCaptureFixture
) -> None:
    """The disconnect case is narrow: a real bug keeps its ERROR and traceback."""
    app = create_app(fake)
    fake.fail_next = RuntimeError("a bug")
    incoming: list[Message] = [{"type": "http.request", "body": b'{"value": 1}'}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        await app(_scope("/v1/logs/audit/entries", 12), receive, send)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "unhandled error" in errors[0].getMessage()
    assert sent[0]["status"] == 500
