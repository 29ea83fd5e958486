"""Fixtures shared by the RaftNode tests of this package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftlog.raft.node import RaftNode
from tests.unit.raft.test_crash_durability import configs


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, RaftNode]]:
    started: dict[str, RaftNode] = {}
    try:
        for nid, config in configs(tmp_path, 3).items():
            started[nid] = RaftNode(config)
            started[nid].start()
        yield started
    finally:
        for node in started.values():
            node.stop()
