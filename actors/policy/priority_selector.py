"""PrioritySelector: owns provider state and publishes routing snapshots.

Takes in: :class:`AttemptSucceeded`, :class:`ErrorClassified`,
:class:`HealthChecked`, :class:`ProbeRequested`, :class:`RestoreProvider`,
the admin commands :class:`DisableProvider` / :class:`EnableProvider`, and
what peers share (:class:`PeerStateChanged`, :class:`FailuresCounted`).
Puts out: :class:`ProviderStateChanged` for every transition, and a
:class:`RoutingSnapshot` whenever any provider's record changed.
Owns: each provider's state, consecutive failure count, cooldown deadline and
cooldown level (persisted through the snapshots).
Promises:

* ``failure_threshold`` consecutive failures make a provider ``unhealthy``;
  only a successful probe brings it back;
* a cooldown is base x growth^level, capped at ``max_cooldown_s``; the level
  resets after ``stable_period_s`` healthy; a 429's Retry-After is taken as
  the cooldown itself;
* a cooldown is never shortened by a later, shorter one, a peer's included;
  a peer's restore or enable older than the local cooldown's start is ignored;
* snapshots list providers by priority, so traffic returns to a
  higher-priority provider the moment it is healthy again (failback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, assert_never

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.config import ProviderConfig, RoutingConfig
from actors.core.deployments import deployment_key, deployments
from actors.core.messages import (
    AttemptSucceeded,
    DisableProvider,
    EnableProvider,
    ErrorClassified,
    FailuresCounted,
    HealthChecked,
    LastError,
    Message,
    PeerStateChanged,
    ProbeRequested,
    ProviderStateChanged,
    ProviderView,
    RestoreProvider,
    RoutingSnapshot,
    Sync,
)
from actors.core.states import DOWN_STATES, USABLE_STATES, Category, ProviderState
from actors.policy.error_classifier import classify

__all__ = ("PrioritySelector", "SelectorInbox")


@dataclass
class _Record:
    name: str
    priority: int
    order: int
    configured: bool
    key_env: str
    state: ProviderState = "healthy"
    failure_count: int = 0
    cooldown_until: float | None = None
    cooldown_level: int = 0
    last_error: LastError | None = None
    healthy_since: float | None = None
    down_since: float | None = None
    detail: str = ""
    probing_since: float | None = None
    cooldown_since: float | None = None

    def view(self) -> ProviderView:
        return ProviderView(**{f: getattr(self, f) for f in _VIEW_FIELDS})

    def restore(self, old: ProviderView, *, exact: bool) -> None:
        """Take a saved view's state: all of it from a checkpoint; after a restart, not detail or probe."""
        skip = _KEPT if exact else _KEPT | _RESTART_FORGETS
        for f in _VIEW_FIELDS:
            if f not in skip:
                setattr(self, f, getattr(old, f))


_VIEW_FIELDS: tuple[str, ...] = ProviderView.__struct_fields__
_KEPT = frozenset({"name", "priority"})  # from the config, not the saved state
_RESTART_FORGETS = frozenset({"detail", "probing_since"})  # a restart re-derives these


SelectorInbox = (
    AttemptSucceeded
    | ErrorClassified
    | HealthChecked
    | ProbeRequested
    | RestoreProvider
    | DisableProvider
    | EnableProvider
    | PeerStateChanged
    | FailuresCounted
    | Sync
)


