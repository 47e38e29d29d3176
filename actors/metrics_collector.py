"""MetricsCollector: aggregates every outcome into per-provider metrics.

Takes in: :class:`AttemptSucceeded`, :class:`AttemptFailed`,
:class:`ErrorClassified`, :class:`FallbackTriggered`, :class:`ProviderRecovered`.
Puts out: a :class:`MetricsSnapshot` at most every ``persist_interval_s``
after a change, for the store. Readers (/status, /metrics) call
:meth:`MetricsCollector.snapshot` when they ask: a pure read returning
immutable data, so no request pays for a snapshot nobody reads.
Owns: requests total/success/failed, failures by category, the last
``latency_window`` latencies, last success/failure, the fallback log, and
recovery times. The supervisor persists the snapshots (batched, never an
fsync per request) and hands the persisted values back at start.
Promises: percentiles come from :func:`percentile`, computed by readers from
the snapshot's latency window, so the hot path never sorts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .actor import Actor, Bus
from .clock import Clock
from .messages import (
    AttemptFailed,
    AttemptSucceeded,
    ErrorClassified,
    FallbackTriggered,
    Message,
    MetricsSnapshot,
    ProviderMetrics,
    ProviderRecovered,
    Tick,
)

__all__ = ("MetricsCollector", "percentile")

DAY_S = 86_400.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class _Aggregate:
    window: int
    total: int = 0
    success: int = 0
    failed: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=deque)
    last_success: float | None = None
    last_failure: float | None = None

    def __post_init__(self) -> None:
        self.latencies = deque(self.latencies, maxlen=self.window)

    @classmethod
    def restore(cls, window: int, m: ProviderMetrics) -> _Aggregate:
        return cls(
            window=window,
            total=m.requests_total,
            success=m.requests_success,
            failed=m.requests_failed,
            by_category=dict(m.failures_by_category),
            latencies=deque(m.latencies_ms),
            last_success=m.last_success,
            last_failure=m.last_failure,
        )

    def view(self) -> ProviderMetrics:
        return ProviderMetrics(
            requests_total=self.total,
            requests_success=self.success,
            requests_failed=self.failed,
            failures_by_category=dict(self.by_category),
            latencies_ms=tuple(self.latencies),
            last_success=self.last_success,
            last_failure=self.last_failure,
        )


class MetricsCollector(Actor):
    """Counts, times and remembers; publishes snapshots for readers."""

    name: ClassVar[str] = "metrics_collector"
    accepts: ClassVar[tuple[type[Message], ...]] = (
        AttemptSucceeded,
        AttemptFailed,
        ErrorClassified,
        FallbackTriggered,
        ProviderRecovered,
    )

    def __init__(
        self,
        providers: Iterable[str],
        *,
        latency_window: int,
        clock: Clock,
        bus: Bus,
        restored: dict[str, ProviderMetrics] | None = None,
        fallbacks: Iterable[FallbackTriggered] = (),
        fallbacks_total: dict[str, int] | None = None,
        fallback_times: Iterable[float] = (),
        recovery_times: Iterable[float] = (),
        persist_interval_s: float = 5.0,
    ) -> None:
        super().__init__(clock=clock, bus=bus, inbox_size=8192)
        restored = restored or {}
        self._aggs = {
            name: _Aggregate.restore(latency_window, restored[name])
            if name in restored
            else _Aggregate(window=latency_window)
            for name in providers
        }
        self._views = {name: agg.view() for name, agg in self._aggs.items()}
        self._dirty: set[str] = set()
        self._fallbacks: deque[FallbackTriggered] = deque(fallbacks, maxlen=50)
        # Times of the fallbacks in the last 24 h (bounded: a storm can't eat memory).
        self._fallback_times: deque[float] = deque(fallback_times, maxlen=200_000)
        self._fallbacks_total = dict(fallbacks_total or {})
        self._recoveries: deque[float] = deque(recovery_times, maxlen=1000)
        self._changed = True
        self.persist_interval_s = persist_interval_s
        self._persist_due: float | None = None

    def next_deadline(self) -> float | None:
        return self._persist_due

    def handle(self, message: Message, now: float) -> list[Message]:
        if isinstance(message, Tick):
            self._persist_due = None
            return [self.snapshot(now)]
        if self._persist_due is None:
            self._persist_due = now + self.persist_interval_s
        match message:
            case AttemptSucceeded(provider=name) if name in self._aggs:
                agg = self._aggs[name]
                agg.total += 1
                agg.success += 1
                agg.latencies.append(message.latency_ms)
                agg.last_success = message.at
                self._dirty.add(name)
            case AttemptFailed(provider=name) if name in self._aggs:
                agg = self._aggs[name]
                agg.total += 1
                agg.failed += 1
                agg.last_failure = message.at
                self._dirty.add(name)
            case ErrorClassified(provider=name) if name in self._aggs and not message.request_id.startswith(
                "health-"
            ):
                cats = self._aggs[name].by_category
                cats[message.category] = cats.get(message.category, 0) + 1
                self._dirty.add(name)
            case FallbackTriggered():
                self._fallbacks.append(message)
                self._fallback_times.append(message.at)
                key = f"{message.from_provider}->{message.to_provider or 'none'}"
                self._fallbacks_total[key] = self._fallbacks_total.get(key, 0) + 1
                self._changed = True
            case ProviderRecovered():
                self._recoveries.append(message.downtime_s)
                self._changed = True
            case _:
                pass
        return []

    def snapshot(self, now: float) -> MetricsSnapshot:
        """The aggregates now, as immutable data (only changed providers are rebuilt)."""
        for name in self._dirty:
            self._views[name] = self._aggs[name].view()
        self._dirty.clear()
        self._changed = False
        while self._fallback_times and self._fallback_times[0] < now - DAY_S:
            self._fallback_times.popleft()
        return MetricsSnapshot(
            at=now,
            providers=dict(self._views),
            recent_fallbacks=tuple(self._fallbacks),
            fallbacks_total=dict(self._fallbacks_total),
            fallbacks_last_24h=len(self._fallback_times),
            recovery_times_s=tuple(self._recoveries),
        )
