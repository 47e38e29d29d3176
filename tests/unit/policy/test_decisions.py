"""The actors' decisions, driven through their pure ``handle(message, now)``."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core.clock import VirtualClock
from actors.core.config import Config, HealthConfig, parse_config
from actors.core.messages import (
    AttemptFailed,
    AttemptSucceeded,
    CheckDue,
    DisableProvider,
    EnableProvider,
    ErrorClassified,
    HealthChecked,
    Message,
    ProbeRequested,
    ProviderRecovered,
    ProviderStateChanged,
    RestoreProvider,
    RoutingSnapshot,
    Tick,
)
from actors.core.states import Category
from actors.core.stats import percentile
from actors.policy.error_classifier import classify
from actors.policy.health_monitor import HealthMonitor
from actors.policy.metrics_collector import MetricsCollector
from actors.policy.priority_selector import PrioritySelector
from actors.policy.recovery_manager import RecoveryManager

T0 = 1_800_000_000.0


def config(**routing: Any) -> Config:
    return parse_config(
        {
            "routing": routing,
            "providers": [
                {"name": "a", "base_url": "http://127.0.0.1:1", "models": {"chat": "m"}, "priority": 1},
                {"name": "b", "base_url": "http://127.0.0.1:2", "models": {"chat": "m"}, "priority": 2},
            ],
        },
        env={},
    )


def failed(status: int | None = None, *, kind: str = "http", attempt: int = 1, **kw: Any) -> AttemptFailed:
    return AttemptFailed(at=T0, provider="a", model="chat", request_id="r1", kind=kind,  # type: ignore[arg-type]
                         status=status, attempt=attempt, **kw)


@pytest.mark.parametrize(
    ("failure", "category", "action", "cooldown", "penalize"),
    [
        pytest.param(failed(kind="connect"), "connection_error", "fallback", 300, True, id="refused"),
        pytest.param(failed(401), "auth_failure", "fallback", 1800, True, id="401"),
        pytest.param(failed(403), "auth_failure", "fallback", 1800, True, id="403"),
        pytest.param(failed(429), "rate_limit", "fallback", 60, True, id="429-no-retry-after"),
        pytest.param(failed(429, retry_after_s=7.0), "rate_limit", "fallback", 7, True, id="429-retry-after"),
        pytest.param(failed(404), "model_not_found", "fallback", 600, True, id="404"),
        pytest.param(failed(500), "server_error", "retry", 0, True, id="500-first"),
        pytest.param(failed(502, attempt=2), "server_error", "fallback", 300, True, id="502-second"),
        pytest.param(failed(kind="timeout"), "timeout", "fallback", 120, True, id="timeout"),
        pytest.param(failed(503), "service_unavailable", "fallback", 600, True, id="503"),
        pytest.param(failed(529), "service_unavailable", "fallback", 600, True, id="529"),
        pytest.param(failed(400), "invalid_request", "next", 0, False, id="400-unclear"),
        pytest.param(failed(400, whose="caller"), "invalid_request", "return", 0, False, id="400-callers"),
        pytest.param(failed(400, whose="provider"), "proxy_error", "fallback", 0, True, id="400-providers"),
        pytest.param(failed(400, param="temperature"), "invalid_request", "return", 0, False, id="400-param"),
        pytest.param(failed(400, message="max_tokens: Field required"), "invalid_request", "return", 0,
                     False, id="400-anthropic-field"),
        pytest.param(failed(400, code="context_length_exceeded"), "context_length", "next", 0, False,
                     id="context-length-code"),
        pytest.param(failed(400, message="This model's maximum context length is 8192 tokens"),
                     "context_length", "next", 0, False, id="context-length-message"),
        pytest.param(failed(kind="bad_response"), "bad_response", "fallback", 120, True, id="garbage"),
        pytest.param(failed(kind="stream_stall"), "timeout", "fallback", 120, True, id="stream-stall"),
        pytest.param(failed(418), "client_error", "fallback", 300, True, id="odd-4xx"),
        # 400s a proxy in front of the model sends about itself (recorded bodies' messages):
        pytest.param(failed(400, message="No connected db.", code="400"), "auth_failure", "fallback", 1800, True,
                     id="litellm-no-connected-db"),
        pytest.param(failed(400, message="/chat/completions: Invalid model name passed in model=groq-missing."
                                         " Call `/v1/models` to view available models for your key."),
                     "model_not_found", "fallback", 600, True, id="litellm-invalid-model"),
        pytest.param(failed(400, message="litellm.BadRequestError: LLM Provider NOT provided. Pass in the LLM"
                                         " provider you are trying to call. You passed model=groq-70b"),
                     "proxy_error", "fallback", 300, True, id="litellm-no-provider"),
        pytest.param(failed(400, message="No endpoints found for minimax/minimax-m2.1:free."),
                     "model_not_found", "fallback", 600, True, id="openrouter-no-endpoints"),
        pytest.param(failed(400, message="'messages[1].role': expected one of system, user"), "invalid_request",
                     "return", 0, False, id="400-naming-a-field"),
    ],
)
def test_decision_matrix(failure: AttemptFailed, category: str, action: str, cooldown: float,
                         penalize: bool) -> None:
    """Each failure gets the category, action and cooldown of the decision matrix."""
    verdict = classify(failure, config().routing)
    assert (verdict.category, verdict.action, verdict.cooldown_s, verdict.penalize) == (
        category, action, cooldown, penalize)


def test_cooldowns_come_from_config() -> None:
    """The matrix's cooldowns are the configured ones, not constants."""
    cfg = parse_config({"routing": {"cooldown_s": {"connection_error": 42}},
                        "providers": [{"name": "a", "base_url": "http://x", "models": {"chat": "m"}}]},
                       env={})
    assert classify(failed(kind="connect"), cfg.routing).cooldown_s == 42


