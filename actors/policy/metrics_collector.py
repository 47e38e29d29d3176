"""MetricsCollector: aggregates every outcome into per-provider metrics.

Takes in: :class:`AttemptSucceeded`, :class:`AttemptFailed`,
:class:`ErrorClassified`, :class:`FallbackTriggered`, :class:`ProviderRecovered`,
:class:`ProviderStateChanged` and :class:`HealthChecked`.
Puts out: a :class:`MetricsSnapshot` whenever its aggregates changed and its
inbox is empty (once per burst, not once per message), for readers (/status,
/metrics, the CLI) and for the store, which persists it batched.
Owns: requests total/success/failed, failures by category, the last
``latency_window`` latencies, last success/failure, the fallback log,
recovery times, streams' times to first token (a histogram), fallbacks by
cause, and what each of the last ``history`` health checks counted
toward the reliability score (:mod:`actors.core.reliability`). The
supervisor hands the persisted values back at start.
Promises: readers only ever see the published immutable snapshot (nothing
outside this actor's task touches its state); percentiles are computed by
readers from the snapshot's latency window, so the hot path never sorts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, assert_never

import msgspec

from actors.core.actor import Actor
from actors.core.availability import Availability, advance, carried_over
from actors.core.clock import Clock
from actors.core.messages import (
    AttemptFailed,
    AttemptSucceeded,
    ErrorClassified,
    FallbackTriggered,
    HealthChecked,
    Message,
    MetricsSnapshot,
    ProviderMetrics,
    ProviderRecovered,
    ProviderStateChanged,
    Sync,
)
from actors.core.reliability import check_score
from actors.core.states import DAY_S, Category, ProviderState
from actors.core.stats import TTFT_BUCKETS_S, ttft_bucket

__all__ = ("MetricsCollector", "MetricsInbox")


@dataclass
class _Aggregate:
    window: int
    total: int = 0
    success: int = 0
    failed: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    bad_chunks: int = 0
    latencies: deque[float] = field(default_factory=deque)
    last_success: float | None = None
    last_failure: float | None = None
    availability: Availability = field(default_factory=Availability)
    history: int = 100
    health: deque[float] = field(default_factory=deque)
    ttft_buckets: list[int] = field(default_factory=list)  # actors.core.stats.TTFT_BUCKETS_S, and the rest
    ttft_sum_ms: float = 0.0

    def __post_init__(self) -> None:
        self.latencies = deque(self.latencies, maxlen=self.window)
        self.health = deque(self.health, maxlen=self.history)

    def add_ttft(self, ms: float) -> None:
        if len(self.ttft_buckets) != len(TTFT_BUCKETS_S) + 1:  # none yet, or restored under other bounds
            self.ttft_buckets, self.ttft_sum_ms = [0] * (len(TTFT_BUCKETS_S) + 1), 0.0
        self.ttft_buckets[ttft_bucket(ms / 1000.0)] += 1
        self.ttft_sum_ms += ms

    @classmethod
    def restore(cls, window: int, m: ProviderMetrics, history: int = 100) -> _Aggregate:
        return cls(
            window=window,
            history=history,
            health=deque(m.health_scores),
            total=m.requests_total,
            success=m.requests_success,
            failed=m.requests_failed,
            by_category=dict(m.failures_by_category),
            bad_chunks=m.bad_chunks,
            latencies=deque(m.latencies_ms),
            last_success=m.last_success,
            last_failure=m.last_failure,
            # The day's segments carry over; the open one and the since-start sums do not:
            # the time the service was not running was not observed.
            availability=carried_over(m.availability),
            ttft_buckets=list(m.ttft_buckets),
            ttft_sum_ms=m.ttft_sum_ms,
        )

    def view(self, now: float) -> ProviderMetrics:
        return ProviderMetrics(
            requests_total=self.total,
            requests_success=self.success,
            requests_failed=self.failed,
            failures_by_category=dict(self.by_category),
            bad_chunks=self.bad_chunks,
            latencies_ms=tuple(self.latencies),
            last_success=self.last_success,
            last_failure=self.last_failure,
            availability=msgspec.structs.replace(self.availability, as_of=now),
            health_scores=tuple(self.health),
            ttft_buckets=tuple(self.ttft_buckets),
            ttft_sum_ms=round(self.ttft_sum_ms, 3),
        )


MetricsInbox = (
    AttemptSucceeded | AttemptFailed | ErrorClassified | FallbackTriggered | ProviderRecovered
    | ProviderStateChanged
    | HealthChecked
    | Sync
)


class MetricsCollector(Actor[MetricsInbox]):
    """Counts, times and remembers; publishes snapshots for readers."""

    name: ClassVar[str] = "metrics_collector"
    accepts: ClassVar[tuple[type[Message], ...]] = Actor.inbox_types(MetricsInbox)

    def __init__(
        self,
        providers: Iterable[str],
        *,
        latency_window: int,
        clock: Clock,
        restored: dict[str, ProviderMetrics] | None = None,
        fallbacks: Iterable[FallbackTriggered] = (),
        fallbacks_total: dict[str, int] | None = None,
        fallback_times: Iterable[float] = (),
        recovery_times: Iterable[float] = (),
        states: Mapping[str, ProviderState] | None = None,
        publish_interval_s: float = 1.0,
        history: int = 100,
    ) -> None:
        super().__init__(clock=clock, inbox_size=8192)
        restored = restored or {}
        self._aggs = {
            name: _Aggregate.restore(latency_window, restored[name], history)
            if name in restored
            else _Aggregate(window=latency_window, history=history)
            for name in providers
        }
        now = clock.now()
        #: Each provider's state and the cause of its cooldown, as the selector announced them.
        self._states: dict[str, tuple[ProviderState, Category | None]] = {}
        for name, state in (states or {}).items():
            if (agg := self._aggs.get(name)) is not None:
                agg.availability = advance(agg.availability, state, now)
                self._states[name] = (state, None)
        self._views = {name: agg.view(now) for name, agg in self._aggs.items()}
        self._dirty: set[str] = set()
        self._fallbacks: deque[FallbackTriggered] = deque(fallbacks, maxlen=50)
        # Times of the fallbacks in the last 24 h (bounded: a storm can't eat memory).
        self._fallback_times: deque[float] = deque(fallback_times, maxlen=200_000)
        self._fallbacks_total = dict(fallbacks_total or {})
        self._fallbacks_by_category: dict[str, dict[str, int]] = {}  # since this process started
        self._recoveries: deque[float] = deque(recovery_times, maxlen=1000)
        self._changed = False  # since the last published snapshot
        self.publish_interval_s = publish_interval_s
        self._published: float | None = None  # when the last snapshot went out

    def handle(self, message: MetricsInbox, now: float) -> list[Message]:
        match message:
            case AttemptSucceeded():
                if (agg := self._aggs.get(message.provider)) is not None:
                    agg.total += 1
                    agg.success += 1
                    agg.latencies.append(message.latency_ms)
                    if message.stream:  # a stream's latency is its time to first token
                        agg.add_ttft(message.latency_ms)
                    agg.bad_chunks += message.bad_chunks
                    agg.last_success = message.at
                    self._dirty.add(message.provider)
            case AttemptFailed():
                if (agg := self._aggs.get(message.provider)) is not None:
                    agg.total += 1
                    agg.failed += 1
                    agg.last_failure = message.at
                    self._dirty.add(message.provider)
            case ErrorClassified():
                # A verdict on a health check is not a failed request.
                if message.check is None and (agg := self._aggs.get(message.provider)) is not None:
                    agg.by_category[message.category] = agg.by_category.get(message.category, 0) + 1
                    self._dirty.add(message.provider)
            case FallbackTriggered():
                self._fallbacks.append(message)
                self._fallback_times.append(message.at)
                key = f"{message.from_provider}->{message.to_provider or 'none'}"
                self._fallbacks_total[key] = self._fallbacks_total.get(key, 0) + 1
                causes = self._fallbacks_by_category.setdefault(key, {})
                causes[message.category] = causes.get(message.category, 0) + 1
                self._changed = True
            case ProviderRecovered():
                self._recoveries.append(message.downtime_s)
                self._changed = True
            case ProviderStateChanged():
                if (agg := self._aggs.get(message.provider)) is not None:
                    agg.availability = advance(agg.availability, message.new, message.at)
                    self._states[message.provider] = (message.new, message.cause)
                    self._dirty.add(message.provider)
            case HealthChecked():
                if (agg := self._aggs.get(message.provider)) is not None:
                    state, cause = self._states.get(message.provider, ("healthy", None))
                    if (score := check_score(message, state, cause)) is not None:
                        agg.health.append(score)
                        self._dirty.add(message.provider)
            case Sync():
                self._dirty.update(self._aggs)  # a fresh snapshot of everything, read out now:
                return [self.snapshot(now)]  # published before the asker hears back
            case _:
                assert_never(message)
        return []

    def idle(self, now: float) -> list[Message]:
        """With the inbox drained: publish what changed, at most every ``publish_interval_s``.

        Readers that need it fresher ask for it (a :class:`Sync`: the supervisor's ``refresh()``).
        """
        if not self._changed and not self._dirty:
            return []
        if self._published is not None and now < self._published + self.publish_interval_s:
            return []  # soon: the next burst, or the supervisor's periodic refresh, publishes it
        return [self.snapshot(now)]

    def snapshot(self, now: float) -> MetricsSnapshot:
        """The aggregates now, as immutable data (only changed providers are rebuilt).

        Called in this actor's own task (from :meth:`idle`), by the supervisor
        at shutdown after the actors stopped, and by replay on its own actors.
        """
        self._published = now
        for name in self._dirty:
            self._views[name] = self._aggs[name].view(now)
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
            fallbacks_by_category={key: dict(causes) for key, causes in self._fallbacks_by_category.items()},
        )
