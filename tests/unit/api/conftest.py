"""Fixtures for the API tests: a FakeLogService behind the app, an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from raftlog.service.fake import FakeLogService
from tests.unit.api.support import TEST_LIMITS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeLogService:
    return FakeLogService(limits=TEST_LIMITS)


@pytest.fixture
async def client(fake: FakeLogService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fake)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
