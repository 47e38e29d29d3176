"""HealthMonitor: the three tiers of health checks, and recovery probes.

Takes in: :class:`ProbeRequested` (run one half-open probe now),
:class:`ProviderStateChanged` (whom to check), its own :class:`HealthChecked`
results, and its timers.
Puts out: :class:`HealthChecked` for every check and probe.
Owns: the probe schedule. The original skill's tiers, all configurable:

* ``ping``: any HTTP answer on the provider's ``health_path`` (30 s / 5 s);
* ``full``: an authenticated ``GET /models``, catching bad keys (60 s / 10 s);
* ``api``: a real 1-token completion (300 s / 15 s; interval 0 turns it off).

Promises: at most one check per provider and tier in flight; providers that
are ``unconfigured``, ``disabled`` or ``probing`` are not checked on schedule;
nothing a provider answers can crash it (every outcome becomes data).
The decisions are pure (``handle``); the HTTP happens in :meth:`emit`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import ClassVar, Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .actor import Actor, Bus
from .clock import Clock
from .config import HealthConfig, ProviderConfig
from .messages import (
    HealthChecked,
    Message,
    ProbeRequested,
    ProviderState,
    ProviderStateChanged,
    RoutingSnapshot,
    Tick,
)
from .providers.base import Adapter, UpstreamFailure

__all__ = ("CheckDue", "HealthMonitor")

log = logging.getLogger("actors.health")
Tier = Literal["ping", "full", "api"]
_SKIPPED: frozenset[ProviderState] = frozenset({"unconfigured", "disabled", "probing"})


class CheckDue(Message, frozen=True, kw_only=True, tag="check_due"):
    """Internal: run this check now (never leaves the health monitor)."""

    logged: ClassVar[bool] = False
    provider: str
    tier: Tier
    probe: bool = False


class HealthMonitor(Actor):
    """Schedules and runs health checks; reports each result as data."""

    name: ClassVar[str] = "health_monitor"
    accepts: ClassVar[tuple[type[Message], ...]] = (
        ProbeRequested,
        ProviderStateChanged,
        HealthChecked,
        RoutingSnapshot,  # full state: heals whatever a crash made it miss
    )

    def __init__(
        self,
        providers: tuple[ProviderConfig, ...],
        health: HealthConfig,
        *,
        states: Mapping[str, ProviderState],
        adapters: Mapping[str, Adapter] | None,
        clock: Clock,
        bus: Bus,
    ) -> None:
        super().__init__(clock=clock, bus=bus)
        self.health = health
        self.adapters = adapters or {}
        self._models = {p.name: next(iter(p.models.values())) for p in providers}
        self._states: dict[str, ProviderState] = dict(states)
        self._intervals: dict[Tier, float] = {
            "ping": health.ping_interval_s,
            "full": health.full_interval_s,
            "api": health.api_interval_s,
        }
        self._timeouts: dict[Tier, float] = {
            "ping": health.ping_timeout_s,
            "full": health.full_timeout_s,
            "api": health.api_timeout_s,
        }
        now = clock.now()
        # ping and full run at start; the api tier costs tokens, so it waits one interval.
        self._due: dict[tuple[str, Tier], float] = {
            (p.name, tier): now + (interval if tier == "api" else 0.0)
            for p in providers
            for tier, interval in self._intervals.items()
            if interval > 0
        }
        self._in_flight: set[tuple[str, str]] = set()
        self._tg: TaskGroup | None = None

    # -- decisions ----------------------------------------------------------
    def _eligible(self, key: tuple[str, Tier]) -> bool:
        return self._states.get(key[0]) not in _SKIPPED and key not in self._in_flight

    def next_deadline(self) -> float | None:
        return min((due for key, due in self._due.items() if self._eligible(key)), default=None)

    def handle(self, message: Message, now: float) -> list[Message]:
        out: list[Message] = []
        match message:
            case Tick():
                for key, due in sorted(self._due.items(), key=lambda kv: kv[1]):
                    if due <= now and self._eligible(key):
                        self._in_flight.add(key)
                        self._due[key] = now + self._intervals[key[1]]
                        out.append(CheckDue(at=now, provider=key[0], tier=key[1]))
            case ProbeRequested():
                if (message.provider, "probe") not in self._in_flight:
                    self._in_flight.add((message.provider, "probe"))
                    out.append(CheckDue(at=now, provider=message.provider,
                                        tier=self.health.probe_tier, probe=True))
            case ProviderStateChanged():
                self._states[message.provider] = message.new
            case RoutingSnapshot():
                self._states.update((v.name, v.state) for v in message.providers)
            case HealthChecked():
                self._in_flight.discard((message.provider, "probe" if message.probe else message.tier))
            case _:
                pass
        return out

    # -- I/O at the edge ----------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._in_flight.clear()  # checks of a crashed run died with its task group
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await super().run(task_status=task_status)
            finally:
                tg.cancel_scope.cancel()

    async def emit(self, messages: list[Message]) -> None:
        for out in messages:
            if isinstance(out, CheckDue):
                if self._tg is not None and out.provider in self.adapters:
                    self._tg.start_soon(self._check, out)
                else:  # no network (replay) or no adapter: nothing to run
                    self._in_flight.discard((out.provider, "probe" if out.probe else out.tier))
            else:
                await self.bus.publish(out)

    async def _check(self, due: CheckDue) -> None:
        adapter = self.adapters[due.provider]
        started = time.perf_counter()
        failure: UpstreamFailure | None = None
        with self.clock.deadline_scope(self.clock.now() + self._timeouts[due.tier]) as scope:
            try:
                if due.tier == "ping":
                    await adapter.ping()
                elif due.tier == "full":
                    await adapter.check()
                else:
                    body = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
                    await adapter.complete(body, self._models[due.provider])
            except UpstreamFailure as exc:
                failure = exc
            except Exception as exc:  # whatever a provider does, it becomes data
                log.warning("health check of %s raised %s", due.provider, type(exc).__name__)
                failure = UpstreamFailure("bad_response", f"{type(exc).__name__}: {exc}"[:300])
        if scope.cancelled_caught:
            failure = UpstreamFailure("timeout", f"no answer within {self._timeouts[due.tier]:g} s")
        latency = (time.perf_counter() - started) * 1000.0
        await self.bus.publish(
            HealthChecked(
                at=self.clock.now(),
                provider=due.provider,
                tier=due.tier,
                ok=failure is None,
                latency_ms=round(latency, 3),
                kind=None if failure is None else failure.kind,
                status=None if failure is None else failure.status,
                message="" if failure is None else failure.message,
                probe=due.probe,
            )
        )
