"""``raftlog config --local N`` and raftlog.cli.local_config: the generated file loads for
every node, ports are distinct and free, a secret is set, bad counts are refused."""

from __future__ import annotations

import shlex
import socket
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from raftlog.cli import entry as cli
from raftlog.cli.local_config import (
    MAX_LOCAL_NODES,
    check_node_count,
    generate_local_config,
    serve_command,
)
from raftlog.config import load_config, parse_address
from raftlog.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_generated_file_loads_for_every_node(tmp_path: Path, n: int) -> None:
    cluster = generate_local_config(n)
    path = tmp_path / "cluster.toml"
    path.write_text(cluster.toml)
    ports: list[int] = []
    for i, addr in enumerate(cluster.nodes, start=1):
        config = load_config(path, node_id=f"n{i}", data_dir=tmp_path / f"n{i}", environ={})
        assert config.node_id == addr.id == f"n{i}"
        assert config.nodes == cluster.nodes
        assert config.node.cluster_secret == cluster.cluster_secret
        assert config.cluster_name == "local"
        for address in (config.raft_bind, config.http_bind):
            host, port = parse_address(address, "address")
            assert host == "127.0.0.1"
            ports.append(port)
    assert len(cluster.nodes) == n
    assert len(set(ports)) == 2 * n  # every raft and http port distinct
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # and free right after generation
    assert cluster.urls == [f"http://{a.http}" for a in cluster.nodes]


def test_every_generation_has_its_own_long_secret() -> None:
    a, b = generate_local_config(3), generate_local_config(3)
    assert a.cluster_secret != b.cluster_secret
    assert len(a.cluster_secret) >= 40


@pytest.mark.parametrize("n", [-1, 0, 2, 4, 6, 8, 9, MAX_LOCAL_NODES + 2])
def test_counts_that_are_not_odd_or_out_of_range_are_refused(n: int) -> None:
    with pytest.raises(ConfigError, match=rf"odd number of nodes from 1 to 7 \(got {n}\)"):
        check_node_count(n)
    with pytest.raises(ConfigError):
        generate_local_config(n)


def test_node_settings_are_written_and_validated(tmp_path: Path) -> None:
    cluster = generate_local_config(
        3,
        node_settings={
            "heartbeat_ms": 50,
            "election_timeout_min_ms": 400,
            "leader_lease_ms": 200,
            "durability": "os",
        },
    )
    raw = tomllib.loads(cluster.toml)
    assert raw["node"]["heartbeat_ms"] == 50 and raw["node"]["durability"] == "os"
    with pytest.raises(ConfigError, match="election_timeout_min_ms"):
        generate_local_config(3, node_settings={"election_timeout_min_ms": 100})
    with pytest.raises(ConfigError, match="cluster_secret is generated"):
        generate_local_config(3, node_settings={"cluster_secret": "mine"})


def test_names_and_header_survive_quoting() -> None:
    cluster = generate_local_config(1, name='a "quoted" \\ name', header=["line one", "two"])
    assert cluster.toml.startswith("# line one\n# two\n")
    assert tomllib.loads(cluster.toml)["cluster"]["name"] == 'a "quoted" \\ name'
    with pytest.raises(ConfigError, match="control characters"):
        generate_local_config(1, name="bad\nname")


def test_serve_command_is_one_shell_line(tmp_path: Path) -> None:
    line = serve_command(["raftlog"], tmp_path / "my dir" / "c.toml", "n2", tmp_path / "d 2")
    assert shlex.split(line) == [
        "raftlog",
        "serve",
        "--config",
        str(tmp_path / "my dir" / "c.toml"),
        "--id",
        "n2",
        "--data-dir",
        str(tmp_path / "d 2"),
    ]


def _serve_lines(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if " serve --config " in line]


def test_cli_writes_a_private_file_and_prints_commands_that_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [".venv/bin/raftlog"])
    out = tmp_path / "my cluster.toml"
    root = tmp_path / "data"
    rc = cli.main(["config", "--local", "3", "--out", str(out), "--data-root", str(root)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds the secret
    commands = _serve_lines(printed)
    assert [c[0] for c in commands] == [".venv/bin/raftlog"] * 3
    parser = cli.build_parser()
    for i, words in enumerate(commands, start=1):
        args = parser.parse_args(words[1:])
        assert args.func is cli.cmd_serve
        config = cli._load(args)
        assert config.node_id == f"n{i}" and config.data_dir == root / f"n{i}"
        assert config.node.cluster_secret
        assert f"  n{i}  http://{config.self_node.http}" in printed
    urls = ",".join(f"http://{n.http}" for n in config.nodes)
    assert f"export RAFTLOG_URL={urls}\n" in printed

    assert cli.main(["config", "--urls", str(out)]) == 0
    assert capsys.readouterr().out == urls + "\n"


def test_cli_prints_valid_toml_to_stdout_when_there_is_no_out(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/__main__.py"])
    assert cli.main(["config", "--local", "5"]) == 0
    text = capsys.readouterr().out
    raw = tomllib.loads(text)
    assert [n["id"] for n in raw["cluster"]["nodes"]] == ["n1", "n2", "n3", "n4", "n5"]
    assert raw["node"]["cluster_secret"]
    commands = [shlex.split(line.lstrip("# ")) for line in text.splitlines() if "serve" in line]
    assert len(commands) == 5
    assert commands[0][:3] == [sys.executable, "-m", "raftlog"]  # how to run it again
    assert commands[0][3:] == [
        "serve",
        "--config",
        "cluster.toml",
        "--id",
        "n1",
        "--data-dir",
        "raftlog-data/n1",
    ]


@pytest.mark.parametrize("n", ["2", "0", "9"])
def test_cli_refuses_a_bad_count_with_usage_exit(
    n: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.toml"
    assert cli.main(["config", "--local", n, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"odd number of nodes from 1 to 7 (got {n})" in err
    assert not out.exists()


def test_cli_does_not_replace_a_file_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.toml"
    out.write_text("mine\n")
    assert cli.main(["config", "--local", "3", "--out", str(out)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "mine\n"
    assert cli.main(["config", "--local", "3", "--out", str(out), "--force"]) == 0
    assert tomllib.loads(out.read_text())["node"]["cluster_secret"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_cli_urls_of_a_broken_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster]\n")
    assert cli.main(["config", "--urls", str(bad)]) == 1
    assert "cannot read the nodes" in capsys.readouterr().err
    assert cli.main(["config", "--urls", str(bad), "--out", str(tmp_path / "x")]) == 2
