"""Deployments: a provider's upstream models, each with health of its own where a fault is the model's.

A provider that serves several upstream models (``models = { chat = "a",
code = "b" }``) keeps a record per model beside its own: a 429, a 404 for
the model, an overload (503/529), a context or stream fault, a slow first
token concern that model only (:data:`MODEL_SCOPED`), and its probe goes to
that model. Faults of the provider itself (connection refused or reset, TLS,
401/403, quota, 5xx from its gateway, garbage, a failed ping) concern every
model. A provider with one upstream model has no separate deployment record:
its own record is that deployment's.

A deployment's record is named ``provider/upstream-model`` (provider names
hold no ``/``; model names may, so only the first one splits).
"""

from __future__ import annotations

from actors.core.config_schema import ProviderConfig
from actors.core.states import Category

__all__ = ("MODEL_SCOPED", "deployment_key", "deployments", "split_key")

#: Failures that concern one upstream model of a provider, not the provider.
MODEL_SCOPED: frozenset[Category] = frozenset({
    "rate_limit", "model_not_found", "service_unavailable", "context_length", "stream_interrupted",
    "timeout",
})


def deployment_key(provider: str, upstream: str) -> str:
    """The record name of ``upstream`` served by ``provider``."""
    return f"{provider}/{upstream}"


def split_key(key: str) -> tuple[str, str | None]:
    """``(provider, upstream model)`` of a record name; the model is None for a provider's own record."""
    provider, sep, upstream = key.partition("/")
    return provider, (upstream if sep else None)


def deployments(provider: ProviderConfig) -> tuple[str, ...]:
    """The upstream models of ``provider`` that get records of their own (none when it serves just one)."""
    distinct = tuple(dict.fromkeys(provider.models.values()))
    return distinct if len(distinct) > 1 else ()
