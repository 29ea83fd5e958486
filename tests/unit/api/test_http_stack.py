"""The server under the API: ``raftlog serve`` names uvloop and httptools explicitly and
refuses to start, saying what is missing, without them (never a silent fallback)."""

from __future__ import annotations

import importlib.util

import pytest

from raftlog.cli import serve
from raftlog.errors import ConfigError

pytestmark = pytest.mark.unit


def test_the_loop_and_parser_are_named_and_installed() -> None:
    assert (serve.LOOP, serve.HTTP_PARSER) == ("uvloop", "httptools")
    serve.check_http_stack()  # both are dependencies of raftlog


@pytest.mark.parametrize("missing", ["uvloop", "httptools"])
def test_a_missing_package_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    with pytest.raises(ConfigError, match=missing):
        serve.check_http_stack()
