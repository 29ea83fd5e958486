"""The client verbs (status, append, read, tail) run in-process against a MockTransport."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from raftlog.cli import client_verbs as cli_client
from tests.unit.client._fakes import (
    Handler,
    Recorder,
    appended,
    body_of,
    cluster_body,
    entry,
    error,
    ok,
)

pytestmark = pytest.mark.unit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftlog")
    cli_client.register(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(
    monkeypatch: pytest.MonkeyPatch, handler: Handler, argv: Sequence[str]
) -> tuple[int, Recorder]:
    rec = Recorder(handler)
    monkeypatch.setattr(cli_client, "_transport_for_tests", rec.transport())
    monkeypatch.delenv("RAFTLOG_URL", raising=False)
    monkeypatch.delenv("RAFTLOG_TOKEN", raising=False)
    args = build_parser().parse_args(argv)
    return int(args.func(args)), rec


def lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def test_status_prints_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run_cli(monkeypatch, lambda r: ok(cluster_body()), ["status"])
    out = capsys.readouterr().out
    assert code == 0
    assert rec.requests[0].url.host == "127.0.0.1" and rec.requests[0].url.port == 8001
    assert "leader n1  term 3  commit index 1210" in out
    header, n1, n2, n3 = out.splitlines()[-4:]
    assert header.split()[:5] == ["NODE", "ROLE", "APPLIED", "MATCH", "LAG"]
    assert n1.split() == ["n1", "leader", "1210", "1210", "0", "0", "ms", "yes", "n1:8001"]
    assert n2.split() == ["n2", "follower", "-", "1209", "1", "20", "ms", "yes", "n2:8002"]
    assert n3.split()[-2:] == ["no", "n3:8003"]


def test_status_json_and_url_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "a":
            raise httpx.ConnectError("refused", request=r)
        return ok(cluster_body())

    argv = ["status", "--json", "--url", "http://a:1", "--url", "b:2", "--token", "t"]
    code, rec = run_cli(monkeypatch, handler, argv)
    assert code == 0
    assert json.loads(capsys.readouterr().out) == cluster_body()
    assert rec.hosts() == ["a", "b"]
    assert rec.requests[1].headers["authorization"] == "Bearer t"


def test_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(lambda r: ok(cluster_body()))
    monkeypatch.setattr(cli_client, "_transport_for_tests", rec.transport())
    monkeypatch.setenv("RAFTLOG_URL", "http://e1:1,http://e2:2")
    args = build_parser().parse_args(["status"])
    assert args.func(args) == 0
    assert rec.hosts() == ["e1"]


def test_append_values_are_json_when_they_parse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    offsets = iter(range(10, 20))
    code, rec = run_cli(
        monkeypatch,
        lambda r: ok(appended(next(offsets)), 201),
        ["append", "orders", '{"id": 1}', "hello", "42", "NaN", "--key", "k", "--ack", "all"],
    )
    assert code == 0
    assert [body_of(r) for r in rec.requests] == [
        {"value": {"id": 1}, "key": "k"},
        {"value": "hello", "key": "k"},
        {"value": 42, "key": "k"},
        {"value": "NaN", "key": "k"},
    ]
    assert all(r.url.params["ack"] == "all" for r in rec.requests)
    assert [x["offset"] for x in lines(capsys.readouterr().out)] == [10, 11, 12, 13]


def test_append_expected_offset_advances_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        return ok(appended(int(r.url.params["expected_offset"])), 201)

    code, rec = run_cli(monkeypatch, handler, ["append", "o", "a", "b", "--expected-offset", "5"])
    assert code == 0
    assert [r.url.params["expected_offset"] for r in rec.requests] == ["5", "6"]


def test_append_batch_sends_one_atomic_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run_cli(
        monkeypatch, lambda r: ok(appended(0, 3), 201), ["append", "o", "1", "2", "x", "--batch"]
    )
    assert code == 0 and len(rec.requests) == 1
    assert body_of(rec.requests[0]) == {"entries": [{"value": 1}, {"value": 2}, {"value": "x"}]}
    assert lines(capsys.readouterr().out) == [appended(0, 3, log="orders")]


def test_append_ack_leader_prints_accepted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"log": "o", "accepted": True, "message": "may be lost"}
    code, _ = run_cli(monkeypatch, lambda r: ok(body, 202), ["append", "o", "v", "--ack", "leader"])
    assert code == 0 and lines(capsys.readouterr().out) == [body]


def test_server_error_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = lambda r: error(409, "offset_mismatch", "expected 3, next is 7", next_offset=7)  # noqa: E731
    code, _ = run_cli(monkeypatch, handler, ["append", "o", "v", "--expected-offset", "3"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == "error offset_mismatch: expected 3, next is 7"


def test_outcome_unknown_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run_cli(monkeypatch, lambda r: error(504, "outcome_unknown"), ["append", "o", "v"])
    captured = capsys.readouterr()
    assert code == 3 and len(rec.requests) == 1
    assert "outcome unknown: the write may or may not have been applied" in captured.err
    assert captured.out == ""


def test_broken_connection_on_append_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("reset", request=r)

    code, _ = run_cli(monkeypatch, handler, ["append", "o", "v"])
    assert code == 3 and "outcome unknown" in capsys.readouterr().err


def test_no_node_reachable_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=r)

    argv = ["read", "o", "--url", "a:1,b:2", "--retries", "0"]
    code, rec = run_cli(monkeypatch, handler, argv)
    assert code == 1 and capsys.readouterr().err.startswith("error connection_failed: ")
    assert rec.hosts() == ["a", "b"]


def test_read_prints_one_entry_per_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = {"entries": [entry(3, {"a": "é"}), entry(4, None, key="k")], "next_offset": 5}
    argv = ["read", "o", "--from", "3", "--limit", "2", "--consistency", "any", "--min-index", "9"]
    code, rec = run_cli(monkeypatch, lambda r: ok(page), argv)
    assert code == 0
    assert lines(capsys.readouterr().out) == page["entries"]
    params = rec.requests[0].url.params
    assert (params["from"], params["limit"], params["consistency"], params["min_index"]) == (
        "3",
        "2",
        "any",
        "9",
    )


def test_tail_follows_until_max_entries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pages = iter(
        [
            {"entries": [entry(0)], "next_offset": 1},
            {"entries": [], "next_offset": 1},
            {"entries": [entry(1), entry(2)], "next_offset": 3},
        ]
    )
    code, rec = run_cli(
        monkeypatch, lambda r: ok(next(pages)), ["tail", "o", "--max-entries", "2", "--wait", "1"]
    )
    assert code == 0
    assert [e["offset"] for e in lines(capsys.readouterr().out)] == [0, 1]
    assert {r.url.params["consistency"] for r in rec.requests} == {"any"}
    assert rec.requests[0].url.params["wait"] == "1"


def test_tail_ctrl_c_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = iter([ok({"entries": [entry(0)], "next_offset": 1})])

    def handler(r: httpx.Request) -> httpx.Response:
        for response in calls:
            return response
        raise KeyboardInterrupt

    code, _ = run_cli(monkeypatch, handler, ["tail", "o"])
    assert code == 0 and [e["offset"] for e in lines(capsys.readouterr().out)] == [0]


def test_tail_trimmed_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = lambda r: error(410, "trimmed", "offset 0 was trimmed", first_offset=9)  # noqa: E731
    code, _ = run_cli(monkeypatch, handler, ["tail", "o"])
    assert code == 1 and "error trimmed: offset 0 was trimmed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["append", "o"],
        ["read"],
        ["read", "o", "--limit", "0"],
        ["tail", "o", "--consistency", "bogus"],
        ["tail", "o", "--wait", "61"],
        ["status", "--timeout", "-1"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_bad_url_and_idempotency_key_misuse_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rec = run_cli(monkeypatch, lambda r: ok({}), ["status", "--url", "ftp://x"])
    assert code == 2 and rec.requests == []
    argv = ["append", "o", "a", "b", "--idempotency-key", "k"]
    code, rec = run_cli(monkeypatch, lambda r: ok({}), argv)
    assert code == 2 and rec.requests == []


def test_main_runs_a_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(lambda r: ok(cluster_body()))
    monkeypatch.setattr(cli_client, "_transport_for_tests", rec.transport())
    assert cli_client.main(["status", "--url", "http://m:1"]) == 0
    assert rec.hosts() == ["m"]


def test_parse_value() -> None:
    assert cli_client.parse_value('{"a": [1, null]}') == {"a": [1, None]}
    assert cli_client.parse_value("true") is True
    assert cli_client.parse_value('"42"') == "42"
    assert cli_client.parse_value("not json") == "not json"
    assert cli_client.parse_value("Infinity") == "Infinity"
