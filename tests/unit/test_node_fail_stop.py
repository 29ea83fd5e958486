"""RaftNode fail-stops (instead of retrying or recording a result) on node-local failures."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import msgpack
import pytest

from raftlog.commands import Append, AppendEntry, encode
from raftlog.errors import NodeStopped, OutcomeUnknown
from raftlog.raft.compat import check_pysyncobj_version
from raftlog.raft.lossy import LossyDisk
from raftlog.raft.node import RaftNode
from raftlog.state_machine import Appended
from tests.unit.test_crash_durability import configs, wait_for

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def one_entry(value: str) -> Append:
    entry = AppendEntry(value_json=f'"{value}"'.encode())
    return Append(log="l", entries=(entry,), timestamp_ms=int(time.time() * 1000))


def run_single(tmp_path: Path, poison: bytes | None, fault: OSError | None) -> None:
    config = configs(tmp_path, 1)["n1"]
    fatal: list[str] = []
    node = RaftNode(config, disk=LossyDisk(), on_fatal=fatal.append)
    node.start()

    async def scenario() -> None:
        await wait_for(lambda: node.status().role == "leader", 10, "leadership")
        ok = await node.propose(one_entry("before"), timeout=5)
        assert isinstance(ok, Appended)
        applied_before = node.state.last_applied()
        if fault is not None:

            def inject(stage: str) -> None:
                raise fault

            node.state._fault_injector = inject
            bad: bytes = encode(one_entry("after"))
        else:
            assert poison is not None
            bad = poison
        with pytest.raises((OutcomeUnknown, NodeStopped)):
            await node.propose(bad, timeout=3)
        await wait_for(lambda: fatal, 5, "the fail-stop callback")
        assert node.failed is not None
        assert node.state.last_applied() == applied_before  # nothing advanced
        with pytest.raises(NodeStopped):
            await node.propose(one_entry("later"), timeout=1)

    try:
        asyncio.run(scenario())
        assert node._thread is not None
        node._thread.join(5)
        assert not node._thread.is_alive(), "the tick thread kept running after fail-stop"
    finally:
        node.stop()


def test_unknown_command_version_stops_the_node(tmp_path: Path) -> None:
    newer = msgpack.packb({"v": 99, "k": "append", "log": "l"}, use_bin_type=True)
    run_single(tmp_path, newer, None)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_storage_error_stops_the_node(tmp_path: Path, code: int) -> None:
    run_single(tmp_path, None, OSError(code, "injected"))


def test_wrong_pysyncobj_version_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"pysyncobj==0\.3\.17"):
        check_pysyncobj_version("0.3.14")
