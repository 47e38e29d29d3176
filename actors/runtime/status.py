"""The status view: routing and metrics snapshots turned into the /status JSON.

Pure functions of immutable snapshots, shared by ``Supervisor.status()``,
the gateway's ``/status`` and ``run.py status`` (which builds it from the
SQLite file when the service is down).
"""

from __future__ import annotations

from typing import Any

from actors.core.availability import uptime
from actors.core.config import Config, HealthConfig
from actors.core.deployments import split_key
from actors.core.messages import LastError, MetricsSnapshot, ProviderMetrics, ProviderView, RoutingSnapshot
from actors.core.reliability import reliability_score
from actors.core.states import DAY_S
from actors.core.stats import percentile
from actors.core.times import iso
from actors.policy.recovery_manager import next_probe_at

__all__ = ("build_status", "iso", "metrics_view")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def metrics_view(m: ProviderMetrics, now: float) -> dict[str, Any]:
    """One provider's metrics as /status shows them.

    ``uptime_percent`` is the share of observed time (the last 24 h) the
    provider was usable, from its state history; ``success_rate_percent`` is
    the share of attempts sent to it that succeeded. Both also since start.
    """
    success = _round(100.0 * m.requests_success / m.requests_total) if m.requests_total else None
    lat = m.latencies_ms
    return {
        "requests_total": m.requests_total,
        "requests_success": m.requests_success,
        "requests_failed": m.requests_failed,
        "avg_latency_ms": _round(sum(lat) / len(lat)) if lat else None,
        "p50_latency_ms": _round(percentile(lat, 50)),
        "p95_latency_ms": _round(percentile(lat, 95)),
        "p99_latency_ms": _round(percentile(lat, 99)),
        "uptime_percent": _round(uptime(m.availability, now, DAY_S)),
        "uptime_percent_since_start": _round(uptime(m.availability, now)),
        "success_rate_percent": success,
        "failures_by_category": dict(m.failures_by_category),
        "bad_chunks": m.bad_chunks,
        "last_success": iso(m.last_success),
        "last_failure": iso(m.last_failure),
    }


def _last_error(err: LastError | None) -> dict[str, Any] | None:
    if err is None:
        return None
    return {"category": err.category, "status": err.status, "message": err.message, "at": iso(err.at),
            "retry_at": iso(err.retry_at) if err.retry_at is not None else None}


def _cooling(view: ProviderView, health: HealthConfig, now: float) -> dict[str, Any]:
    remaining = None
    if view.cooldown_until is not None and view.state in ("cooldown", "unhealthy"):
        remaining = round(max(0.0, view.cooldown_until - now), 1)
    probe = next_probe_at(view, health, now)  # None while not out of routing, or a probe is in flight
    return {"cooldown_until": iso(view.cooldown_until), "cooldown_remaining_s": remaining,
            "next_probe_at": iso(probe),
            "next_probe_in_s": None if probe is None else round(max(0.0, probe - now), 1)}


def build_status(
    config: Config, routing: RoutingSnapshot, metrics: MetricsSnapshot | None, now: float
) -> dict[str, Any]:
    """The /status document (DESIGN.md), plus a few fields operators asked for."""
    models = {p.name: p.models for p in config.providers}
    own: dict[str, dict[str, Any]] = {}  # provider -> upstream model -> its deployment's state
    for view in routing.deployments:
        provider, upstream = split_key(view.name)
        own.setdefault(provider, {})[upstream or ""] = {
            "state": view.state, **_cooling(view, config.health, now), "failure_count": view.failure_count,
            "last_error": _last_error(view.last_error)}
    providers: dict[str, Any] = {}
    for view in routing.providers:
        m = metrics.providers.get(view.name) if metrics else None
        providers[view.name] = {
            "state": view.state,
            "priority": view.priority,
            "models": dict(models.get(view.name, {})),
            **_cooling(view, config.health, now),
            "cooldown_level": view.cooldown_level,
            "failure_count": view.failure_count,
            "detail": view.detail or None,
            "last_error": _last_error(view.last_error),
            "metrics": metrics_view(m or ProviderMetrics(), now),
            # Over the last [health] history checks: healthy 1, degraded 0.5, out of routing 0 (0 to 1).
            "reliability_score": reliability_score(m.health_scores) if m else None,
            "reliability_checks": len(m.health_scores) if m else 0,
            # Each upstream model's own state, when it serves several (a 429 on one leaves the rest).
            "deployments": own.get(view.name, {}),
        }
    recoveries = metrics.recovery_times_s if metrics else ()
    return {
        "providers": providers,
        "fallback_events_last_24h": metrics.fallbacks_last_24h if metrics else 0,
        "avg_recovery_time_seconds": _round(sum(recoveries) / len(recoveries), 1) if recoveries else None,
        "fallbacks_total": dict(metrics.fallbacks_total) if metrics else {},
        "recent_fallbacks": [
            {
                "at": iso(f.at),
                "from": f.from_provider,
                "to": f.to_provider,
                "category": f.category,
                "reason": f.reason,
                "request_id": f.request_id,
            }
            for f in (metrics.recent_fallbacks[-10:] if metrics else ())
        ],
        "generated_at": iso(now),
    }
