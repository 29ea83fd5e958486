"""Quorum reads that arrive together share one barrier, proposed with the longest timeout
of its readers (a reader with a short timeout must not cut the others short)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftlog.config import config_from_mapping
from raftlog.service.log_service import LogService
from raftlog.service.memory_node import MemoryNode
from raftlog.service.types import ReadOptions

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

NODES = [
    {"id": f"n{i}", "raft": f"127.0.0.1:700{i}", "http": f"127.0.0.1:800{i}"} for i in (1, 2, 3)
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_reads_arriving_together_share_a_barrier_with_the_longest_timeout(
    tmp_path: Path,
) -> None:
    config = config_from_mapping({"cluster": {"nodes": NODES}}, node_id="n1", data_dir=tmp_path)
    # A follower: the leader confirms quorum reads by ReadIndex, without a barrier.
    with MemoryNode(config, leader="n2") as node:
        service = LogService(node, config)
        await service.start()
        asked: list[float] = []
        real_barrier = node.barrier

        async def barrier(timeout: float = 10.0) -> int:
            asked.append(timeout)
            return await real_barrier(timeout)

        node.barrier = barrier  # type: ignore[method-assign]
        reads = [service.list_logs(None, 10, ReadOptions(timeout=t)) for t in (0.5, 7.0, 3.0)]
        pages = await asyncio.gather(*reads)
        assert all(p.logs == [] for p in pages)
        assert asked == [7.0]
        await service.list_logs(None, 10, ReadOptions(timeout=2.0))
        assert asked == [7.0, 2.0]  # a later read forms the next group
