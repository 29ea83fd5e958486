"""raftlog serve's garbage-collector tuning (raftlog.cli.serve.tune_gc)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from raftlog.cli.serve import GC_THRESHOLDS, tune_gc

pytestmark = pytest.mark.unit


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


@pytest.mark.usefixtures("restore_gc")
def test_tuning_freezes_start_up_and_collects_less_often_but_still_collects_cycles() -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # what start-up built is out of the collector's sight
    a, b = _Node(), _Node()
    a.peer, b.peer = b, a  # a cycle: only the cyclic collector frees it
    probe = weakref.ref(a)
    del a, b
    gc.collect()
    assert probe() is None
