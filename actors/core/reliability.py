"""The reliability score: what a provider's recent health checks left it as, from 0 to 1.

Over the last ``[health] history`` checks of a provider, each counts by the
state it left the provider in: ``healthy`` 1, ``degraded`` 0.5, out of routing
(``cooldown``, ``unhealthy``, a failed probe) 0. The score is their mean, rounded
to three decimals (DESIGN.md's /status shows 0.95); None before the first check. Pure functions: the
MetricsCollector keeps the window, readers (/status, /metrics) compute the figure.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.core.messages import HealthChecked
from actors.core.states import Category, ProviderState

__all__ = ("check_score", "reliability_score")


def check_score(check: HealthChecked, state: ProviderState, cause: Category | None) -> float | None:
    """What ``check`` counts, given the provider's ``state`` when it came (and the ``cause`` of a cooldown).

    The state a check leaves a provider in is decided by other actors a moment
    later; this says what they decide (DESIGN.md): a failed check starts or
    keeps a cooldown, a passing probe restores the provider, a passing ``full``
    or ``api`` check clears ``degraded``, and a passing check of a provider
    cooling down after connection errors restores it. None: not counted (the
    provider is disabled or has no key: that measures the operator, not it).
    """
    if state in ("disabled", "unconfigured"):
        return None
    if not check.ok:
        return 0.0
    if check.probe or state == "healthy":
        return 1.0
    if state == "degraded":
        return 1.0 if check.tier in ("full", "api") else 0.5
    if state == "cooldown" and cause == "connection_error":
        return 1.0
    return 0.0  # a scheduled check passed, but the provider stays out until its probe


def reliability_score(scores: Sequence[float]) -> float | None:
    """The mean of ``scores``, to three decimals (0 to 1, as DESIGN.md's /status shows it); None for no
    checks."""
    if not scores:
        return None
    return round(sum(scores) / len(scores), 3)
