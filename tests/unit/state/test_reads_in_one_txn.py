"""The state's combined read: the log info with an entry from one read transaction,
agreeing with the separate reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftlog.commands import Append, AppendEntry, Trim, encode
from raftlog.state.machine import StateMachine

pytestmark = pytest.mark.unit


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[StateMachine]:
    with StateMachine(tmp_path / "state", durability="os") as machine:
        machine.apply(1, 1, encode(Append("a", tuple(AppendEntry(b"%d" % i) for i in range(6)), 1)))
        machine.apply(2, 1, encode(Trim("a", 2)))
        yield machine


def test_entry_with_info(sm: StateMachine) -> None:
    info = sm.log_info("a")
    assert info is not None and (info.first_offset, info.next_offset) == (2, 6)
    assert sm.entry_with_info("a", 3) == (info, sm.get_entry("a", 3))
    assert sm.entry_with_info("a", 1) == (info, None)  # trimmed: the info says so
    assert sm.entry_with_info("a", 6) == (info, None)  # past the end
    assert sm.entry_with_info("nope", 0) == (None, None)
    assert sm.entry_with_info("-bad", 0) == (None, None)
