"""The public names are what ``__all__`` says, and they exist (anyio's test_all_attributes)."""

from __future__ import annotations

import importlib

import pytest

import actors

MODULES = ["actors", "actors.actor", "actors.clock", "actors.config", "actors.errors", "actors.messages",
           "actors.error_classifier", "actors.priority_selector", "actors.health_monitor",
           "actors.recovery_manager", "actors.metrics_collector", "actors.request", "actors.status",
           "actors.store", "actors.supervisor", "actors.testing", "actors.validation"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    """Every name in a module's __all__ is defined there."""
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_readme_example_names_are_exported() -> None:
    """The names the README's embedded example uses come from the top-level package."""
    assert {"Supervisor", "load_config", "AllProvidersFailedError", "VirtualClock"} <= set(actors.__all__)
