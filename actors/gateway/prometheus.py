"""The ``/metrics`` exposition: Prometheus metrics built at scrape time from published snapshots.

Nothing is counted per request here: each scrape reads the supervisor's latest
routing and metrics snapshots (immutable data) and turns them into metric
families with prometheus-client, the reference implementation of the format.
Per provider: requests, failures by category, latency quantiles, streams' time to
first token (a histogram), state, cooldown left, uptime, success ratio, reliability
score; per deployment (a provider's upstream model): state and cooldown left; fallbacks
by origin, target and (since this process started) the category that caused them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors.core.availability import uptime
from actors.core.deployments import split_key
from actors.core.messages import ProviderMetrics, ProviderView
from actors.core.reliability import reliability_score
from actors.core.states import DAY_S, ProviderState
from actors.core.stats import TTFT_BUCKETS_S, percentile
from actors.runtime.supervisor import Supervisor

__all__ = ("SnapshotCollector",)

_STATES: tuple[str, ...] = get_args(ProviderState)
_QUANTILES = (0.5, 0.95, 0.99)
_LE = [f"{bound:g}" for bound in TTFT_BUCKETS_S] + ["+Inf"]


def _cooldown_left(view: ProviderView, now: float) -> float:
    cooling = view.cooldown_until is not None and view.state in ("cooldown", "unhealthy")
    return max(0.0, (view.cooldown_until or now) - now) if cooling else 0.0


def _cumulative(counts: tuple[int, ...]) -> list[tuple[str, float]]:
    total, out = 0, []
    for le, count in zip(_LE, counts, strict=True):
        total += count
        out.append((le, float(total)))
    return out


class SnapshotCollector:
    """Prometheus metrics built at scrape time from the supervisor's latest snapshots."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def describe(self) -> Iterable[Metric]:
        return ()  # names are dynamic; registering must not collect

    def collect(self) -> Iterable[Metric]:
        supervisor = self._supervisor
        now, snapshot = supervisor.clock.now(), supervisor.metrics
        per = snapshot.providers if snapshot is not None else {}
        p = ["provider"]
        total = CounterMetricFamily("fallback_provider_requests", "Attempts sent to the provider.", labels=p)
        success = CounterMetricFamily("fallback_provider_requests_success", "Attempts answered.", labels=p)
        failed = CounterMetricFamily("fallback_provider_requests_failed", "Attempts that failed.", labels=p)
        failures = CounterMetricFamily("fallback_provider_failures", "Failed attempts by failure category.",
                                       labels=[*p, "category"])
        latency = Metric("fallback_provider_latency_seconds", "Answer latency (to the first chunk when "
                         "streaming) over the last metrics.latency_window answers.", "summary")
        ttft = HistogramMetricFamily("fallback_provider_ttft_seconds", "Streams' time to first token "
                                     "(the answering attempt's), since the state file began.", labels=p)
        state = GaugeMetricFamily("fallback_provider_state", "1 for the provider's current state, else 0.",
                                  labels=[*p, "state"])
        cooldown = GaugeMetricFamily("fallback_provider_cooldown_remaining_seconds",
                                     "Seconds until the provider's cooldown ends (0 when none).", labels=p)
        up = GaugeMetricFamily("fallback_provider_uptime_ratio", "Share of observed time the provider was "
                               "usable (healthy or degraded), from its state history.", labels=[*p, "window"])
        rate = GaugeMetricFamily("fallback_provider_success_ratio", "Share of attempts that succeeded.",
                                 labels=p)
        score = GaugeMetricFamily("fallback_provider_reliability_score", "0-1 over the last health.history "
                                  "health checks: healthy 1, degraded 0.5, out of routing 0 (absent before "
                                  "the first check).", labels=p)
        for view in supervisor.routing.providers:
            m, name = per.get(view.name) or ProviderMetrics(), view.name
            total.add_metric([name], m.requests_total)
            success.add_metric([name], m.requests_success)
            failed.add_metric([name], m.requests_failed)
            for category, count in sorted(m.failures_by_category.items()):
                failures.add_metric([name, category], count)
            for q in _QUANTILES:
                if (value := percentile(m.latencies_ms, q * 100)) is not None:
                    latency.add_sample(latency.name, {"provider": name, "quantile": str(q)}, value / 1000.0)
            if len(m.ttft_buckets) == len(_LE):
                ttft.add_metric([name], _cumulative(m.ttft_buckets), sum_value=m.ttft_sum_ms / 1000.0)
            for s in _STATES:
                state.add_metric([name, s], 1.0 if view.state == s else 0.0)
            cooldown.add_metric([name], _cooldown_left(view, now))
            for window, span in (("24h", DAY_S), ("since_start", None)):
                if (share := uptime(m.availability, now, span)) is not None:
                    up.add_metric([name, window], share / 100.0)
            if m.requests_total:
                rate.add_metric([name], m.requests_success / m.requests_total)
            if (reliability := reliability_score(m.health_scores)) is not None:
                score.add_metric([name], reliability)
        fallbacks = CounterMetricFamily("fallback_fallbacks", "Requests that left one provider for the next "
                                        "(to_provider 'none': no provider was left).",
                                        labels=["from_provider", "to_provider"])
        for key, count in sorted((snapshot.fallbacks_total if snapshot else {}).items()):
            origin, _, target = key.partition("->")  # '>' never occurs in a provider name
            fallbacks.add_metric([origin, target], count)
        causes = CounterMetricFamily("fallback_fallbacks_by_reason", "Fallbacks by the failure category that "
                                     "caused them, since this process started.",
                                     labels=["from_provider", "to_provider", "reason"])
        for key, counts in sorted((snapshot.fallbacks_by_category if snapshot else {}).items()):
            origin, _, target = key.partition("->")
            for reason, count in sorted(counts.items()):
                causes.add_metric([origin, target, reason], count)
        recent = GaugeMetricFamily("fallback_fallbacks_last_24h", "Fallbacks in the last 24 hours.",
                                   value=snapshot.fallbacks_last_24h if snapshot else 0)
        return [total, success, failed, failures, latency, ttft, state, cooldown, up, rate, score,
                *self._deployments(now), fallbacks, causes, recent]

    def _deployments(self, now: float) -> list[Metric]:
        """Each deployment's state and cooldown (providers serving several models keep them apart)."""
        labels = ["provider", "deployment"]
        state = GaugeMetricFamily("fallback_deployment_state", "1 for the deployment's (a provider's "
                                  "upstream model's) current state, else 0.", labels=[*labels, "state"])
        cooldown = GaugeMetricFamily("fallback_deployment_cooldown_remaining_seconds", "Seconds until the "
                                     "deployment's cooldown ends (0 when none).", labels=labels)
        for view in self._supervisor.routing.deployments:
            provider, upstream = split_key(view.name)
            if upstream is None:
                continue
            for s in _STATES:
                state.add_metric([provider, upstream, s], 1.0 if view.state == s else 0.0)
            cooldown.add_metric([provider, upstream], _cooldown_left(view, now))
        return [state, cooldown]
