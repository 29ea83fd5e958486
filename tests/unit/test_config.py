"""Config: precedence (flag > env > file > default) and validation messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from raftlog.config import (
    ConfigError,
    RetentionPolicy,
    config_from_mapping,
    load_config,
    replace_settings,
    validate,
)

pytestmark = pytest.mark.unit

NODES = [
    {"id": "n1", "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
    {"id": "n2", "raft": "127.0.0.1:7002", "http": "127.0.0.1:8002"},
    {"id": "n3", "raft": "127.0.0.1:7003", "http": "127.0.0.1:8003"},
]


def build(node: dict[str, Any] | None = None, *, nodes: Any = None, **kw: Any) -> Any:
    raw = {
        "cluster": {"name": "demo", "nodes": NODES if nodes is None else nodes},
        "node": node or {},
    }
    kw.setdefault("node_id", "n1")
    kw.setdefault("data_dir", "/tmp/raftlog-test")
    return config_from_mapping(raw, **kw)


def test_defaults_are_valid() -> None:
    c = build()
    assert c.node.durability == "fsync"
    assert c.raft_bind == "127.0.0.1:7001"
    assert [p.id for p in c.peers] == ["n2", "n3"]


def test_precedence_flag_over_env_over_file() -> None:
    file = {"heartbeat_ms": 60, "leader_lease_ms": 300, "durability": "os"}
    env = {"RAFTLOG_HEARTBEAT_MS": "70", "RAFTLOG_LEADER_LEASE_MS": "400"}
    c = build(file, environ=env, flags={"leader_lease_ms": 450})
    assert c.node.heartbeat_ms == 70  # env beats file
    assert c.node.leader_lease_ms == 450  # flag beats env
    assert c.node.durability == "os"  # file beats default


def test_load_config_reads_toml_and_env_ids(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[cluster]\nname = "x"\n'
        + "".join(
            f'[[cluster.nodes]]\nid = "{n["id"]}"\nraft = "{n["raft"]}"\nhttp = "{n["http"]}"\n'
            for n in NODES
        )
        + '[node]\ndurability = "os"\n[logs.audit]\n'
    )
    c = load_config(path, environ={"RAFTLOG_ID": "n2", "RAFTLOG_DATA_DIR": str(tmp_path)})
    assert c.node_id == "n2" and c.node.durability == "os"
    # A [logs.NAME] table is read; one without settings asks for nothing and is kept.
    assert c.logs["audit"].max_entries is None and c.logs["audit"].max_age_s is None
    # Retention settings are not supported yet: refused from the file, naming the key.
    path.write_text(path.read_text() + "max_entries = 10\n")
    with pytest.raises(ConfigError, match=r"^logs\.audit\.max_entries is not supported in this"):
        load_config(path, environ={"RAFTLOG_ID": "n2", "RAFTLOG_DATA_DIR": str(tmp_path)})


BAD: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"durability": "sometimes"}, {}, "durability must be one of"),
    ({"heartbeat_ms": 400}, {}, "more than 3 x heartbeat_ms"),
    ({"election_timeout_max_ms": 900}, {}, "election_timeout_max_ms .* must be greater"),
    ({"leader_lease_ms": 1000}, {}, "leader_lease_ms .* below election_timeout_min_ms"),
    ({"leader_lease_ms": 50}, {}, "leader_lease_ms .* at least heartbeat_ms"),
    ({"connection_timeout_ms": 1500}, {}, "connection_timeout_ms .* at least election_timeout_max"),
    ({"heartbeat_ms": "fast"}, {}, "node.heartbeat_ms must be an integer"),
    ({"heartbeat_ms": True}, {}, "node.heartbeat_ms must be an integer"),
    ({"max_entry_bytes": 0}, {}, "max_entry_bytes must be > 0"),
    ({"hartbeat_ms": 10}, {}, r"unknown setting\(s\) \['hartbeat_ms'\]"),
    ({"tls_cert_file": "c.pem"}, {}, "tls_cert_file and tls_key_file"),
    ({"http_bind": "0.0.0.0:8001"}, {}, "off loopback without api tokens"),
    ({"raft_bind": "0.0.0.0:7001"}, {}, "cluster_secret is required"),
    ({"raft_bind": "nohost"}, {}, "raft_bind must be host:port"),
    ({"api_tokens": ["t"]}, {}, "not enforced by this version"),
    ({}, {"node_id": "n9"}, "node id 'n9' is not in cluster.nodes"),
    ({}, {"data_dir": None}, "data dir is required"),
    ({}, {"environ": {"RAFTLOG_HEARTBEAT_MS": "x"}}, "RAFTLOG_HEARTBEAT_MS must be an integer"),
    ({}, {"flags": {"bogus": 1}}, "unknown setting"),
    ({"max_response_bytes": 0}, {}, r"max_response_bytes must be > 0 \(got 0\)"),
    ({"max_response_bytes": -5}, {}, "max_response_bytes must be > 0"),
    (
        {"max_response_bytes": (1 << 20) + 8191},
        {},
        r"max_response_bytes \(1056767\) must be at least max_entry_bytes \(1048576\) \+ 8192",
    ),
    (
        {"max_entry_bytes": 4 << 20},
        {},
        r"max_response_bytes \(4194304\) must be at least max_entry_bytes \(4194304\)",
    ),
    (
        {},
        {"environ": {"RAFTLOG_MAX_RESPONSE_BYTES": "4MiB"}},
        "RAFTLOG_MAX_RESPONSE_BYTES must be an integer",
    ),
]


@pytest.mark.parametrize(("node", "kw", "message"), BAD)
def test_invalid_settings_name_the_setting(
    node: dict[str, Any], kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(node, **kw)


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([], "at least one"),
        ([{**NODES[0], "id": "bad id"}], "must match"),
        ([NODES[0], {**NODES[1], "id": "n1"}], "duplicate id"),
        ([NODES[0], {**NODES[1], "raft": NODES[0]["raft"]}], "duplicate raft"),
        ([{**NODES[0], "raft": "10.0.0.1:7001"}], "cluster_secret is required"),
        ([{**NODES[0], "http": "127.0.0.1:99999"}], "port 1-65535"),
        ([{**NODES[0], "extra": 1}], "unknown setting"),
    ],
)
def test_invalid_node_lists(nodes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(nodes=nodes)


def test_secret_allows_off_loopback_and_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    nodes = [{**NODES[0], "raft": "10.0.0.1:7001"}]
    c = build({"cluster_secret_file": str(secret)}, nodes=nodes)
    assert c.node.cluster_secret == "s3cret"


def test_bad_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[cluster\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, node_id="n1", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", node_id="n1", data_dir=tmp_path)


def test_max_response_bytes_default_and_precedence() -> None:
    assert build().node.max_response_bytes == 4 << 20
    file = {"max_response_bytes": 5 << 20}
    assert build(file).node.max_response_bytes == 5 << 20
    env = {"RAFTLOG_MAX_RESPONSE_BYTES": str(6 << 20)}
    assert build(file, environ=env).node.max_response_bytes == 6 << 20
    flags = {"max_response_bytes": 7 << 20}
    assert build(file, environ=env, flags=flags).node.max_response_bytes == 7 << 20
    # the smallest accepted: one entry of max_entry_bytes plus its framing
    assert build({"max_entry_bytes": 1000, "max_response_bytes": 9192}).node.max_response_bytes


def test_max_response_bytes_flag_on_the_command_line(tmp_path: Path) -> None:
    from raftlog.cli.entry import _load, build_parser

    path = tmp_path / "c.toml"
    path.write_text(
        "[cluster]\n"
        + "".join(
            f'[[cluster.nodes]]\nid = "{n["id"]}"\nraft = "{n["raft"]}"\nhttp = "{n["http"]}"\n'
            for n in NODES
        )
        + "[node]\nmax_response_bytes = 5000000\n"
    )
    argv = ["serve", "--config", str(path), "--id", "n1", "--data-dir", str(tmp_path)]
    config = _load(build_parser().parse_args([*argv, "--max-response-bytes", "9000000"]))
    assert config.node.max_response_bytes == 9_000_000
    assert _load(build_parser().parse_args(argv)).node.max_response_bytes == 5_000_000


# Settings of the contract that this version does not implement: refused at start-up with
# a message that names the setting as it was given, never silently accepted.
NOT_SUPPORTED = "is not supported in this version yet"
UNSUPPORTED: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"idempotency_keys_max": 5}, {}, "node.idempotency_keys_max"),
    ({"idempotency_window_s": 60}, {}, "node.idempotency_window_s"),
    # the defaults too: they are retention sizes of a deduplication that does not exist
    ({"idempotency_keys_max": 1_000_000}, {}, "node.idempotency_keys_max"),
    ({"idempotency_window_s": 86_400}, {}, "node.idempotency_window_s"),
    ({}, {"environ": {"RAFTLOG_IDEMPOTENCY_WINDOW_S": "60"}}, "RAFTLOG_IDEMPOTENCY_WINDOW_S"),
    ({}, {"flags": {"idempotency_keys_max": 7}}, "--idempotency-keys-max"),
    ({"metrics_public": False}, {}, "node.metrics_public = false"),
    ({}, {"environ": {"RAFTLOG_METRICS_PUBLIC": "false"}}, "RAFTLOG_METRICS_PUBLIC = false"),
    ({}, {"flags": {"metrics_public": False}}, "--metrics-public = false"),
]


@pytest.mark.parametrize(("node", "kw", "named"), UNSUPPORTED)
def test_unsupported_settings_are_refused(
    node: dict[str, Any], kw: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build(node, **kw)
    message = str(caught.value)
    assert message.startswith(f"{named} {NOT_SUPPORTED}"), message
    assert message.endswith("remove it") or "remove it (" in message


@pytest.mark.parametrize("key", ["max_entries", "max_age_s"])
def test_per_log_retention_is_refused(key: str) -> None:
    raw = {"cluster": {"name": "demo", "nodes": NODES}, "logs": {"audit": {key: 10}}}
    with pytest.raises(ConfigError, match=rf"^logs\.audit\.{key} {NOT_SUPPORTED}"):
        config_from_mapping(raw, node_id="n1", data_dir="/tmp/raftlog-test")
    # a bad value is still reported as bad first
    raw["logs"] = {"audit": {key: 0}}
    with pytest.raises(ConfigError, match=rf"logs\.audit\.{key} must be a positive integer"):
        config_from_mapping(raw, node_id="n1", data_dir="/tmp/raftlog-test")


def test_metrics_public_true_is_accepted() -> None:
    """``true`` (the default) is what the node does: with no token enforced, nothing is
    behind one."""
    assert build().node.metrics_public is True
    assert build({"metrics_public": True}).node.metrics_public is True
    assert build(environ={"RAFTLOG_METRICS_PUBLIC": "true"}).node.metrics_public is True


def test_validate_refuses_unsupported_values_built_in_code() -> None:
    """A Config built without the loaders (``replace_settings``, tests) is checked too:
    any value that asks for the unsupported behaviour is refused."""
    c = build()
    with pytest.raises(ConfigError, match=f"^idempotency_window_s {NOT_SUPPORTED}"):
        replace_settings(c, idempotency_window_s=60)
    with pytest.raises(ConfigError, match=f"^metrics_public = false {NOT_SUPPORTED}"):
        replace_settings(c, metrics_public=False)
    with pytest.raises(ConfigError, match=f"^logs\\.audit\\.max_age_s {NOT_SUPPORTED}"):
        validate(dataclasses.replace(c, logs={"audit": RetentionPolicy(max_age_s=5)}))
    validate(dataclasses.replace(c, logs={"audit": RetentionPolicy()}))
