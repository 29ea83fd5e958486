"""raftlog.service drives a node only through its port: no module of the package imports
raftlog.raft (nor pysyncobj, nor an HTTP client), not even for types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raftlog.service

pytestmark = pytest.mark.unit

FORBIDDEN = ("raftlog.raft", "pysyncobj", "httpx", "api", "raftlog.client", "raftlog.cli")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_service_package_imports_no_node_implementation() -> None:
    package = Path(raftlog.service.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert {p.name for p in modules} >= {"log_service.py", "node_port.py", "memory_node.py"}
    for path in modules:
        bad = {
            name
            for name in _imports(path)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"
