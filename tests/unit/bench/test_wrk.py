"""wrk scripts and output: the Lua ``raftlog bench`` generates, and parsing what wrk prints."""

from __future__ import annotations

import json

import pytest

from raftlog.bench.wrk import (
    PERCENTILES,
    RESULT_MARKER,
    RequestSpec,
    lua_script,
    parse_output,
    wrk_argv,
)

pytestmark = pytest.mark.unit


def _wrk_output(result: dict[str, object]) -> str:
    """What wrk prints with our done(): its own summary, then the marker line."""
    return (
        "Running 2s test @ http://127.0.0.1:1234\n"
        "  2 threads and 64 connections\n"
        "  5000 requests in 2.00s, 1.2MB read\n"
        "Requests/sec:   2500.00\n" + RESULT_MARKER + json.dumps(result) + "\n"
    )


def _raw(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "requests": 5000,
        "duration_us": 2_000_000,
        "status": 100,
        "connect": 0,
        "read": 2,
        "write": 0,
        "timeout": 3,
        "percentiles_us": [[p, int(p * 100)] for p in PERCENTILES],
    }
    raw.update(overrides)
    return raw


def test_parse_output_counts_only_answers_below_400_as_ok() -> None:
    result = parse_output(_wrk_output(_raw()))
    assert result.requests == 5000
    assert result.ok == 4900
    assert result.ok_per_s == pytest.approx(2450.0)
    assert result.socket_errors == 5
    assert result.duration_s == pytest.approx(2.0)


def test_parse_output_turns_microseconds_into_milliseconds() -> None:
    result = parse_output(_wrk_output(_raw()))
    assert result.percentile(50.0) == pytest.approx(5.0)  # 5000 us
    assert result.percentile(99.0) == pytest.approx(9.9)
    assert [p for p, _ in result.percentiles] == list(PERCENTILES)
    with pytest.raises(KeyError):
        result.percentile(42.5)


def test_parse_output_without_the_result_line_says_so() -> None:
    with pytest.raises(ValueError, match="no result line"):
        parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_output_rejects_a_malformed_result_line() -> None:
    raw = _raw()
    del raw["status"]
    with pytest.raises(ValueError, match="malformed"):
        parse_output(_wrk_output(raw))


def test_a_zero_duration_gives_zero_rate_not_a_division_error() -> None:
    assert parse_output(_wrk_output(_raw(duration_us=0))).ok_per_s == 0.0


def test_a_fixed_request_uses_wrks_static_fields() -> None:
    body = json.dumps({"value": "x" * 100})
    script = lua_script(RequestSpec("POST", ("/v1/logs/bench/entries",), (body,)))
    assert 'wrk.method = "POST"' in script
    assert 'wrk.path = "/v1/logs/bench/entries"' in script
    assert f"wrk.body = {json.dumps(body)}" in script
    assert "request = function" not in script  # wrk's fast path: no Lua per request
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert "done = function(summary, latency, requests)" in script


def test_several_paths_pick_one_at_random_per_request_seeded_per_thread() -> None:
    paths = tuple(f"/v1/logs/r/entries/{i}?consistency=any" for i in range(3))
    script = lua_script(RequestSpec("GET", paths))
    assert "request = function" in script
    assert 'paths = {"/v1/logs/r/entries/0?consistency=any",' in script
    assert "math.randomseed(seed or 1)" in script
    assert 'thread:set("seed", counter)' in script
    assert 'if body == "" then body = nil end' in script  # GET: no body


def test_the_done_hook_reports_every_percentile_and_the_marker() -> None:
    script = lua_script(RequestSpec("GET", ("/",)))
    assert f"marker = {json.dumps(RESULT_MARKER)}" in script
    listed = script.split("percentiles = {", 1)[1].split("}", 1)[0].split(",")
    assert [float(p) for p in listed] == list(PERCENTILES)
    for field in ("summary.requests", "summary.duration", "e.status", "e.timeout"):
        assert field in script
    assert "latency:percentile(p)" in script


def test_lua_strings_escape_quotes_and_backslashes() -> None:
    script = lua_script(RequestSpec("POST", ("/p",), ('{"a":"b\\\\c"}',)))
    assert 'wrk.body = "{\\"a\\":\\"b\\\\\\\\c\\"}"' in script


@pytest.mark.parametrize(("connections", "threads"), [(1, 1), (4, 1), (6, 1), (16, 2), (64, 2)])
def test_wrk_threads_follow_connections_at_most_two(connections: int, threads: int) -> None:
    argv = wrk_argv("http://127.0.0.1:9", __import__("pathlib").Path("s.lua"), connections, 2.0)
    assert argv[:4] == ["wrk", f"-t{threads}", f"-c{connections}", "-d2s"]
    assert argv[-1] == "http://127.0.0.1:9"
