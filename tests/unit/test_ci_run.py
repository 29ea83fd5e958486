"""CI runs the README's two commands as written: ``.ci/run`` reads them from README.md's
first code block, so this checks the README keeps the shape that extraction relies on
and that ``.ci/run`` runs them in the stated order with failures failing the run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from raftlog.cli.entry import build_parser, cmd_demo

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEMO = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/raftlog demo"
TESTS = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
)
# The extraction .ci/run performs, character for character.
AWK = """awk '/^```/ { fence++; next } fence == 1 && NF && $1 !~ /^#/' README.md"""


def readme_commands(text: str) -> list[str]:
    """What AWK selects: non-blank lines whose first word does not start with '#',
    inside the first fenced block."""
    fence, out = 0, []
    for line in text.splitlines():
        if line.startswith("```"):
            fence += 1
            continue
        if fence == 1 and line.split() and not line.split()[0].startswith("#"):
            out.append(line)
    return out


def test_the_readme_opens_with_the_demo_and_the_test_command() -> None:
    commands = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert commands == [DEMO, TESTS]
    # The demo command ends in the demo verb of this CLI.
    words = shlex.split(DEMO.split("&& ")[-1])
    assert words[0] == ".venv/bin/raftlog"
    assert build_parser().parse_args(words[1:]).func is cmd_demo


def test_ci_run_evaluates_the_extracted_commands_in_order() -> None:
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    assert AWK in script
    assert "-ne 2 ]" in script  # refuses a README block that is not exactly two commands
    order = [
        "apt-get install",
        'eval "$demo_command" || demo_rc=$?',  # an && list failing part-way is caught
        '"$demo_rc" -ne 0',
        ".venv/bin/ruff check .",
        ".venv/bin/mypy",
        'eval "$test_command"',
        '"$rc" -eq 5',  # "no tests collected" fails the run too
        'exit "$rc"',
    ]
    positions = [script.find(s) for s in order]
    assert -1 not in positions, dict(zip(order, positions, strict=True))
    assert positions == sorted(positions)
    # One source of truth: the commands are not copied into the script.
    assert DEMO not in script and TESTS not in script
