"""One wiring of the five actors, shared by the Supervisor and replay.

:func:`build_actors` makes the actors from a config and the provider state a
run starts from, exactly as a live supervisor does; replay calls it too, so
the actors it replays are built the way the ones it reproduces were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.config import Config
from actors.core.messages import (
    FallbackTriggered,
    PrefillRefused,
    ProviderMetrics,
    ProviderRecovered,
    ProviderView,
    RoutingSnapshot,
)
from actors.core.public_config import CONFIG_META, public_config
from actors.core.states import DAY_S
from actors.edges.store import Store
from actors.policy.error_classifier import ErrorClassifier
from actors.policy.health_monitor import HealthMonitor
from actors.policy.metrics_collector import MetricsCollector
from actors.policy.priority_selector import PrioritySelector
from actors.policy.recovery_manager import RecoveryManager

__all__ = ("Actors", "Restored", "build_actors", "load_restored", "record_config")


@dataclass(frozen=True)
class Restored:
    """What a run starts from: provider state and metrics (from the state file, or a log's start line)."""

    providers: dict[str, ProviderView] = field(default_factory=dict)
    metrics: dict[str, ProviderMetrics] = field(default_factory=dict)
    fallbacks: tuple[FallbackTriggered, ...] = ()  # of the last 24 h, oldest first
    fallbacks_total: dict[str, int] = field(default_factory=dict)
    recovery_times: tuple[float, ...] = ()
    #: (provider, upstream model) that refused a continuation's prefill (the log's prefill_refused).
    prefill_refused: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Actors:
    """The five actors of one run, and the routing snapshot they start from."""

    classifier: ErrorClassifier
    selector: PrioritySelector
    recovery: RecoveryManager
    health: HealthMonitor
    metrics: MetricsCollector
    start: RoutingSnapshot

    def all(self) -> list[Actor[Any]]:
        """In the order the supervisor starts them."""
        return [self.classifier, self.selector, self.recovery, self.health, self.metrics]

    def deciders(self) -> list[Actor[Any]]:
        """The actors whose decisions replay checks (the health monitor's results are logged inputs)."""
        return [self.classifier, self.selector, self.recovery, self.metrics]


async def load_restored(store: Store, now: float) -> Restored:
    """What a run starts from, read from the state file (the supervisor's start, ``run.py status``)."""
    providers = await store.load_providers()
    metrics = await store.load_metrics()
    recent = [e.message for e in await store.events(types=["fallback_triggered"], since=now - DAY_S,
                                                    limit=200_000)]
    recoveries = [e.message for e in await store.events(types=["provider_recovered"], limit=1000)]
    refusals = [e.message for e in await store.events(types=["prefill_refused"], limit=10_000)]
    totals_raw = await store.get_meta("fallbacks_total")
    return Restored(
        providers=providers,
        metrics=metrics,
        fallbacks=tuple(m for m in recent if isinstance(m, FallbackTriggered)),
        fallbacks_total=msgspec.json.decode(totals_raw, type=dict[str, int]) if totals_raw else {},
        recovery_times=tuple(m.downtime_s for m in recoveries if isinstance(m, ProviderRecovered)),
        prefill_refused=frozenset((m.provider, m.model) for m in refusals if isinstance(m, PrefillRefused)),
    )


async def record_config(store: Store, config: Config) -> None:
    """Remember the config a service runs under, without secrets, for export."""
    payload = {"config": public_config(config), "configured": [p.name for p in config.providers
                                                               if p.configured]}
    await store.set_meta(CONFIG_META, msgspec.json.encode(payload).decode())


def build_actors(config: Config, *, clock: Clock, restored: Restored | None = None,
                 exact: bool = False) -> Actors:
    """The actors for ``config``, starting from ``restored`` (nothing: every provider fresh).

    ``exact``: ``restored`` is a checkpoint of a running service, not a state
    file read at start, so a probe in flight stays in flight.
    """
    restored = restored or Restored()
    selector = PrioritySelector(config.providers, config.routing, clock=clock, restored=restored.providers,
                                exact=exact)
    start = selector.snapshot(clock.now())
    health = config.health
    fallbacks: Iterable[FallbackTriggered] = restored.fallbacks
    return Actors(
        classifier=ErrorClassifier(config.routing, clock=clock),
        selector=selector,
        recovery=RecoveryManager((*start.providers, *start.deployments), health=health, clock=clock),
        health=HealthMonitor(config.providers, health, states={v.name: v.state for v in start.providers},
                             clock=clock),
        metrics=MetricsCollector(
            [p.name for p in config.providers],
            latency_window=config.metrics.latency_window,
            history=health.history,
            clock=clock,
            restored=restored.metrics,
            fallbacks=list(fallbacks)[-50:],
            fallbacks_total=restored.fallbacks_total,
            fallback_times=[m.at for m in restored.fallbacks],
            recovery_times=restored.recovery_times,
            states={v.name: v.state for v in start.providers},
        ),
        start=start,
    )
