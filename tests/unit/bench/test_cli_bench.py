"""The ``raftlog bench`` verb: its flags become BenchOptions; --quick sets the CI sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlog.bench import runner
from raftlog.bench.runner import BenchOptions
from raftlog.cli.entry import main

pytestmark = pytest.mark.unit


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[BenchOptions]:
    seen: list[BenchOptions] = []

    def fake_run(options: BenchOptions) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(runner, "run_bench", fake_run)
    return seen


def test_defaults_are_three_repetitions_of_five_seconds_and_five_failovers(
    captured: list[BenchOptions],
) -> None:
    assert main(["bench"]) == 0
    (options,) = captured
    assert (options.repeat, options.duration_s, options.failovers) == (3, 5.0, 5)
    assert options.etcd and options.clients and not options.quick
    assert options.json_path is None and options.plots_dir is None


def test_quick_is_one_repetition_of_two_seconds_and_one_failover(
    captured: list[BenchOptions],
) -> None:
    assert main(["bench", "--quick", "--json", "out.json", "--plots", "p", "--no-etcd"]) == 0
    (options,) = captured
    assert (options.repeat, options.duration_s, options.failovers) == (1, 2.0, 1)
    assert options.warmup_s == 0.0 and options.quick and not options.etcd
    assert options.json_path == Path("out.json") and options.plots_dir == Path("p")


def test_explicit_flags_win_over_quick(captured: list[BenchOptions]) -> None:
    assert main(["bench", "--quick", "--repeat", "2", "--duration", "3"]) == 0
    assert (captured[0].repeat, captured[0].duration_s) == (2, 3.0)


@pytest.mark.parametrize("args", [["--repeat", "0"], ["--duration", "0.5"], ["--failovers", "x"]])
def test_bad_values_are_usage_errors(args: list[str], captured: list[BenchOptions]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    assert exc.value.code == 2 and captured == []
