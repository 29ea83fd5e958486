"""One typed, validated configuration used by the CLI, the node and the API.

Sources, highest precedence first: command-line flags, environment variables
(``RAFTLOG_<NAME>``), the TOML file's ``[node]`` table, defaults. Every rule is a real
check raising :class:`ConfigError` whose message names the setting (never ``assert``,
which ``python -O`` strips).

Settings of the contract that this version does not implement yet are refused at
start-up ("... is not supported in this version yet"), never silently accepted:

- ``idempotency_keys_max``, ``idempotency_window_s``: refused whenever given (file,
  environment or flag), whatever the value. They size the retention of a deduplication
  that does not exist (the API refuses ``Idempotency-Key``); their defaults are sizes,
  not "off", so a config that names them expects something the node does not do.
- ``metrics_public``: ``false`` is refused (it asks for a token on ``/metrics``, and no
  token is enforced); ``true``, the default, is accepted: it is what the node does.
- per-log retention (``[logs.NAME]`` ``max_entries`` / ``max_age_s``): refused whenever
  given; a ``[logs.NAME]`` table without settings asks for nothing and is accepted.
- ``api_tokens`` / ``api_read_tokens`` / ``api_admin_tokens``: refused when non-empty.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin, get_type_hints

from raftlog.commands import ONE_ENTRY_PAGE_OVERHEAD_BYTES
from raftlog.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "NODE_ID_RE",
    "Config",
    "ConfigError",
    "NodeAddress",
    "NodeSettings",
    "RetentionPolicy",
    "build_node_settings",
    "config_from_mapping",
    "load_config",
    "parse_address",
    "parse_setting_text",
    "replace_settings",
    "setting_names",
    "validate",
]

NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_PREFIX = "RAFTLOG_"


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """One member as the cluster file lists it. ``raft``/``http`` are advertised addresses."""

    id: str
    raft: str
    http: str


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    max_entries: int | None = None
    max_age_s: int | None = None


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """The ``[node]`` table: the same for every node unless overridden per process."""

    durability: Literal["fsync", "os"] = "fsync"
    raft_bind: str | None = None
    http_bind: str | None = None
    # Timing. PySyncObj needs election_timeout_min > 3 x heartbeat; the lease must end
    # before any follower may start an election (see DESIGN.md, "consistency=leader").
    heartbeat_ms: int = 100
    election_timeout_min_ms: int = 1000
    election_timeout_max_ms: int = 2000
    leader_lease_ms: int = 500
    # A leader that heard from no majority for this long steps down (PySyncObj's
    # leaderFallbackTimeout, 30 s by default there).
    leader_fallback_ms: int = 1000
    # Dial interval to unreachable peers (PySyncObj's connectionRetryTime, 5 s there).
    connection_retry_ms: int = 250
    # A silent connection is dropped after this long; must cover the election timeout.
    connection_timeout_ms: int = 3000
    # Proposals in flight on this node before new ones are refused with `overloaded`.
    max_inflight_proposals: int = 10000
    # Log compaction: snapshot once the Raft journal holds this many entries, or this
    # long after the previous snapshot.
    snapshot_min_entries: int = 100_000
    snapshot_min_interval_s: int = 3600
    # LMDB map: starts at map_size_bytes, grows by doubling up to max_state_bytes.
    map_size_bytes: int = 1 << 30
    max_state_bytes: int = 1 << 40
    max_entry_bytes: int = 1 << 20
    max_batch_entries: int = 10_000
    max_batch_bytes: int = 8 << 20
    max_request_bytes: int = 16 << 20
    # A range read stops before its response would exceed this many bytes (always at
    # least one entry); at least max_entry_bytes + ONE_ENTRY_PAGE_OVERHEAD_BYTES.
    max_response_bytes: int = 4 << 20
    idempotency_keys_max: int = 1_000_000
    idempotency_window_s: int = 86_400
    api_tokens: tuple[str, ...] = ()
    api_read_tokens: tuple[str, ...] = ()
    api_admin_tokens: tuple[str, ...] = ()
    metrics_public: bool = True
    cluster_secret: str | None = None
    allow_insecure_http: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    log_format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class Config:
    cluster_name: str
    nodes: tuple[NodeAddress, ...]
    node_id: str
    data_dir: Path
    node: NodeSettings = field(default_factory=NodeSettings)
    logs: Mapping[str, RetentionPolicy] = field(default_factory=dict)

    @property
    def self_node(self) -> NodeAddress:
        return next(n for n in self.nodes if n.id == self.node_id)

    @property
    def peers(self) -> tuple[NodeAddress, ...]:
        return tuple(n for n in self.nodes if n.id != self.node_id)

    @property
    def raft_bind(self) -> str:
        return self.node.raft_bind or self.self_node.raft

    @property
    def http_bind(self) -> str:
        return self.node.http_bind or self.self_node.http

    def node_by_raft(self, raft: str) -> NodeAddress | None:
        return next((n for n in self.nodes if n.raft == raft), None)


def load_config(
    path: str | os.PathLike[str] | None,
    *,
    node_id: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build a validated Config. ``flags`` holds only settings given on the command line."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_mapping(
        raw,
        node_id=node_id or env.get(ENV_PREFIX + "ID"),
        data_dir=data_dir or env.get(ENV_PREFIX + "DATA_DIR"),
        flags=flags or {},
        environ=env,
    )


def config_from_mapping(
    raw: Mapping[str, Any],
    *,
    node_id: str | None,
    data_dir: str | os.PathLike[str] | None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    unknown = set(raw) - {"cluster", "node", "logs"}
    if unknown:
        raise ConfigError(
            f"unknown top-level table(s) {sorted(unknown)}; expected cluster, node, logs"
        )
    cluster = _table(raw, "cluster")
    unknown = set(cluster) - {"name", "nodes"}
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in [cluster]")
    name = cluster.get("name", "raftlog")
    if not isinstance(name, str) or not name:
        raise ConfigError("cluster.name must be a non-empty string")
    nodes = _parse_nodes(cluster.get("nodes"))
    if node_id is None:
        raise ConfigError("node id is required: pass --id or set RAFTLOG_ID")
    if node_id not in {n.id for n in nodes}:
        raise ConfigError(
            f"node id {node_id!r} is not in cluster.nodes ({', '.join(n.id for n in nodes)})"
        )
    if data_dir is None:
        raise ConfigError("data dir is required: pass --data-dir or set RAFTLOG_DATA_DIR")
    settings = build_node_settings(_table(raw, "node"), flags or {}, environ or {})
    logs = _parse_logs(raw.get("logs", {}))
    config = Config(
        cluster_name=name,
        nodes=nodes,
        node_id=node_id,
        data_dir=Path(data_dir),
        node=settings,
        logs=logs,
    )
    validate(config)
    return config


def build_node_settings(
    file_values: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str]
) -> NodeSettings:
    """Merge flag > environment > file > default for every NodeSettings field."""
    hints = get_type_hints(NodeSettings)
    names = {f.name for f in fields(NodeSettings)}
    file_values = _resolve_file_variants(dict(file_values))
    unknown = set(file_values) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in [node]")
    bad_flags = set(flags) - names
    if bad_flags:
        raise ConfigError(f"unknown setting(s) {sorted(bad_flags)} given as flags")
    values: dict[str, Any] = {}
    for name in sorted(names):
        source, value = None, None
        env_name = ENV_PREFIX + name.upper()
        if flags.get(name) is not None:
            source, value = f"--{name.replace('_', '-')}", flags[name]
        elif env_name in environ:
            source, value = env_name, _from_env(environ[env_name], hints[name], env_name)
        elif name in file_values:
            source, value = f"node.{name}", file_values[name]
        if source is not None:
            values[name] = _coerce(value, hints[name], source)
            _refuse_unsupported(name, values[name], source, explicit=True)
    return NodeSettings(**values)


# The settings of the contract that do nothing in this version yet (see the module doc).
_IDEMPOTENCY_SETTINGS = ("idempotency_keys_max", "idempotency_window_s")
_NOT_SUPPORTED = "is not supported in this version yet"


def _refuse_unsupported(name: str, value: Any, source: str, *, explicit: bool) -> None:
    """ConfigError naming ``source`` if setting ``name`` to ``value`` asks for something
    this version does not do. ``explicit``: the value was given (file, environment or
    flag), not just left at its default."""
    if name in _IDEMPOTENCY_SETTINGS and (explicit or value != _DEFAULTS[name]):
        raise ConfigError(
            f"{source} {_NOT_SUPPORTED}: requests with an Idempotency-Key are refused and "
            "nothing is deduplicated, so there is nothing to retain; remove it"
        )
    if name == "metrics_public" and value is False:
        raise ConfigError(
            f"{source} = false {_NOT_SUPPORTED}: no API token is enforced, so nothing can "
            "be kept private; remove it (true, the default, is accepted)"
        )


def _refuse_retention(log: str, key: str) -> NoReturn:
    raise ConfigError(
        f"logs.{log}.{key} {_NOT_SUPPORTED}: per-log retention policies are not enforced "
        "and no entry would ever be removed; remove it"
    )


def validate(config: Config) -> None:
    """Cross-field rules. Raises ConfigError naming the settings involved."""
    s = config.node
    positive = (
        "heartbeat_ms",
        "election_timeout_min_ms",
        "election_timeout_max_ms",
        "leader_lease_ms",
        "leader_fallback_ms",
        "connection_timeout_ms",
        "max_inflight_proposals",
        "snapshot_min_entries",
        "snapshot_min_interval_s",
        "map_size_bytes",
        "max_state_bytes",
        "max_entry_bytes",
        "max_batch_entries",
        "max_batch_bytes",
        "max_request_bytes",
        "max_response_bytes",
        "idempotency_keys_max",
        "idempotency_window_s",
    )
    for name in positive:
        if getattr(s, name) <= 0:
            raise ConfigError(f"{name} must be > 0 (got {getattr(s, name)})")
    for name in (*_IDEMPOTENCY_SETTINGS, "metrics_public"):
        _refuse_unsupported(name, getattr(s, name), name, explicit=False)
    for log, policy in config.logs.items():
        for key in ("max_entries", "max_age_s"):
            if getattr(policy, key) is not None:
                _refuse_retention(log, key)
    if s.connection_retry_ms < 0:
        raise ConfigError("connection_retry_ms must be >= 0")
    if s.election_timeout_min_ms <= 3 * s.heartbeat_ms:
        raise ConfigError(
            f"election_timeout_min_ms ({s.election_timeout_min_ms}) must be more than 3 x "
            f"heartbeat_ms ({s.heartbeat_ms}), or followers start elections between heartbeats"
        )
    if s.election_timeout_max_ms <= s.election_timeout_min_ms:
        raise ConfigError(
            f"election_timeout_max_ms ({s.election_timeout_max_ms}) must be greater than "
            f"election_timeout_min_ms ({s.election_timeout_min_ms})"
        )
    if not s.heartbeat_ms <= s.leader_lease_ms < s.election_timeout_min_ms:
        raise ConfigError(
            f"leader_lease_ms ({s.leader_lease_ms}) must be at least heartbeat_ms "
            f"({s.heartbeat_ms}) and below election_timeout_min_ms ({s.election_timeout_min_ms})"
        )
    if s.leader_fallback_ms <= s.heartbeat_ms:
        raise ConfigError(
            f"leader_fallback_ms ({s.leader_fallback_ms}) must be greater than heartbeat_ms "
            f"({s.heartbeat_ms})"
        )
    if s.connection_timeout_ms < s.election_timeout_max_ms:
        raise ConfigError(
            f"connection_timeout_ms ({s.connection_timeout_ms}) must be at least "
            f"election_timeout_max_ms ({s.election_timeout_max_ms})"
        )
    if s.max_state_bytes < s.map_size_bytes:
        raise ConfigError("max_state_bytes must be at least map_size_bytes")
    if s.max_batch_bytes < s.max_entry_bytes:
        raise ConfigError("max_batch_bytes must be at least max_entry_bytes")
    if s.max_request_bytes < s.max_batch_bytes:
        raise ConfigError("max_request_bytes must be at least max_batch_bytes")
    if s.max_response_bytes < s.max_entry_bytes + ONE_ENTRY_PAGE_OVERHEAD_BYTES:
        raise ConfigError(
            f"max_response_bytes ({s.max_response_bytes}) must be at least max_entry_bytes "
            f"({s.max_entry_bytes}) + {ONE_ENTRY_PAGE_OVERHEAD_BYTES}, so that a response "
            "always has room for one entry of the largest size with its key and fields"
        )
    if s.api_tokens or s.api_read_tokens or s.api_admin_tokens:
        # Accepting tokens that the API then ignored would be worse than refusing them.
        raise ConfigError(
            "api_tokens / api_read_tokens / api_admin_tokens are not enforced by this version "
            "yet; remove them (bind HTTP to loopback, or use TLS / allow_insecure_http)"
        )
    if (s.tls_cert_file is None) != (s.tls_key_file is None):
        raise ConfigError("tls_cert_file and tls_key_file must be set together")
    binds = {"raft_bind": config.raft_bind, "http_bind": config.http_bind}
    for name, addr in binds.items():
        parse_address(addr, name)
    if s.cluster_secret is None:
        for node in config.nodes:
            if not _is_loopback(parse_address(node.raft, f"node {node.id} raft")[0]):
                raise ConfigError(
                    f"cluster_secret is required: node {node.id} raft address {node.raft} "
                    "is off loopback and Raft traffic would be unauthenticated"
                )
        if not _is_loopback(parse_address(config.raft_bind, "raft_bind")[0]):
            raise ConfigError("cluster_secret is required when raft_bind is off loopback")
    http_host = parse_address(config.http_bind, "http_bind")[0]
    has_tokens = bool(s.api_tokens or s.api_admin_tokens)
    if not _is_loopback(http_host) and not (has_tokens or s.tls_cert_file or s.allow_insecure_http):
        raise ConfigError(
            f"http_bind {config.http_bind} is off loopback without api tokens or TLS; "
            "configure api_tokens, or set allow_insecure_http = true to accept the risk"
        )


def parse_address(addr: str, what: str) -> tuple[str, int]:
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{what} must be host:port with a port 1-65535 (got {addr!r})")
    return host.strip("[]"), int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _table(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _parse_nodes(value: Any) -> tuple[NodeAddress, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("cluster.nodes must list at least one [[cluster.nodes]] entry")
    nodes: list[NodeAddress] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"cluster.nodes[{i}] must be a table")
        extra = set(item) - {"id", "raft", "http"}
        if extra:
            raise ConfigError(f"cluster.nodes[{i}] has unknown setting(s) {sorted(extra)}")
        for key in ("id", "raft", "http"):
            if not isinstance(item.get(key), str):
                raise ConfigError(f"cluster.nodes[{i}].{key} must be a string")
        if not NODE_ID_RE.match(item["id"]):
            raise ConfigError(
                f"cluster.nodes[{i}].id {item['id']!r} must match {NODE_ID_RE.pattern}"
            )
        parse_address(item["raft"], f"cluster.nodes[{i}].raft")
        parse_address(item["http"], f"cluster.nodes[{i}].http")
        nodes.append(NodeAddress(item["id"], item["raft"], item["http"]))
    for attr in ("id", "raft", "http"):
        seen = [getattr(n, attr) for n in nodes]
        dupes = sorted({x for x in seen if seen.count(x) > 1})
        if dupes:
            raise ConfigError(f"cluster.nodes has duplicate {attr} value(s) {dupes}")
    return tuple(nodes)


def _parse_logs(value: Any) -> dict[str, RetentionPolicy]:
    if not isinstance(value, dict):
        raise ConfigError("[logs] must be a table of [logs.NAME] tables")
    policies: dict[str, RetentionPolicy] = {}
    for log, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[logs.{log}] must be a table")
        extra = set(table) - {"max_entries", "max_age_s"}
        if extra:
            raise ConfigError(f"[logs.{log}] has unknown setting(s) {sorted(extra)}")
        for key in ("max_entries", "max_age_s"):
            v = table.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"logs.{log}.{key} must be a positive integer")
            if v is not None:
                _refuse_retention(log, key)
        policies[log] = RetentionPolicy(table.get("max_entries"), table.get("max_age_s"))
    return policies


_FILE_VARIANTS = {
    "api_tokens_file": "api_tokens",
    "api_read_tokens_file": "api_read_tokens",
    "api_admin_tokens_file": "api_admin_tokens",
    "api_token_file": "api_tokens",
    "api_read_token_file": "api_read_tokens",
    "api_admin_token_file": "api_admin_tokens",
    "cluster_secret_file": "cluster_secret",
}
_SINGULAR = {
    "api_token": "api_tokens",
    "api_read_token": "api_read_tokens",
    "api_admin_token": "api_admin_tokens",
}


def _resolve_file_variants(values: dict[str, Any]) -> dict[str, Any]:
    """Turn ``api_token``, ``*_file`` variants into the canonical settings."""
    for single, plural in _SINGULAR.items():
        if single in values:
            values.setdefault(plural, [values.pop(single)])
    for variant, target in _FILE_VARIANTS.items():
        if variant in values:
            path = values.pop(variant)
            try:
                text = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"node.{variant}: cannot read {path}: {exc.strerror}") from None
            values[target] = text if target == "cluster_secret" else text.split()
    return values


def _from_env(text: str, hint: Any, name: str) -> Any:
    base = _base_type(hint)
    if base is bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false (got {text!r})")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name} must be an integer (got {text!r})") from None
    if base is tuple:
        return [t for t in re.split(r"[,\s]+", text) if t]
    return text


def _base_type(hint: Any) -> Any:
    """The one concrete type behind a setting's annotation (``int | None`` -> int)."""
    origin = get_origin(hint)
    if origin is tuple:
        return tuple
    if origin is Literal:
        return str
    args = [a for a in get_args(hint) if a is not type(None)]
    if args:
        return _base_type(args[0])
    return hint


def _coerce(value: Any, hint: Any, source: str) -> Any:
    if value is None and type(None) in get_args(hint):
        return None
    literal_options = get_args(hint) if get_origin(hint) is Literal else ()
    if literal_options:
        if value not in literal_options:
            raise ConfigError(f"{source} must be one of {list(literal_options)} (got {value!r})")
        return value
    base = _base_type(hint)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source} must be true or false (got {value!r})")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source} must be an integer (got {value!r})")
        return value
    if base is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source} must be a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{source} must be a string (got {value!r})")
    return value


_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(NodeSettings) if f.default is not dataclasses.MISSING
}


def setting_names() -> list[str]:
    return [f.name for f in fields(NodeSettings)]


def parse_setting_text(name: str, text: str, source: str) -> Any:
    """Parse a setting given as text (a flag or an environment variable) to its type."""
    hints = get_type_hints(NodeSettings)
    if name not in hints:
        raise ConfigError(f"unknown setting {name!r}")
    return _coerce(_from_env(text, hints[name], source), hints[name], source)


def replace_settings(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with some [node] settings changed, validated again."""
    new = dataclasses.replace(config, node=dataclasses.replace(config.node, **changes))
    validate(new)
    return new