# ---------------------------------------------------------------- selector


def selector(**routing: Any) -> PrioritySelector:
    cfg = config(**routing)
    return PrioritySelector(cfg.providers, cfg.routing, clock=VirtualClock(T0))


def fail(sel: PrioritySelector, at: float, status: int | None = 503, **kw: Any) -> list[Message]:
    msg = AttemptFailed(at=at, provider="a", model="chat", request_id="r", kind="http" if status else "connect",
                        status=status, **kw)
    return sel.handle(classify(msg, sel.policy), at)


def state(sel: PrioritySelector, name: str = "a") -> Any:
    return next(v for v in sel.snapshot(T0).providers if v.name == name)


def test_failure_puts_provider_in_cooldown_for_its_category() -> None:
    """A 503 puts the provider in cooldown for the configured 600 s."""
    sel = selector()
    out = fail(sel, T0)
    change = next(m for m in out if isinstance(m, ProviderStateChanged))
    assert (change.old, change.new, change.reason) == ("healthy", "cooldown", "service_unavailable")
    assert state(sel).cooldown_until == T0 + 600


def test_threshold_of_consecutive_failures_makes_unhealthy() -> None:
    """failure_threshold consecutive failures make a provider unhealthy."""
    sel = selector(failure_threshold=2)
    fail(sel, T0, 500)  # retry verdict: degraded, no cooldown
    assert state(sel).state == "degraded"
    fail(sel, T0 + 1, 500)
    assert state(sel).state == "unhealthy"


def test_success_resets_consecutive_failures() -> None:
    """A success in between resets the count, so the threshold is not reached."""
    sel = selector(failure_threshold=2)
    fail(sel, T0, 500)
    sel.handle(AttemptSucceeded(at=T0 + 1, provider="a", model="chat", request_id="r", latency_ms=1), T0 + 1)
    fail(sel, T0 + 2, 500)
    assert (state(sel).state, state(sel).failure_count) == ("degraded", 1)


def test_repeated_cooldowns_grow_and_cap() -> None:
    """Each failed probe doubles the cooldown, up to max_cooldown_s."""
    sel = selector(max_cooldown_s=1000, failure_threshold=100)
    fail(sel, T0, 503)  # 600 s
    lengths = []
    now = T0
    for _ in range(3):
        now = state(sel).cooldown_until
        sel.handle(ProbeRequested(at=now, provider="a"), now)
        sel.handle(HealthChecked(at=now, provider="a", tier="api", ok=False, kind="http", status=503,
                                 probe=True), now)
        lengths.append(state(sel).cooldown_until - now)
    assert lengths == [1000, 1000, 1000]  # 1200 and 2400 capped at 1000
    sel2 = selector(max_cooldown_s=10_000, failure_threshold=100)
    fail(sel2, T0, 503)
    now = state(sel2).cooldown_until
    sel2.handle(ProbeRequested(at=now, provider="a"), now)
    sel2.handle(HealthChecked(at=now, provider="a", tier="api", ok=False, kind="http", status=503, probe=True),
                now)
    assert state(sel2).cooldown_until - now == 1200


