"""Every module's ``__all__`` is true both ways (anyio's ``tests/test_all_attributes.py``).

Each module under ``actors`` is imported; every name in its ``__all__`` must
exist, and every public class or function it defines (not imports) must be
listed in its ``__all__``, so a reader of ``__all__`` sees the whole face of a
module and nothing that isn't there.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import actors

_OPTIONAL = {"actors.langchain": "langchain_core",  # extras: checked where installed
             "actors.edges.providers.vertex": "google.auth", "actors.edges.providers.snowflake": "jwt"}


def _modules() -> list[str]:
    names = ["actors"]
    for info in pkgutil.walk_packages(actors.__path__, prefix="actors."):
        names.append(info.name)
    return sorted(names)


def _load(name: str) -> ModuleType:
    if name in _OPTIONAL:
        pytest.importorskip(_OPTIONAL[name])
    return importlib.import_module(name)


@pytest.mark.parametrize("name", _modules())
def test_every_all_name_exists(name: str) -> None:
    """Every name in a module's __all__ is defined there."""
    module = _load(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


@pytest.mark.parametrize("name", _modules())
def test_every_public_definition_is_in_all(name: str) -> None:
    """Every public class and function a module defines is listed in its __all__."""
    module = _load(name)
    defined = {
        n for n, obj in vars(module).items()
        if not n.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    assert sorted(defined - set(module.__all__)) == []


def test_the_walk_finds_the_layers() -> None:
    """The walk above really covers the package (it would pass vacuously on an empty list)."""
    found = set(_modules())
    assert {"actors.core.actor", "actors.policy.priority_selector", "actors.edges.store.store",
            "actors.runtime.supervisor", "actors.gateway.app", "actors.replay.engine"} <= found


def test_readme_example_names_are_exported() -> None:
    """The names the README's embedded example uses come from the top-level package."""
    assert {"Supervisor", "load_config", "AllProvidersFailedError", "VirtualClock"} <= set(actors.__all__)
