"""RecoveryManager: cooldown expiry, half-open probes, failback.

Takes in: :class:`ProviderStateChanged` (from the selector) and
:class:`HealthChecked` (from the health monitor).
Puts out: :class:`ProbeRequested` when a cooldown ends, :class:`RestoreProvider`
when a probe succeeds (or a provider cooling down after connection errors
answers its health check again), and :class:`ProviderRecovered` with the
downtime when a provider is healthy again.
Owns: the cooldown timers and which provider has a probe in flight.
Promises: exactly one probe in flight per provider (half-open); a probe whose
answer never comes is asked again after the probe timeout; no user request is
ever used as a probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, assert_never

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.messages import (
    HealthChecked,
    Message,
    ProbeRequested,
    ProviderRecovered,
    ProviderStateChanged,
    ProviderView,
    RestoreProvider,
    RoutingSnapshot,
    Tick,
)
from actors.core.states import DOWN_STATES, Category, ProviderState

__all__ = ("RecoveryInbox", "RecoveryManager")


@dataclass
class _Watch:
    state: ProviderState
    cooldown_until: float | None = None
    category: Category | None = None
    down_since: float | None = None
    probe_deadline: float | None = None  # set while a probe is in flight

    def due(self) -> float | None:
        if self.probe_deadline is not None:
            return self.probe_deadline
        if self.state in ("cooldown", "unhealthy"):
            return self.cooldown_until if self.cooldown_until is not None else 0.0
        return None


# Snapshots carry every provider's full state: a restart after a crash, or a
# message lost with it, is made good by the next snapshot.
RecoveryInbox = ProviderStateChanged | HealthChecked | RoutingSnapshot | Tick


class RecoveryManager(Actor[RecoveryInbox]):
    """Brings providers back: probe at the end of each cooldown, restore on success."""

    name: ClassVar[str] = "recovery_manager"
    accepts: ClassVar[tuple[type[Message], ...]] = Actor.inbox_types(RecoveryInbox)
    logs_timers: ClassVar[bool] = True  # its ticks decide probes: replay must fire them when they fired

    def __init__(
        self,
        providers: tuple[ProviderView, ...],
        *,
        probe_timeout_s: float,
        clock: Clock,
    ) -> None:
        super().__init__(clock=clock)
        self.probe_timeout_s = probe_timeout_s
        # A probe in flight (a checkpoint's "probing") is due back when it would have been live.
        self._watches = {
            p.name: _Watch(
                state=p.state,
                cooldown_until=p.cooldown_until,
                category=p.last_error.category if p.last_error else None,
                down_since=p.down_since,
                probe_deadline=self._probe_due(p.probing_since) if p.state == "probing" else None,
            )
            for p in providers
        }

    def _probe_due(self, asked_at: float | None) -> float | None:
        # Leave room for the prober's own timeout before asking again.
        return None if asked_at is None else asked_at + self.probe_timeout_s + 5.0

    def next_deadline(self) -> float | None:
        return min((d for w in self._watches.values() if (d := w.due()) is not None), default=None)

    def handle(self, message: RecoveryInbox, now: float) -> list[Message]:
        match message:
            case Tick():
                return self._on_tick(now)
            case ProviderStateChanged():
                return self._on_state(message, now)
            case HealthChecked():
                return self._on_health(message, now)
            case RoutingSnapshot():
                self._reconcile(message.providers)
                return []
            case _:
                assert_never(message)

    def _reconcile(self, views: tuple[ProviderView, ...]) -> None:
        for view in views:
            w = self._watches.get(view.name)
            if w is None:
                continue
            if view.state in DOWN_STATES and view.last_error is not None:
                w.category = view.last_error.category  # the latest failure, as a checkpoint would have it
            if (w.state, w.cooldown_until) == (view.state, view.cooldown_until):
                continue
            w.state, w.cooldown_until = view.state, view.cooldown_until
            if view.state in DOWN_STATES:
                w.down_since = w.down_since if w.down_since is not None else view.down_since
            if view.state in ("cooldown", "unhealthy"):
                w.probe_deadline = None

    def _on_tick(self, now: float) -> list[Message]:
        out: list[Message] = []
        for name, w in self._watches.items():
            due = w.due()
            if due is None or due > now:
                continue
            reason = "probe_timed_out" if w.probe_deadline is not None else "cooldown_expired"
            w.probe_deadline = self._probe_due(now)
            out.append(ProbeRequested(at=now, provider=name, reason=reason))
        return out

    def _on_state(self, change: ProviderStateChanged, now: float) -> list[Message]:
        w = self._watches.get(change.provider)
        if w is None:
            return []
        w.state = change.new
        w.cooldown_until = change.cooldown_until
        if change.new in DOWN_STATES:
            if change.cause is not None:
                w.category = change.cause
            if w.down_since is None:
                w.down_since = change.at
        if change.new in ("cooldown", "unhealthy"):
            w.probe_deadline = None  # the last probe (if any) has been answered
        if change.new == "healthy" and w.down_since is not None:
            downtime = max(0.0, change.at - w.down_since)
            w.down_since = None
            w.probe_deadline = None
            return [ProviderRecovered(at=now, provider=change.provider, downtime_s=downtime)]
        if change.new not in DOWN_STATES:
            w.down_since = None
            w.probe_deadline = None
        return []

    def _on_health(self, check: HealthChecked, now: float) -> list[Message]:
        w = self._watches.get(check.provider)
        if w is None:
            return []
        if check.probe:
            in_flight = w.probe_deadline is not None
            w.probe_deadline = None
            if check.ok and in_flight:
                return [RestoreProvider(at=now, provider=check.provider, reason="probe_succeeded")]
            return []
        if (
            check.ok
            and w.state == "cooldown"
            and w.category == "connection_error"
            and w.probe_deadline is None
        ):
            # It was unreachable and answers again: no need to sit out the cooldown.
            return [RestoreProvider(at=now, provider=check.provider, reason=f"health_{check.tier}_ok")]
        return []
