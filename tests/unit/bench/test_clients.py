"""The Python client rows read whatever ``raftlog.client.load`` returns, or say why not."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from raftlog.bench import clients
from raftlog.bench.clients import client_load_missing, figures_of

pytestmark = pytest.mark.unit


@dataclass
class LoadResult:
    ops: int
    errors: int
    latencies: list[float]
    duration_s: float | None = None


def test_figures_from_attributes_use_the_reported_duration() -> None:
    ops_per_s, errors, ms = figures_of(LoadResult(500, 2, [0.003, 0.001, 0.002], 2.0), 9.0)
    assert ops_per_s == 250.0 and errors == 2
    assert ms == pytest.approx([1.0, 2.0, 3.0])


def test_figures_from_a_mapping_fall_back_to_the_elapsed_time() -> None:
    ops_per_s, errors, ms = figures_of({"ops": 90, "errors": 0, "latencies": []}, 3.0)
    assert (ops_per_s, errors, ms) == (30.0, 0, [])


def test_a_result_of_another_shape_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected result"):
        figures_of({"count": 3}, 1.0)


def test_a_missing_module_or_function_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> object:
        raise ImportError("No module named 'raftlog.client.load'")

    monkeypatch.setattr(clients, "_module", absent)
    assert "not available" in (client_load_missing() or "")

    class Partial:
        async def run_async_appends(self) -> None: ...

    monkeypatch.setattr(clients, "_module", Partial)
    assert client_load_missing() == (
        "raftlog.client.load has no run_sync_appends; client rows skipped"
    )
