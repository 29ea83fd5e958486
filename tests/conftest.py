"""Shared pytest set-up: every test module lives under one tier marker."""

from __future__ import annotations

import logging

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers = {"unit", "integration", "fault", "bench"}
    for item in items:
        if not tiers & {m.name for m in item.iter_markers()}:
            raise pytest.UsageError(f"{item.nodeid} has no tier marker ({sorted(tiers)})")


@pytest.fixture(autouse=True)
def _quiet_pysyncobj() -> None:
    logging.getLogger("pysyncobj").setLevel(logging.CRITICAL)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="fault scenarios: random seeds and longer faults (local use, not CI)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--soak", default=False):
        import os

        os.environ["RAFTLOG_FAULT_SOAK"] = "1"
