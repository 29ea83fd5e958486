"""raftlog.cli.entry: the argument parsing of every verb, check-config, config, and serve's
and demo's handling of their arguments, without starting a node or a cluster (the demo's
runner is replaced; serve is reached only with a configuration it refuses)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from raftlog.cli import entry
from raftlog.cli.entry import build_parser, main

pytestmark = pytest.mark.unit

NODES = [
    {"id": "n1", "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
    {"id": "n2", "raft": "127.0.0.1:7002", "http": "127.0.0.1:8002"},
    {"id": "n3", "raft": "127.0.0.1:7003", "http": "127.0.0.1:8003"},
]


def write_config(tmp_path: Path, node: str = "") -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nname = "t"\n'
        + "".join(
            f'[[cluster.nodes]]\nid = "{n["id"]}"\nraft = "{n["raft"]}"\nhttp = "{n["http"]}"\n'
            for n in NODES
        )
        + "[node]\n"
        + node
    )
    return path


def node_argv(verb: str, path: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [verb, "--config", str(path), "--id", "n2", "--data-dir", str(tmp_path / "d"), *extra]


@pytest.fixture(autouse=True)
def _no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAFTLOG_* variables of the shell running the tests must not leak into them."""
    for name in list(os.environ):
        if name.startswith("RAFTLOG_"):
            monkeypatch.delenv(name)


# -- parsing ---------------------------------------------------------------------------------


def test_serve_arguments_and_setting_flags_parse(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    args = build_parser().parse_args(
        node_argv("serve", path, tmp_path, "--heartbeat-ms", "70", "--durability", "os")
    )
    assert args.func is entry.cmd_serve
    assert (args.config, args.id, args.data_dir) == (str(path), "n2", str(tmp_path / "d"))
    assert args.setting_heartbeat_ms == "70" and args.setting_durability == "os"
    assert args.setting_leader_lease_ms is None
    config = entry._load(args)
    assert config.node_id == "n2" and config.data_dir == tmp_path / "d"
    assert config.node.heartbeat_ms == 70 and config.node.durability == "os"


def test_every_node_setting_has_a_flag(tmp_path: Path) -> None:
    from raftlog.config import setting_names

    args = build_parser().parse_args(["serve", "--config", "c.toml"])
    for name in setting_names():
        assert hasattr(args, f"setting_{name}"), name


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],  # --config is required
        ["check-config", "--id", "n1"],
        ["serve", "--config", "c.toml", "--no-such-setting", "1"],
        ["demo", "--bogus"],
        ["config"],  # --local or --urls
        ["config", "--local", "3", "--urls", "c.toml"],  # not both
        ["config", "--local", "three"],
        [],  # a verb is required
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: raftlog" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from raftlog import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"raftlog {__version__}"


# -- demo: its arguments reach run_demo --------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], {"keep": False, "base_dir": None, "fast": True}),
        (
            ["--keep", "--dir", "/somewhere", "--slow-timing"],
            {"keep": True, "base_dir": "/somewhere", "fast": False},
        ),
    ],
)
def test_demo_arguments_reach_the_runner(
    monkeypatch: pytest.MonkeyPatch, extra: list[str], expected: dict[str, Any]
) -> None:
    import raftlog.cli.demo

    calls: list[dict[str, Any]] = []

    def fake_run_demo(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 3

    monkeypatch.setattr(raftlog.cli.demo, "run_demo", fake_run_demo)
    assert main(["demo", *extra]) == 3  # its exit code is the command's
    assert calls == [expected]


# -- serve: a refused configuration never starts anything ---------------------------------------


def test_serve_refuses_a_bad_configuration_with_exit_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import raftlog.cli.serve

    def must_not_run(config: Any) -> int:
        raise AssertionError("serve started with a refused configuration")

    monkeypatch.setattr(raftlog.cli.serve, "serve", must_not_run)
    path = write_config(tmp_path)
    assert main(node_argv("serve", path, tmp_path, "--heartbeat-ms", "fast")) == 78
    assert "raftlog serve: --heartbeat-ms must be an integer" in capsys.readouterr().err
    # a setting this version does not support is refused before anything starts
    assert main(node_argv("serve", path, tmp_path, "--idempotency-window-s", "60")) == 78
    err = capsys.readouterr().err
    assert "raftlog serve: --idempotency-window-s is not supported in this version yet" in err
    assert main(["serve", "--config", str(path), "--data-dir", str(tmp_path)]) == 78
    assert "node id is required" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_serve_passes_the_loaded_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import raftlog.cli.serve

    seen: list[Any] = []

    def fake_serve(config: Any) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(raftlog.cli.serve, "serve", fake_serve)
    path = write_config(tmp_path, "heartbeat_ms = 90\n")
    assert main(node_argv("serve", path, tmp_path)) == 0
    (config,) = seen
    assert config.node_id == "n2" and config.node.heartbeat_ms == 90


# -- check-config --------------------------------------------------------------------------


def test_check_config_prints_the_effective_settings_with_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, 'cluster_secret = "s3cret"\nheartbeat_ms = 80\n')
    monkeypatch.setenv("RAFTLOG_LEADER_LEASE_MS", "450")
    assert main(node_argv("check-config", path, tmp_path, "--durability", "os")) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    shown = json.loads(out)
    assert shown["cluster"] == "t" and shown["node_id"] == "n2"
    assert shown["data_dir"] == str(tmp_path / "d")
    assert shown["raft_bind"] == "127.0.0.1:7002" and shown["http_bind"] == "127.0.0.1:8002"
    assert shown["nodes"] == NODES
    node = shown["node"]
    assert node["cluster_secret"] == "***"
    assert node["heartbeat_ms"] == 80  # file
    assert node["leader_lease_ms"] == 450  # environment
    assert node["durability"] == "os"  # flag
    assert node["max_entry_bytes"] == 1 << 20  # default
    assert node["api_tokens"] == []


@pytest.mark.parametrize(
    ("node", "extra", "message"),
    [
        ("heartbeat_ms = 400\n", [], "more than 3 x heartbeat_ms"),
        ("", ["--metrics-public", "false"], "--metrics-public = false is not supported"),
        ("idempotency_keys_max = 10\n", [], "node.idempotency_keys_max is not supported"),
        ("", ["--election-timeout-min-ms", "x"], "--election-timeout-min-ms must be an integer"),
    ],
)
def test_check_config_reports_an_invalid_configuration(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    node: str,
    extra: list[str],
    message: str,
) -> None:
    path = write_config(tmp_path, node)
    assert main(node_argv("check-config", path, tmp_path, *extra)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("invalid configuration: ") and message in captured.err


def test_check_config_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(node_argv("check-config", tmp_path / "none.toml", tmp_path)) == 1
    assert "does not exist" in capsys.readouterr().err


# -- config --urls (config --local is covered by test_local_config.py) -------------------


def test_config_urls_prints_every_node_and_the_scheme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    assert main(["config", "--urls", str(path)]) == 0
    assert capsys.readouterr().out == (
        "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003\n"
    )
    tls = write_config(tmp_path, 'tls_cert_file = "c.pem"\ntls_key_file = "k.pem"\n')
    assert main(["config", "--urls", str(tls)]) == 0
    assert capsys.readouterr().out.startswith("https://127.0.0.1:8001,")


def test_config_urls_of_an_invalid_configuration_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "heartbeat_ms = 400\n")
    assert main(["config", "--urls", str(path)]) == 1
    assert "raftlog config: election_timeout_min_ms" in capsys.readouterr().err