def test_a_provider_failing_for_days_stays_capped() -> None:
    """Thousands of failed probes in a row: the cooldown stays at the cap, the level stops growing.

    (The level used to grow forever until growth**level overflowed a float and
    crashed the selector on every failure; found by bench/bench_replay.py.)
    """
    sel = selector(max_cooldown_s=3600, failure_threshold=1_000_000)
    fail(sel, T0, 503)
    for _ in range(3000):
        now = state(sel).cooldown_until
        sel.handle(ProbeRequested(at=now, provider="a"), now)
        sel.handle(HealthChecked(at=now, provider="a", tier="api", ok=False, kind="http", status=503,
                                 probe=True), now)
    assert state(sel).cooldown_until - now == 3600
    assert state(sel).cooldown_level <= 4  # 600, 1200, 2400, then the cap


def test_growth_resets_after_a_stable_healthy_period() -> None:
    """After stable_period_s healthy, the next cooldown starts from the base again."""
    sel = selector(stable_period_s=100, failure_threshold=100)
    fail(sel, T0, 503)
    sel.handle(RestoreProvider(at=T0 + 600, provider="a"), T0 + 600)
    fail(sel, T0 + 650, 503)  # only 50 s healthy: grows
    assert state(sel).cooldown_until == T0 + 650 + 1200
    sel.handle(RestoreProvider(at=T0 + 2000, provider="a"), T0 + 2000)
    fail(sel, T0 + 2200, 503)  # 200 s healthy: back to base
    assert state(sel).cooldown_until == T0 + 2200 + 600


def test_longer_cooldown_is_never_shortened() -> None:
    """A later 429 with a short Retry-After does not cut a longer cooldown short."""
    sel = selector(failure_threshold=100)
    fail(sel, T0, 429, retry_after_s=300.0)
    fail(sel, T0 + 1, 429, retry_after_s=5.0)
    assert state(sel).cooldown_until == T0 + 300


def test_retry_after_sets_the_cooldown() -> None:
    """A 429's Retry-After is the cooldown itself."""
    sel = selector()
    fail(sel, T0, 429, retry_after_s=17.0)
    assert state(sel).cooldown_until == T0 + 17


def test_invalid_request_does_not_penalise() -> None:
    """A 400 leaves the provider healthy with no failure counted."""
    sel = selector()
    assert fail(sel, T0, 400) == []
    assert (state(sel).state, state(sel).failure_count) == ("healthy", 0)


def test_admin_disable_and_enable() -> None:
    """An admin disable takes a provider out; enable brings it back healthy."""
    sel = selector()
    sel.handle(DisableProvider(at=T0, provider="b"), T0)
    assert state(sel, "b").state == "disabled"
    sel.handle(EnableProvider(at=T0 + 1, provider="b"), T0 + 1)
    assert state(sel, "b").state == "healthy"


@pytest.mark.parametrize("disabled_first", [pytest.param(False, id="in-cooldown"),
                                            pytest.param(True, id="disabled-while-cooling")])
def test_enable_restores_at_once_with_failures_and_cooldown_cleared(disabled_first: bool) -> None:
    """Enable is the manual restore: healthy now, whatever the cooldown, with nothing counted against it."""
    sel = selector()
    fail(sel, T0, 503)
    fail(sel, T0, 503)
    if disabled_first:
        sel.handle(DisableProvider(at=T0, provider="a"), T0)
    sel.handle(EnableProvider(at=T0 + 10, provider="a"), T0 + 10)
    view = state(sel)
    assert (view.state, view.failure_count, view.cooldown_until, view.cooldown_level) == ("healthy", 0, None, 0)


def test_unconfigured_provider_names_its_variable() -> None:
    """A provider whose key variable is unset is unconfigured, and says which variable."""
    cfg = parse_config({"providers": [{"name": "a", "base_url": "http://x", "models": {"chat": "m"},
                                       "api_key_env": "A_KEY"}]}, env={})
    sel = PrioritySelector(cfg.providers, cfg.routing, clock=VirtualClock(T0))
    view = sel.snapshot(T0).providers[0]
    assert (view.state, view.detail) == ("unconfigured", "A_KEY is not set")