class PrioritySelector(Actor[SelectorInbox]):
    """Decides each provider's state from outcomes, verdicts, probes and admins."""

    name: ClassVar[str] = "priority_selector"
    accepts: ClassVar[tuple[type[Message], ...]] = Actor.inbox_types(SelectorInbox)

    def __init__(
        self,
        providers: tuple[ProviderConfig, ...],
        policy: RoutingConfig,
        *,
        clock: Clock,
        restored: dict[str, ProviderView] | None = None,
        exact: bool = False,
    ) -> None:
        """``restored`` after a restart (a probe in flight died with the process: probe again), or
        ``exact`` from a checkpoint (everything as it was, probes in flight included)."""
        super().__init__(clock=clock)
        self.policy = policy
        self._version = 0
        now = clock.now()
        self._records: dict[str, _Record] = {}
        for order, p in enumerate(providers):
            rec = _Record(p.name, p.priority, order, p.configured, p.api_key_env, healthy_since=now)
            old = (restored or {}).get(p.name)
            if old is not None:
                rec.restore(old, exact=exact)
                if exact:
                    self._records[p.name] = rec
                    continue
                if rec.state == "probing":  # killed with a probe in flight: probe again
                    rec.state = "cooldown"
                    rec.cooldown_until = min(rec.cooldown_until or now, now)
                if rec.state == "unconfigured":
                    rec.state = "healthy"
            if not p.configured:
                rec.state, rec.detail = "unconfigured", f"{p.api_key_env} is not set"
            elif not p.enabled:
                rec.state, rec.detail = "disabled", "enabled = false in the config"
            self._records[p.name] = rec
        self._ordered = sorted(self._records.values(), key=lambda r: (r.priority, r.order))
        #: A record per upstream model of each provider serving several (actors.core.deployments).
        self._deployments: list[_Record] = []
        for provider in self._ordered:
            config = next(p for p in providers if p.name == provider.name)
            for upstream in deployments(config):
                key = deployment_key(config.name, upstream)
                rec = _Record(key, provider.priority, provider.order, True, "", healthy_since=now)
                if (old := (restored or {}).get(key)) is not None:
                    rec.restore(old, exact=exact)
                    if not exact and rec.state == "probing":
                        rec.state = "cooldown"
                        rec.cooldown_until = min(rec.cooldown_until or now, now)
                self._records[key] = rec
                self._deployments.append(rec)

    # -- views ------------------------------------------------------------
    def snapshot(self, now: float) -> RoutingSnapshot:
        self._version += 1
        return RoutingSnapshot(
            at=now, version=self._version, providers=tuple(r.view() for r in self._ordered),
            deployments=tuple(r.view() for r in self._deployments),
        )

    # -- transitions ------------------------------------------------------
    def _move(
        self, rec: _Record, new: ProviderState, reason: str, now: float, out: list[Message], *,
        cause: Category | None = None, probe: bool = False, peer: str = "",
    ) -> None:
        old = rec.state
        if new == old:
            return
        rec.state = new
        if new in DOWN_STATES and rec.down_since is None:
            rec.down_since = now
        rec.probing_since = now if new == "probing" else None
        if new == "healthy":
            rec.healthy_since = now
            rec.down_since = None
            rec.cooldown_until = None
            rec.cooldown_since = None
        elif old in USABLE_STATES and new not in USABLE_STATES:
            rec.healthy_since = None
        out.append(
            ProviderStateChanged(
                at=now,
                provider=rec.name,
                old=old,
                new=new,
                reason=reason,
                cooldown_until=rec.cooldown_until,
                failure_count=rec.failure_count,
                cooldown_level=rec.cooldown_level,
                cause=cause,
                probe=probe,
                cooldown_since=rec.cooldown_since,
                peer=peer,
            )
        )

    def _grown(self, base: float, level: int) -> float:
        """base x growth^level, capped at max_cooldown_s (a huge level saturates, never overflows)."""
        cap = self.policy.max_cooldown_s
        try:
            return min(base * self.policy.cooldown_growth**level, cap)
        except OverflowError:
            return cap

    def _start_cooldown(self, rec: _Record, base: float, retry_after: float | None, now: float) -> None:
        """Set (or extend) the cooldown; a repeat grows it unless the provider was stable."""
        growing = rec.state not in DOWN_STATES or rec.state == "probing"
        if growing:
            stable = rec.healthy_since is not None and now - rec.healthy_since >= self.policy.stable_period_s
            if stable:
                rec.cooldown_level = 0
        level = rec.cooldown_level if growing else max(rec.cooldown_level - 1, 0)
        if retry_after is not None and retry_after > 0:
            duration = min(retry_after, self.policy.max_cooldown_s)
        else:
            duration = self._grown(base, level)
        if growing and self._grown(base, rec.cooldown_level) < self.policy.max_cooldown_s:
            rec.cooldown_level += 1  # once at the cap, the level stops growing (and can't overflow)
        if growing:
            rec.cooldown_since = now  # a new cooldown: its recovery probes are timed from here
        until = now + duration
        if rec.cooldown_until is None or rec.cooldown_until < until:
            rec.cooldown_until = until

    def _on_failure(
        self, rec: _Record, verdict: ErrorClassified, now: float, out: list[Message], *, probe: bool
    ) -> None:
        early = probe and rec.probing_since is not None and rec.cooldown_until is not None \
            and rec.probing_since < rec.cooldown_until
        if early:
            # A probe before the cooldown's end found it still broken: nothing new is known. It
            # goes back to where it was, its cooldown neither grown nor extended, nothing counted.
            threshold = self.policy.failure_threshold
            back: ProviderState = "unhealthy" if rec.failure_count >= threshold else "cooldown"
            self._move(rec, back, f"probe_failed:{verdict.category}", now, out, cause=verdict.category,
                       probe=True)
            return
        rec.failure_count += 1
        retry_at = None
        if verdict.category == "rate_limit":
            retry_at = now + (verdict.retry_after_s or verdict.cooldown_s)
        rec.last_error = LastError(
            category=verdict.category, status=verdict.status, message=verdict.message, at=now,
            retry_at=retry_at,
        )
        base = verdict.cooldown_s or self.policy.cooldown_s.server_error
        unhealthy = rec.failure_count >= self.policy.failure_threshold
        if probe or unhealthy or verdict.cooldown_s > 0:
            self._start_cooldown(rec, base, verdict.retry_after_s, now)
            reason = f"probe_failed:{verdict.category}" if probe else verdict.category
            self._move(rec, "unhealthy" if unhealthy else "cooldown", reason, now, out,
                       cause=verdict.category, probe=probe)
        elif rec.state == "healthy":
            self._move(rec, "degraded", verdict.category, now, out, cause=verdict.category)

    @staticmethod
    def wants(message: Message) -> bool:
        """Not a routine success: the request saw the provider healthy with nothing to reset."""
        return not (type(message) is AttemptSucceeded and message.routine)

    def handle(self, message: SelectorInbox, now: float) -> list[Message]:
        out: list[Message] = []
        if isinstance(message, Sync):
            return out
        rec = self._records.get(message.provider)
        if rec is None:
            return out
        before = rec.view()
        others: list[tuple[_Record, ProviderView]] = []  # deployments this message touches too
        match message:
            case AttemptSucceeded():
                self._on_success(rec, message, now, out)
                if message.deployment and (own := self._records.get(message.deployment)) is not None:
                    others.append((own, own.view()))
                    self._on_success(own, message, now, out)
            case ErrorClassified():
                if message.penalize and rec.state in USABLE_STATES | DOWN_STATES:
                    self._on_failure(rec, message, now, out, probe=False)
            case HealthChecked():
                self._on_health(rec, message, now, out)
            case ProbeRequested():
                if rec.state in ("cooldown", "unhealthy"):
                    self._move(rec, "probing", message.reason, now, out)
                elif rec.state == "probing":
                    rec.probing_since = message.at  # the last one timed out: this one is in flight now
            case RestoreProvider():
                if rec.state in DOWN_STATES:
                    rec.failure_count = 0
                    self._move(rec, "healthy", message.reason, now, out)
            case DisableProvider():
                rec.detail = "disabled by an admin"
                self._move(rec, "disabled", "admin_disable", now, out)
            case EnableProvider():
                self._on_enable(rec, now, out)
                for own in self._deployments:  # its models come back with it
                    if own.name.startswith(rec.name + "/"):
                        others.append((own, own.view()))
                        self._on_enable(own, now, out)
            case PeerStateChanged():
                self._on_peer(rec, message, now, out)
            case FailuresCounted():
                self._on_cluster_failures(rec, message, now, out)
            case Sync():
                pass
            case _:
                assert_never(message)
        if out or rec.view() != before or any(r.view() != v for r, v in others):
            out.append(self.snapshot(now))
        return out

    def _on_success(self, rec: _Record, message: AttemptSucceeded, now: float, out: list[Message]) -> None:
        if rec.state in USABLE_STATES:
            rec.failure_count = 0
            self._move(rec, "healthy", "request_succeeded", now, out)
        elif message.last_resort and rec.state in DOWN_STATES:
            # Tried because nothing else could answer, and it answered:
            # the evidence a probe would have brought, so it is back.
            rec.failure_count = 0
            self._move(rec, "healthy", "last_resort_succeeded", now, out)

    def _on_health(self, rec: _Record, check: HealthChecked, now: float, out: list[Message]) -> None:
        if check.probe and not check.ok and rec.state == "probing":
            self._on_failure(rec, classify(check, self.policy), now, out, probe=True)
        elif not check.probe and check.ok and check.tier in ("api", "full") and rec.state == "degraded":
            rec.failure_count = 0
            self._move(rec, "healthy", f"health_{check.tier}_ok", now, out)

    def _on_peer(self, rec: _Record, peer: PeerStateChanged, now: float, out: list[Message]) -> None:
        """A peer's change to the shared record: the same rules as a local one, dated by its arrival."""
        who = peer.instance
        if rec.state == "unconfigured" or (rec.state == "disabled" and peer.change != "enable"):
            return  # an admin's disable here (or a missing key) is not undone by a peer's cooldown
        since = rec.cooldown_since
        stale = since is not None and rec.state in DOWN_STATES and peer.peer_at < since
        if peer.change == "cooldown":
            if peer.until <= now or (rec.state in DOWN_STATES and (rec.cooldown_until or 0.0) >= peer.until):
                return  # over already, or no later than the cooldown this record has: never shortens
            if rec.state not in DOWN_STATES or rec.state == "probing":
                rec.cooldown_since = now
            rec.cooldown_until = peer.until
            if peer.cause is not None:
                retry_at = peer.until if peer.cause == "rate_limit" else None
                rec.last_error = LastError(category=peer.cause, status=None, message=f"reported by {who}",
                                           at=now, retry_at=retry_at)
            new: ProviderState = "unhealthy" if "unhealthy" in (peer.state, rec.state) else "cooldown"
            self._move(rec, new, "peer_cooldown", now, out, cause=peer.cause, peer=who)
        elif peer.change == "restore" and not stale:
            rec.failure_count = 0
            if rec.state in DOWN_STATES or rec.state == "degraded":
                self._move(rec, "healthy", "peer_restore", now, out, peer=who)
        elif peer.change == "enable" and not stale:
            self._on_enable(rec, now, out, peer=who)
        elif peer.change == "disable":
            rec.detail = f"disabled by an admin (through {who})"
            self._move(rec, "disabled", "admin_disable", now, out, peer=who)

    def _on_cluster_failures(self, rec: _Record, counted: FailuresCounted, now: float,
                             out: list[Message]) -> None:
        """The cluster's failures reached the threshold while this instance still routes to it."""
        threshold = self.policy.failure_threshold
        if rec.state not in USABLE_STATES or counted.count < threshold or rec.failure_count >= counted.count:
            return
        rec.failure_count = counted.count
        self._start_cooldown(rec, counted.cooldown_s or self.policy.cooldown_s.server_error,
                             counted.retry_after_s, now)
        self._move(rec, "unhealthy", "cluster_failures", now, out, cause=counted.category)

    def _on_enable(self, rec: _Record, now: float, out: list[Message], *, peer: str = "") -> None:
        """The original skill's manual restore: back in routing now, failure count and cooldown cleared."""
        if not rec.configured:
            if rec.state == "disabled":
                rec.detail = f"{rec.key_env} is not set"
                self._move(rec, "unconfigured", "admin_enable", now, out, peer=peer)
            return
        rec.detail = ""
        rec.failure_count = 0
        rec.cooldown_level = 0
        rec.cooldown_until = None
        self._move(rec, "healthy", "admin_enable", now, out, peer=peer)
