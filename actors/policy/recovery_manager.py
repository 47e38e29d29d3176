"""RecoveryManager: cooldown expiry, half-open probes, failback.

Takes in: :class:`ProviderStateChanged` (from the selector),
:class:`HealthChecked` (from the health monitor) and :class:`ProbeSkipped`
(a peer instance holds the probe: shared state).
Puts out: :class:`ProbeRequested` on a backing-off schedule while a provider
is out of routing (``health.probe_min_interval_s`` after its cooldown began,
then 2x, 4x... the interval up to ``probe_max_interval_s``, never before a 429's Retry-After) and when its
cooldown ends, each with the cheapest check that can prove recovery from its
failure (ping after connection errors, an authenticated model list after
auth errors, else the ``probe_tier``); :class:`RestoreProvider` when a probe
succeeds (or a provider cooling down after connection errors answers its
health check again); :class:`ProviderRecovered` with the downtime.
Owns: the probe schedule and which provider has a probe in flight; all of it
follows from the selector's published views, so a checkpoint restores it.
Promises: exactly one probe in flight per provider (half-open; across the cluster, the
prober's lock in Redis makes it one per cluster); a probe whose
answer never comes is asked again after the probe timeout; no user request is
ever used as a probe; the first passing probe brings traffic back at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, assert_never

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.config import HealthConfig
from actors.core.deployments import split_key
from actors.core.messages import (
    HealthChecked,
    Message,
    ProbeRequested,
    ProbeSkipped,
    ProviderRecovered,
    ProviderStateChanged,
    ProviderView,
    RestoreProvider,
    RoutingSnapshot,
    Tick,
)
from actors.core.states import DOWN_STATES, Category, ProviderState, Tier

__all__ = ("RecoveryInbox", "RecoveryManager", "next_probe_at", "probe_times")


# Snapshots carry every provider's full state: a restart after a crash, or a
# message lost with it, is made good by the next snapshot.
RecoveryInbox = ProviderStateChanged | HealthChecked | ProbeSkipped | RoutingSnapshot | Tick


#: The cheapest check that can prove recovery from each failure (others: the configured probe_tier).
_PROOF: dict[Category, Tier] = {
    "connection_error": "ping",  # it answers HTTP again
    "auth_failure": "full",  # an authenticated model list passes: the key works again
    "quota_exhausted": "full",
}
#: No early probe for these: the provider said when to come back (Retry-After, a rate-limit reset).
_WAIT_FOR_END: frozenset[Category] = frozenset({"rate_limit"})


def probe_times(since: float, interval: float, until: float, cap: float = 0.0) -> list[float]:
    """The early recovery probes of a cooldown: since + interval x (1, 3, 7, 15...), before ``until``,
    the spacing growing to at most ``cap`` (0: no cap), so a heal is seen within ``cap``."""
    out: list[float] = []
    step, at = interval, since + interval
    while interval > 0 and at < until and len(out) < 512:
        out.append(at)
        step = min(step * 2, cap) if cap > 0 else step * 2
        at += step
    return out


def _early_probe(state: ProviderState, category: Category | None, cooldown_since: float | None,
                 cooldown_until: float | None, health: HealthConfig, now: float) -> float | None:
    """The next early re-check after ``now`` of one out of routing (None: none before its cooldown ends)."""
    if (state not in ("cooldown", "unhealthy") or cooldown_since is None or cooldown_until is None
            or category in _WAIT_FOR_END):
        return None
    return next((at for at in probe_times(cooldown_since, health.probe_min_interval_s, cooldown_until,
                                          health.probe_max_interval_s) if at > now), None)


def next_probe_at(view: ProviderView, health: HealthConfig, now: float) -> float | None:
    """When the manager will next probe the provider or deployment ``view`` (for readers: /status).

    The next early re-check, else the cooldown's end; None while it is not out of routing, or
    while a probe is in flight (``probing``).
    """
    if view.state not in ("cooldown", "unhealthy") or view.cooldown_until is None:
        return None
    category = view.last_error.category if view.last_error else None
    early = _early_probe(view.state, category, view.cooldown_since, view.cooldown_until, health, now)
    return view.cooldown_until if early is None else min(early, view.cooldown_until)


@dataclass
class _Watch:
    state: ProviderState
    cooldown_until: float | None = None
    category: Category | None = None
    down_since: float | None = None
    cooldown_since: float | None = None
    probe_deadline: float | None = None  # set while a probe is in flight
    next_early: float | None = None  # the next probe before the cooldown's end
    deployment: bool = False  # one upstream model of a provider: proved back by a completion to it


class RecoveryManager(Actor[RecoveryInbox]):
    """Brings providers back: re-checks on a backing-off schedule and at each cooldown's end."""

    name: ClassVar[str] = "recovery_manager"
    accepts: ClassVar[tuple[type[Message], ...]] = Actor.inbox_types(RecoveryInbox)
    logs_timers: ClassVar[bool] = True  # its ticks decide probes: replay must fire them when they fired

    def __init__(
        self,
        providers: tuple[ProviderView, ...],
        *,
        health: HealthConfig,
        clock: Clock,
    ) -> None:
        super().__init__(clock=clock)
        self.health = health
        now = clock.now()
        self._watches: dict[str, _Watch] = {}
        for p in providers:
            w = _Watch(state=p.state, cooldown_until=p.cooldown_until,
                       category=p.last_error.category if p.last_error else None,
                       down_since=p.down_since, cooldown_since=p.cooldown_since)
            w.deployment = split_key(p.name)[1] is not None
            if p.state == "probing":  # a checkpoint's probe in flight is due back when it was live
                w.probe_deadline = self._probe_due(p.probing_since, w)
            self._watches[p.name] = w
            self._schedule(w, now)

    def _tier(self, w: _Watch) -> Tier:
        if w.deployment:
            return "api"  # a 1-token completion to the model that failed: nothing cheaper proves it
        return _PROOF.get(w.category, self.health.probe_tier) if w.category else self.health.probe_tier

    def _probe_due(self, asked_at: float | None, w: _Watch) -> float | None:
        # Leave room for the prober's own timeout before asking again.
        return None if asked_at is None else asked_at + self.health.timeout_of(self._tier(w)) + 5.0

    def _schedule(self, w: _Watch, now: float) -> None:
        """The next early probe after ``now`` (a pure function of the watch: a checkpoint restores it)."""
        w.next_early = _early_probe(w.state, w.category, w.cooldown_since, w.cooldown_until, self.health, now)

    def _due(self, w: _Watch) -> float | None:
        if w.probe_deadline is not None:
            return w.probe_deadline
        if w.state in ("cooldown", "unhealthy"):
            end = w.cooldown_until if w.cooldown_until is not None else 0.0
            return end if w.next_early is None else min(w.next_early, end)
        return None

    def next_deadline(self) -> float | None:
        return min((d for w in self._watches.values() if (d := self._due(w)) is not None), default=None)

    def handle(self, message: RecoveryInbox, now: float) -> list[Message]:
        match message:
            case Tick():
                return self._on_tick(now)
            case ProviderStateChanged():
                return self._on_state(message, now)
            case HealthChecked():
                return self._on_health(message, now)
            case ProbeSkipped():
                # A peer holds the probe: its outcome comes as a peer's change; failing that (it died
                # with the lock), ask again once the probe would have timed out, when its lock has expired.
                if (w := self._watches.get(message.provider)) is not None and w.probe_deadline is not None:
                    w.probe_deadline = self._probe_due(now, w)
                return []
            case RoutingSnapshot():
                self._reconcile((*message.providers, *message.deployments), now)
                return []
            case _:
                assert_never(message)

    def _reconcile(self, views: Iterable[ProviderView], now: float) -> None:
        for view in views:
            w = self._watches.get(view.name)
            if w is None:
                continue
            if view.state in DOWN_STATES and view.last_error is not None:
                w.category = view.last_error.category  # the latest failure, as a checkpoint would have it
            if (w.state, w.cooldown_until, w.cooldown_since) == (view.state, view.cooldown_until,
                                                                 view.cooldown_since):
                continue
            w.state, w.cooldown_until, w.cooldown_since = view.state, view.cooldown_until, view.cooldown_since
            if view.state in DOWN_STATES:
                w.down_since = w.down_since if w.down_since is not None else view.down_since
            if view.state in ("cooldown", "unhealthy"):
                w.probe_deadline = None
            self._schedule(w, now)

    def _on_tick(self, now: float) -> list[Message]:
        out: list[Message] = []
        for name, w in self._watches.items():
            due = self._due(w)
            if due is None or due > now:
                continue
            if w.probe_deadline is not None:
                reason = "probe_timed_out"
            elif w.cooldown_until is not None and now < w.cooldown_until:
                reason = "recheck"  # an early probe: it may have healed before its cooldown ends
            else:
                reason = "cooldown_expired"
            w.probe_deadline = self._probe_due(now, w)
            w.next_early = None
            out.append(ProbeRequested(at=now, provider=name, reason=reason, tier=self._tier(w)))
        return out

    def _on_state(self, change: ProviderStateChanged, now: float) -> list[Message]:
        w = self._watches.get(change.provider)
        if w is None:
            return []
        w.state = change.new
        w.cooldown_until = change.cooldown_until
        w.cooldown_since = change.cooldown_since
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
        self._schedule(w, now)
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
