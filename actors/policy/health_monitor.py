"""HealthMonitor: when to run the three tiers of health checks, and recovery probes.

Takes in: :class:`ProbeRequested` (run one half-open probe now),
:class:`ProviderStateChanged` and :class:`RoutingSnapshot` (whom to check),
the :class:`HealthChecked` results, :class:`ProbeSkipped` (a peer probes), and its timers.
Puts out: :class:`CheckDue` for each check to run; the prober
(:mod:`actors.edges.prober`) runs it and publishes the :class:`HealthChecked`.
Owns: the probe schedule. The original skill's tiers, all configurable:

* ``ping``: any HTTP answer on the provider's ``health_path`` (30 s / 5 s);
* ``full``: an authenticated ``GET /models``, catching bad keys (60 s / 10 s);
* ``api``: a real 1-token completion (300 s / 15 s; interval 0 turns it off).

Promises: at most one check per provider and tier in flight (a check whose
result never comes is given up after its timeout plus a margin); providers
that are ``unconfigured``, ``disabled`` or ``probing`` are not checked on
schedule. It does no I/O.
"""

from __future__ import annotations

from typing import ClassVar, assert_never

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.config import HealthConfig, ProviderConfig
from actors.core.messages import (
    CheckDue,
    HealthChecked,
    Message,
    ProbeRequested,
    ProbeSkipped,
    ProviderStateChanged,
    RoutingSnapshot,
    Tick,
)
from actors.core.states import ProviderState, Tier

__all__ = ("HealthInbox", "HealthMonitor")

_SKIPPED: frozenset[ProviderState] = frozenset({"unconfigured", "disabled", "probing"})
_MARGIN_S = 5.0  # past a check's own timeout, how long to wait for its result before giving up

HealthInbox = ProbeRequested | ProviderStateChanged | HealthChecked | ProbeSkipped | RoutingSnapshot | Tick
#: A scheduled check is (provider, tier); a probe is (provider, "probe").
_Key = tuple[str, str]


class HealthMonitor(Actor[HealthInbox]):
    """Schedules health checks and probes; the prober runs them."""

    name: ClassVar[str] = "health_monitor"
    # RoutingSnapshot carries the full state: it heals whatever a crash made it miss.
    accepts: ClassVar[tuple[type[Message], ...]] = Actor.inbox_types(HealthInbox)

    def __init__(
        self,
        providers: tuple[ProviderConfig, ...],
        health: HealthConfig,
        *,
        states: dict[str, ProviderState],
        clock: Clock,
    ) -> None:
        super().__init__(clock=clock)
        self.health = health
        self._states: dict[str, ProviderState] = dict(states)
        self._intervals: dict[Tier, float] = {
            "ping": health.ping_interval_s,
            "full": health.full_interval_s,
            "api": health.api_interval_s,
        }
        now = clock.now()
        # ping and full run at start; the api tier costs tokens, so it waits one interval.
        self._due: dict[tuple[str, Tier], float] = {
            (p.name, tier): now + (interval if tier == "api" else 0.0)
            for p in providers
            for tier, interval in self._intervals.items()
            if interval > 0
        }
        #: Checks asked for and not answered yet, with when to stop waiting for them.
        self._in_flight: dict[_Key, float] = {}

    def _eligible(self, key: tuple[str, Tier]) -> bool:
        return self._states.get(key[0]) not in _SKIPPED and key not in self._in_flight

    def next_deadline(self) -> float | None:
        due = (d for key, d in self._due.items() if self._eligible(key))
        return min((*due, *self._in_flight.values()), default=None)

    def handle(self, message: HealthInbox, now: float) -> list[Message]:
        out: list[Message] = []
        match message:
            case Tick():
                for key, give_up in list(self._in_flight.items()):
                    if give_up <= now:
                        del self._in_flight[key]  # its result was lost (the prober crashed)
                for key, due in sorted(self._due.items(), key=lambda kv: kv[1]):
                    if due <= now and self._eligible(key):
                        self._in_flight[key] = now + self.health.timeout_of(key[1]) + _MARGIN_S
                        self._due[key] = now + self._intervals[key[1]]
                        out.append(CheckDue(at=now, provider=key[0], tier=key[1]))
            case ProbeRequested():
                probe = (message.provider, "probe")
                if probe not in self._in_flight:
                    tier = message.tier or self.health.probe_tier
                    self._in_flight[probe] = now + self.health.timeout_of(tier) + _MARGIN_S
                    out.append(CheckDue(at=now, provider=message.provider, tier=tier, probe=True))
            case ProviderStateChanged():
                self._states[message.provider] = message.new
            case RoutingSnapshot():
                self._states.update((v.name, v.state) for v in message.providers)
            case HealthChecked():
                self._in_flight.pop((message.provider, "probe" if message.probe else message.tier), None)
            case ProbeSkipped():  # a peer holds the probe: the next ask may try again
                self._in_flight.pop((message.provider, "probe"), None)
            case _:
                assert_never(message)
        return out
