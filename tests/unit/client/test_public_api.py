"""The client's public modules declare what they export, and the names stay where they were."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

MODULES = [
    "raftlog.client",
    "raftlog.client.errors",
    "raftlog.client.models",
    "raftlog.cli.client_verbs",
]
NOT_EXPORTED = {"json", "os", "Any", "httpx", "annotations", "field", "dataclass"}


@pytest.mark.parametrize("name", MODULES)
def test_each_public_module_declares_all_and_exports_nothing_it_merely_imports(
    name: str,
) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    assert not NOT_EXPORTED & set(exported)
    for public in exported:
        value = getattr(module, public)  # every exported name exists
        assert not isinstance(value, ModuleType), public
        if isinstance(value, type) or inspect.isfunction(value):  # ours, not re-exported
            assert value.__module__.startswith("raftlog."), (public, value.__module__)
    star: dict[str, object] = {}
    exec(f"from {name} import *", star)  # the star import sees exactly __all__
    assert set(star) - {"__builtins__"} == set(exported)


def test_public_names_stay_importable_from_raftlog_client() -> None:
    from raftlog.client import AsyncClient, Client, resolve_urls  # noqa: F401
    from raftlog.client import errors as client_errors
    from raftlog.client import models as client_models

    client = importlib.import_module("raftlog.client")
    for module in (client_errors, client_models):
        for public in module.__all__:
            if public in ("DEFINITE_STATUSES", "error_class"):
                continue
            assert getattr(client, public) is getattr(module, public), public
            assert public in client.__all__
