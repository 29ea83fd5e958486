"""The Spawner records every process before a signal may interrupt the benchmark."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from raftlog.bench.procs import Spawner

pytestmark = pytest.mark.unit


class Interrupted(BaseException):
    pass


def test_a_signal_during_spawn_is_raised_only_after_the_process_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spawner = Spawner()

    class FakePopen:
        pid = 4242

        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            assert kwargs["start_new_session"] is True  # its own group: killpg reaches it
            assert spawner.deferring == 1
            spawner.pending = 2  # what the runner's handler does while deferring

    def interrupt(signum: int) -> None:
        raise Interrupted(signum)

    spawner.on_pending = interrupt
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    with pytest.raises(Interrupted):
        spawner.spawn(["true"])
    assert spawner.pids == [4242]
    assert spawner.deferring == 0 and spawner.pending is None