def test_snapshot_lists_providers_by_priority() -> None:
    """Routing snapshots list providers by priority, whatever the config order."""
    cfg = parse_config({"providers": [
        {"name": "low", "base_url": "http://x", "models": {"chat": "m"}, "priority": 5},
        {"name": "high", "base_url": "http://y", "models": {"chat": "m"}, "priority": 1}]}, env={})
    sel = PrioritySelector(cfg.providers, cfg.routing, clock=VirtualClock(T0))
    assert [v.name for v in sel.snapshot(T0).providers] == ["high", "low"]


def test_state_change_publishes_a_snapshot() -> None:
    """Every state change comes with a fresh routing snapshot."""
    out = fail(selector(), T0)
    assert any(isinstance(m, RoutingSnapshot) for m in out)


# ---------------------------------------------------------------- recovery


def recovery() -> RecoveryManager:
    sel = selector()
    return RecoveryManager(sel.snapshot(T0).providers, health=HealthConfig(), clock=VirtualClock(T0))


def into_cooldown(rec: RecoveryManager, until: float, reason: Category = "service_unavailable") -> None:
    rec.handle(ProviderStateChanged(at=T0, provider="a", old="healthy", new="cooldown", reason=reason,
                                    cooldown_until=until, cause=reason), T0)


def test_probe_is_requested_exactly_when_cooldown_ends() -> None:
    """No probe before the cooldown ends; one probe at its end."""
    rec = recovery()
    into_cooldown(rec, T0 + 60)
    assert rec.next_deadline() == T0 + 60
    assert rec.handle(Tick(at=T0 + 59), T0 + 59) == []
    out = rec.handle(Tick(at=T0 + 60), T0 + 60)
    assert [type(m) for m in out] == [ProbeRequested]


def test_only_one_probe_in_flight() -> None:
    """While a probe is in flight, no second probe is requested (half-open)."""
    rec = recovery()
    into_cooldown(rec, T0 + 60)
    rec.handle(Tick(at=T0 + 60), T0 + 60)
    assert rec.handle(Tick(at=T0 + 61), T0 + 61) == []


def test_lost_probe_is_asked_again_after_its_timeout() -> None:
    """A probe whose answer never comes is requested again after the probe timeout."""
    rec = recovery()
    into_cooldown(rec, T0 + 60)
    rec.handle(Tick(at=T0 + 60), T0 + 60)
    late = rec.next_deadline()
    assert late is not None
    assert late > T0 + 60 + 15
    assert [type(m) for m in rec.handle(Tick(at=late), late)] == [ProbeRequested]


def test_successful_probe_restores_and_reports_downtime() -> None:
    """A passing probe restores the provider; healthy again reports the downtime."""
    rec = recovery()
    into_cooldown(rec, T0 + 60)
    rec.handle(Tick(at=T0 + 60), T0 + 60)
    out = rec.handle(HealthChecked(at=T0 + 61, provider="a", tier="api", ok=True, probe=True), T0 + 61)
    assert [type(m) for m in out] == [RestoreProvider]
    out = rec.handle(ProviderStateChanged(at=T0 + 61, provider="a", old="probing", new="healthy",
                                          reason="probe_succeeded"), T0 + 61)
    assert isinstance(out[0], ProviderRecovered)
    assert out[0].downtime_s == 61


def test_connection_errors_recover_early_on_a_health_check() -> None:
    """A provider cooling down after connection errors that answers a ping again recovers early."""
    rec = recovery()
    into_cooldown(rec, T0 + 300, reason="connection_error")
    out = rec.handle(HealthChecked(at=T0 + 30, provider="a", tier="ping", ok=True), T0 + 30)
    assert [type(m) for m in out] == [RestoreProvider]


def test_other_cooldowns_wait_for_their_probe() -> None:
    """A passing ping does not end a rate-limit cooldown early."""
    rec = recovery()
    into_cooldown(rec, T0 + 300, reason="rate_limit")
    assert rec.handle(HealthChecked(at=T0 + 30, provider="a", tier="ping", ok=True), T0 + 30) == []


# ---------------------------------------------------------------- health monitor


def monitor(**health: Any) -> HealthMonitor:
    cfg = parse_config({"health": health, "providers": [
        {"name": "a", "base_url": "http://x", "models": {"chat": "m"}},
        {"name": "u", "base_url": "http://y", "models": {"chat": "m"}, "api_key_env": "NOPE"}]}, env={})
    return HealthMonitor(cfg.providers, cfg.health, states={"a": "healthy", "u": "unconfigured"},
                              clock=VirtualClock(T0))


