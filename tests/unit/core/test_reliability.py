"""The reliability score: each health check counts by the state it left the provider in."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core.clock import VirtualClock
from actors.core.messages import HealthChecked, ProviderMetrics, ProviderStateChanged
from actors.core.reliability import check_score, reliability_score
from actors.policy.metrics_collector import MetricsCollector

T0 = 1_800_000_000.0


def _check(ok: bool, tier: Any = "ping", *, probe: bool = False) -> HealthChecked:
    return HealthChecked(at=T0, provider="a", tier=tier, ok=ok, probe=probe,
                         kind=None if ok else "connect")


@pytest.mark.parametrize(("check", "state", "cause", "score"), [
    pytest.param(_check(True), "healthy", None, 1.0, id="ok-healthy"),
    pytest.param(_check(False), "healthy", None, 0.0, id="failed-starts-a-cooldown"),
    pytest.param(_check(True), "degraded", None, 0.5, id="ping-ok-stays-degraded"),
    pytest.param(_check(True, "full"), "degraded", None, 1.0, id="full-ok-clears-degraded"),
    pytest.param(_check(True, "api"), "degraded", None, 1.0, id="api-ok-clears-degraded"),
    pytest.param(_check(True), "cooldown", "server_error", 0.0, id="ok-stays-in-cooldown"),
    pytest.param(_check(True), "cooldown", "connection_error", 1.0, id="ok-after-refused-restores"),
    pytest.param(_check(True), "unhealthy", "connection_error", 0.0, id="unhealthy-waits-for-a-probe"),
    pytest.param(_check(False, "api", probe=True), "probing", None, 0.0, id="probe-failed"),
    pytest.param(_check(True, "api", probe=True), "probing", None, 1.0, id="probe-passed-restores"),
    pytest.param(_check(True), "disabled", None, None, id="disabled-not-counted"),
    pytest.param(_check(False), "unconfigured", None, None, id="unconfigured-not-counted"),
])
def test_what_one_check_counts(check: HealthChecked, state: Any, cause: Any, score: float | None) -> None:
    """healthy 1, degraded 0.5, out of routing 0; disabled and unconfigured providers are not scored."""
    assert check_score(check, state, cause) == score


@pytest.mark.parametrize(("scores", "expected"), [
    pytest.param((), None, id="no-checks"),
    pytest.param((1.0, 1.0), 1.0, id="all-healthy"),
    pytest.param((1.0, 0.5, 0.0), 0.5, id="mixed"),
    pytest.param((1.0, 1.0, 0.0), 0.667, id="three-decimals"),
])
def test_the_score_is_the_mean(scores: tuple[float, ...], expected: float | None) -> None:
    """The mean of what the checks counted (0 to 1), rounded to three decimals."""
    assert reliability_score(scores) == expected


def test_the_collector_keeps_the_last_history_checks() -> None:
    """Only the last ``history`` checks count; the state comes from the selector's announcements."""
    mc = MetricsCollector(["a"], latency_window=10, history=3, clock=VirtualClock(T0), states={"a": "healthy"})
    for ok in (True, True, True):
        mc.handle(_check(ok), T0)
    mc.handle(ProviderStateChanged(at=T0, provider="a", old="healthy", new="degraded", reason="server_error",
                                   cause="server_error"), T0)
    mc.handle(_check(True), T0)  # a ping leaves it degraded
    mc.handle(_check(False), T0)
    assert mc.snapshot(T0).providers["a"].health_scores == (1.0, 0.5, 0.0)


def test_the_window_survives_a_restart() -> None:
    """A collector built from persisted metrics goes on from their checks, cut to its own history."""
    saved = ProviderMetrics(health_scores=(0.0, 1.0, 1.0, 0.5))
    mc = MetricsCollector(["a"], latency_window=10, history=2, clock=VirtualClock(T0), restored={"a": saved})
    assert mc.snapshot(T0).providers["a"].health_scores == (1.0, 0.5)


def test_the_status_table_shows_the_score() -> None:
    """``run.py status`` has a reliability column: the score, or - before the first check."""
    from actors.cli.status import format_status

    def provider(score: float | None) -> dict[str, Any]:
        return {"state": "healthy", "priority": 1, "cooldown_remaining_s": None, "failure_count": 0,
                "metrics": {"requests_total": 0}, "reliability_score": score, "last_error": None}

    header, _, a, b = format_status({"providers": {"a": provider(70.0), "b": provider(None)}}).splitlines()[:4]
    column = header.index("reliability")
    assert (a[column:column + 4], b[column:column + 1]) == ("70.0", "-")
