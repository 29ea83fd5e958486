"""The package map of raftlog/DESIGN.md holds: every import between packages follows an
allowed arrow, PySyncObj is imported only under raftlog/raft/, no module at the top of
raftlog/ shares a prefix with a sibling, and each package has its tests/unit/<package>/.

Read from the source with ``ast`` (nothing is imported), so a new arrow fails here with
the file and the line that drew it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("state", "raft", "service", "client", "cli", "bench")
TOP = "raftlog"  # the shared top: commands, config, errors, checksum, ports

# Who may import whom (besides itself). The shared top imports no package; cli is the
# composition root; only raft imports pysyncobj.
ALLOWED: dict[str, set[str]] = {
    TOP: set(),
    "raftlog.state": {TOP},
    "raftlog.raft": {TOP, "raftlog.state", "pysyncobj"},
    "raftlog.service": {TOP, "raftlog.state"},
    "raftlog.client": {TOP},
    "api": {TOP, "raftlog.service", "raftlog.state"},
    "raftlog.cli": {
        TOP,
        "raftlog.state",
        "raftlog.raft",
        "raftlog.service",
        "raftlog.client",
        "raftlog.bench",
        "api",
    },
    # the benchmark reuses the local cluster file of the CLI (only that: see below)
    "raftlog.bench": {TOP, "raftlog.client", "raftlog.cli"},
}
# What raftlog.bench may take from raftlog.cli (which is what runs the benchmark).
BENCH_FROM_CLI = {"raftlog.cli.local_config"}
# raftlog/__main__.py runs the CLI: the one file at the top allowed to import it.
ENTRY_FILES = {Path("raftlog/__main__.py"): {"raftlog.cli"}}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "pysyncobj":
        return "pysyncobj"
    if parts[0] == "api":
        return "api"
    if parts[0] != "raftlog":
        return None
    if len(parts) > 1 and parts[1] in PACKAGES:
        return f"raftlog.{parts[1]}"
    return TOP


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "raftlog":  # from raftlog import checksum / state ...
                for alias in node.names:
                    yield node.lineno, f"raftlog.{alias.name}"
            else:
                yield node.lineno, node.module


def source_files() -> list[Path]:
    return sorted((ROOT / "raftlog").rglob("*.py")) + sorted((ROOT / "api").rglob("*.py"))


def test_every_import_between_packages_follows_an_allowed_arrow() -> None:
    wrong = []
    for path in source_files():
        rel = path.relative_to(ROOT)
        own = package_of(".".join(rel.with_suffix("").parts))
        assert own is not None
        allowed = ALLOWED[own] | ENTRY_FILES.get(rel, set())
        for line, module in imports_of(path):
            target = package_of(module)
            if target is not None and target != own and target not in allowed:
                wrong.append(f"{rel}:{line} {own} imports {module}")
    assert wrong == []


def test_the_benchmark_takes_only_the_local_cluster_file_from_the_cli() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "raftlog" / "bench").glob("*.py"))
        for line, module in imports_of(path)
        if package_of(module) == "raftlog.cli" and module not in BENCH_FROM_CLI
    ]
    assert wrong == []


def test_the_check_sees_a_forbidden_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from raftlog.raft.node import RaftNode\nimport pysyncobj\n")
    targets = {package_of(module) for _, module in imports_of(bad)}
    assert targets == {"raftlog.raft", "pysyncobj"}
    assert not targets <= ALLOWED["raftlog.service"]


def test_pysyncobj_is_imported_only_under_raftlog_raft() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in source_files()
        for _, module in imports_of(path)
        if module.split(".")[0] == "pysyncobj"
    }
    assert importers, "the raft package imports pysyncobj: the scan must see it"
    assert {p for p in importers if not p.startswith("raftlog/raft/")} == set()


def test_the_service_makes_no_network_calls() -> None:
    """Asking another node anything is api.forward's: raftlog.service imports no HTTP
    client (and, by the arrows above, no raftlog.raft: it drives a NodePort)."""
    service = sorted((ROOT / "raftlog" / "service").glob("*.py"))
    assert {p.name for p in service} >= {"log_service.py", "node_port.py", "memory_node.py"}
    http = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in service
        for line, module in imports_of(path)
        if module.split(".")[0] in {"httpx", "requests", "urllib", "aiohttp"}
    ]
    assert http == []


def test_no_module_at_the_top_shares_a_prefix_with_a_sibling() -> None:
    names = [p.stem for p in (ROOT / "raftlog").glob("*.py") if not p.stem.startswith("__")]
    names += [p.name for p in (ROOT / "raftlog").iterdir() if (p / "__init__.py").is_file()]
    prefixes = [n.split("_")[0] for n in names if "_" in n]
    assert [p for p in prefixes if p in names or prefixes.count(p) > 1] == []


def test_each_package_has_its_unit_tests() -> None:
    for name in (*PACKAGES, "api"):
        tests = ROOT / "tests" / "unit" / name
        assert sorted(tests.glob("test_*.py")), f"tests/unit/{name}/ holds no tests"