def test_tiers_follow_their_intervals() -> None:
    """ping and full run at start and then every interval; api waits one interval."""
    hm = monitor(ping_interval_s=30, full_interval_s=60, api_interval_s=300)
    first = hm.handle(Tick(at=T0), T0)
    assert sorted((m.provider, m.tier) for m in first if isinstance(m, CheckDue)) == [("a", "full"), ("a", "ping")]
    for m in first:
        assert isinstance(m, CheckDue)
        hm.handle(HealthChecked(at=T0, provider=m.provider, tier=m.tier, ok=True), T0)
    assert hm.next_deadline() == T0 + 30
    due = hm.handle(Tick(at=T0 + 300), T0 + 300)
    assert {m.tier for m in due if isinstance(m, CheckDue)} == {"ping", "full", "api"}


def test_api_tier_off_when_interval_is_zero() -> None:
    """An api_interval_s of 0 turns the api tier off."""
    hm = monitor(ping_interval_s=0, full_interval_s=0, api_interval_s=0)
    assert hm.next_deadline() is None


def test_unconfigured_and_disabled_providers_are_not_checked() -> None:
    """Providers that are unconfigured or disabled get no scheduled checks."""
    hm = monitor()
    hm.handle(ProviderStateChanged(at=T0, provider="a", old="healthy", new="disabled", reason="admin"), T0)
    assert hm.handle(Tick(at=T0 + 1000), T0 + 1000) == []


def test_probe_request_runs_the_probe_tier() -> None:
    """A probe request becomes one probe check in the configured tier."""
    hm = monitor(probe_tier="full")
    out = hm.handle(ProbeRequested(at=T0, provider="a"), T0)
    assert out == [CheckDue(at=T0, provider="a", tier="full", probe=True)]
    assert hm.handle(ProbeRequested(at=T0, provider="a"), T0) == []


# ---------------------------------------------------------------- metrics


def test_metrics_count_and_time() -> None:
    """Successes, failures and latencies add up per provider."""
    mc = MetricsCollector(["a"], latency_window=3, clock=VirtualClock(T0))
    for i, ms in enumerate([10.0, 20.0, 30.0, 40.0]):
        mc.handle(AttemptSucceeded(at=T0 + i, provider="a", model="chat", request_id="r", latency_ms=ms), T0)
    mc.handle(failed(503), T0)
    mc.handle(classify(failed(503), config().routing), T0)
    m = mc.snapshot(T0).providers["a"]
    assert (m.requests_total, m.requests_success, m.requests_failed) == (5, 4, 1)
    assert m.latencies_ms == (20.0, 30.0, 40.0)  # the window keeps the last 3
    assert m.failures_by_category == {"service_unavailable": 1}


def test_health_failures_are_not_request_failures() -> None:
    """Verdicts on health checks do not count as failed requests by category."""
    mc = MetricsCollector(["a"], latency_window=3, clock=VirtualClock(T0))
    verdict = classify(HealthChecked(at=T0, provider="a", tier="full", ok=False, kind="connect"), config().routing)
    assert isinstance(verdict, ErrorClassified)
    mc.handle(verdict, T0)
    assert mc.snapshot(T0).providers["a"].failures_by_category == {}


def test_percentile_nearest_rank() -> None:
    """Percentiles use the nearest-rank method."""
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) is None


@pytest.mark.parametrize(("tier", "category"), [
    pytest.param("full", "auth_failure", id="full-check-no-connected-db"),
    pytest.param("api", "auth_failure", id="api-check-no-connected-db"),
])
def test_a_health_check_meeting_a_proxy_400_takes_the_provider_out(tier: str, category: str) -> None:
    """A full or api check that gets LiteLLM's own 400 is a provider fault, not a client's."""
    check = HealthChecked(at=T0, provider="a", tier=tier, ok=False, kind="http", status=400,  # type: ignore[arg-type]
                          message="No connected db.")
    verdict = classify(check, config().routing)
    assert (verdict.category, verdict.penalize, verdict.check) == (category, True, tier)


def test_any_400_to_an_api_check_is_the_providers() -> None:
    """The api check is our own one-token request: a 400 to it can't be the caller's fault."""
    check = HealthChecked(at=T0, provider="a", tier="api", ok=False, kind="http", status=400,
                          message="something odd")
    verdict = classify(check, config().routing)
    assert (verdict.category, verdict.action, verdict.penalize) == ("proxy_error", "fallback", True)
