"""Cluster files for N nodes on this machine: ``raftlog config --local N`` and the demo.

Contracts:

* ``generate_local_config(n)`` returns a complete cluster TOML for ``n`` nodes (``n1`` ..
  ``nN``) on 127.0.0.1, every raft and http port distinct and free when generated
  (``raftlog.ports.free_port``), and a fresh random ``cluster_secret``. The text is
  checked with ``raftlog.config`` for every node before it is returned, so a generated
  file always loads; a ``ConfigError`` here is a bug, never the caller's input.
* ``n`` must be odd and between 1 and ``MAX_LOCAL_NODES``; anything else raises
  ``ConfigError`` saying why. An even cluster tolerates no more failures than the odd
  one below it and needs one more node for every majority.
* ``node_settings`` adds ``[node]`` settings (the demo's fast timing, say); they are
  validated like any file setting.
* ``serve_command`` is one shell-quoted ``raftlog serve`` line that can be pasted as is.

Free ports are free when generated: another program may bind one before the node starts
(the node then exits naming the address), so generate the file shortly before use.
"""

from __future__ import annotations

import os
import secrets
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from raftlog.config import NodeAddress, config_from_mapping
from raftlog.errors import ConfigError
from raftlog.ports import free_port

__all__ = [
    "MAX_LOCAL_NODES",
    "LocalCluster",
    "check_node_count",
    "generate_local_config",
    "serve_command",
]

MAX_LOCAL_NODES = 7
HOST = "127.0.0.1"

SettingValue = int | str | bool


@dataclass(frozen=True, slots=True)
class LocalCluster:
    """A generated cluster: its members (in order) and the TOML text describing it."""

    name: str
    nodes: tuple[NodeAddress, ...]
    cluster_secret: str
    toml: str

    @property
    def urls(self) -> list[str]:
        """Each node's HTTP URL, in member order."""
        return [f"http://{n.http}" for n in self.nodes]


def check_node_count(n: int) -> None:
    """Raise ConfigError unless ``n`` is an odd number from 1 to MAX_LOCAL_NODES."""
    if not 1 <= n <= MAX_LOCAL_NODES or n % 2 == 0:
        raise ConfigError(
            f"a local cluster needs an odd number of nodes from 1 to {MAX_LOCAL_NODES} "
            f"(got {n}); an even count tolerates no more failures than one node fewer"
        )


def _toml_value(value: SettingValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A TOML basic string: JSON-style escapes are valid TOML for these characters.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in escaped):
        raise ConfigError(f"setting value {value!r} contains control characters")
    return f'"{escaped}"'


def generate_local_config(
    n: int,
    *,
    name: str = "local",
    node_settings: Mapping[str, SettingValue] | None = None,
    port: Callable[[], int] = free_port,
    header: Sequence[str] = (),
) -> LocalCluster:
    """A validated cluster TOML for ``n`` nodes on 127.0.0.1 (module docstring).

    ``header`` lines are written first as TOML comments (``# `` is added)."""
    check_node_count(n)
    settings = dict(node_settings or {})
    if "cluster_secret" in settings or "cluster_secret_file" in settings:
        raise ConfigError("cluster_secret is generated; do not pass it in node_settings")
    secret = secrets.token_urlsafe(32)
    nodes = tuple(
        NodeAddress(f"n{i}", f"{HOST}:{port()}", f"{HOST}:{port()}") for i in range(1, n + 1)
    )
    lines = [f"# {h}".rstrip() for h in header]
    if lines:
        lines.append("")
    lines += ["[cluster]", f"name = {_toml_value(name)}", ""]
    for node in nodes:
        lines += [
            "[[cluster.nodes]]",
            f'id = "{node.id}"',
            f'raft = "{node.raft}"',
            f'http = "{node.http}"',
            "",
        ]
    lines += [
        "[node]",
        "# Authenticates and encrypts Raft traffic between the nodes; keep this file private.",
        f"cluster_secret = {_toml_value(secret)}",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
    text = "\n".join(lines) + "\n"
    raw = tomllib.loads(text)
    for node in nodes:
        config_from_mapping(raw, node_id=node.id, data_dir=f"data/{node.id}", environ={})
    return LocalCluster(name, nodes, secret, text)


def serve_command(
    program: Sequence[str], config_path: str | os.PathLike[str], node_id: str, data_dir: Path
) -> str:
    """``<program> serve --config F --id ID --data-dir D``, each word shell-quoted."""
    words = [*program, "serve", "--config", str(config_path), "--id", node_id]
    words += ["--data-dir", str(data_dir)]
    return shlex.join(words)
