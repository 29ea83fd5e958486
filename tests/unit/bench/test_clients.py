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


@dataclass
class LoadFigures:  # the shape of raftlog.client.load's result
    ok: int
    errors: dict[str, int]
    latencies_s: tuple[float, ...]
    elapsed_s: float


def test_figures_from_load_figures_sum_the_errors_by_code() -> None:
    figures = LoadFigures(300, {"no_leader": 2, "ReadTimeout": 1}, (0.002, 0.004), 3.0)
    assert figures_of(figures, 99.0) == (100.0, 3, [2.0, 4.0])


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


def test_client_measure_calls_the_loaders_with_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    class Loader:
        @staticmethod
        async def run_async_appends(**kwargs: object) -> LoadResult:
            calls.append(("async", kwargs))
            return LoadResult(64, 1, [0.010] * 98 + [0.050, 0.090], 2.0)

        @staticmethod
        def run_sync_appends(**kwargs: object) -> dict[str, object]:
            calls.append(("sync", kwargs))
            return {"ops": 10, "errors": 0, "latencies": [0.002], "duration_s": 1.0}

    monkeypatch.setattr(clients, "_module", lambda: Loader)
    urls = ["http://127.0.0.1:9"]
    result = clients.client_measure(clients.ASYNC, 32, 2.0)(urls)
    assert result.key == "async_client@32" and result.ops_per_s == 32.0
    assert result.p50_ms == pytest.approx(10.0) and result.p99_ms == pytest.approx(50.0)
    sync = clients.client_measure(clients.SYNC, 1, 1.0)(urls)
    assert sync.key == "sync_client@1" and sync.ops_per_s == 10.0
    assert calls == [
        ("async", {"urls": urls, "connections": 32, "duration_s": 2.0, "value_bytes": 100}),
        ("sync", {"urls": urls, "connections": 1, "duration_s": 1.0, "value_bytes": 100}),
    ]
