"""The prober: runs the health checks the HealthMonitor asks for.

Takes in: :class:`~actors.core.messages.CheckDue` from its inbox (an anyio
memory object stream subscribed on the bus).
Puts out: one :class:`~actors.core.messages.HealthChecked` per check, with
the outcome as data.
Owns: the in-flight checks (a task group) and the adapters it checks through.
With shared state, a half-open probe first takes the cluster's lock on it
(``claims``): a peer holding it makes this a :class:`ProbeSkipped` instead;
Redis not answering lets it probe here (local-first).
Promises: each check is bounded by its tier's timeout on the injected clock;
nothing a provider answers can crash it (every outcome becomes data); a check
for a provider it has no adapter for is reported as failed, never silently lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.config import HealthConfig, ProviderConfig
from actors.core.deployments import split_key
from actors.core.messages import CheckDue, HealthChecked, ProbeSkipped
from actors.edges.providers.base import Adapter, UpstreamFailure

__all__ = ("ProbeClaims", "Prober")

log = logging.getLogger("actors.health")
_PING_BODY = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


#: How long past its own timeout a probe's lock outlives it (the lock of a prober that died expires then).
_CLAIM_MARGIN_S = 2.0


class ProbeClaims(Protocol):
    """Who may probe what across instances (shared state): one holder per provider or deployment."""

    async def acquire_probe(self, key: str, ttl_s: float) -> bool | None:
        """True: probe it; False: a peer holds it; None: nobody could tell (probe locally)."""
        ...

    async def release_probe(self, key: str) -> None: ...


class Prober:
    """Runs each :class:`CheckDue` against its provider and publishes the result."""

    name = "prober"

    def __init__(self, providers: tuple[ProviderConfig, ...], health: HealthConfig, *,
                 adapters: Mapping[str, Adapter], clock: Clock, bus: Bus, inbox_size: int = 256,
                 claims: ProbeClaims | None = None) -> None:
        self.health = health
        self.adapters = adapters
        self.clock = clock
        self.bus = bus
        self.claims = claims
        self._models = {p.name: next(iter(p.models.values())) for p in providers}
        self._send: MemoryObjectSendStream[CheckDue]
        self._receive: MemoryObjectReceiveStream[CheckDue]
        self._send, self._receive = anyio.create_memory_object_stream[CheckDue](inbox_size)
        bus.subscribe([CheckDue], self._send)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start a task per check as they arrive, until cancelled (the checks go with it)."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            async for due in self._receive:
                tg.start_soon(self.check if self.claims is None or not due.probe else self._claimed, due)

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def pending(self) -> int:
        return self._receive.statistics().current_buffer_used

    async def _claimed(self, due: CheckDue) -> None:
        """A half-open probe, run only while this instance holds the cluster's lock on it."""
        assert self.claims is not None
        ttl = self.health.timeout_of(due.tier) + _CLAIM_MARGIN_S
        held = await self.claims.acquire_probe(due.provider, ttl)
        if held is False:
            await self.bus.publish(ProbeSkipped(at=self.clock.now(), provider=due.provider))
            return
        try:
            await self.check(due)
        finally:
            if held:
                await self.claims.release_probe(due.provider)

    async def check(self, due: CheckDue) -> HealthChecked:
        """Run one check now; publish and return its result."""
        timeout = self.health.timeout_of(due.tier)
        started = time.perf_counter()
        failure: UpstreamFailure | None = None
        provider, upstream = split_key(due.provider)  # a deployment's check goes to its model
        adapter = self.adapters.get(provider)
        with self.clock.move_on_at(self.clock.now() + timeout) as scope:
            try:
                if adapter is None:
                    raise UpstreamFailure("connect", "no adapter for this provider (is its key set?)")
                if due.tier == "ping":
                    await adapter.ping()
                elif due.tier == "full":
                    await adapter.check()
                else:
                    await adapter.complete(_PING_BODY, upstream or self._models[provider])
            except UpstreamFailure as exc:
                failure = exc
            except Exception as exc:  # whatever a provider does, it becomes data
                log.warning("health check of %s raised %s", due.provider, type(exc).__name__)
                failure = UpstreamFailure("bad_response", f"{type(exc).__name__}: {exc}"[:300])
        if scope.cancelled_caught:
            failure = UpstreamFailure("timeout", f"no answer within {timeout:g} s")
        result = HealthChecked(
            at=self.clock.now(),
            provider=due.provider,
            tier=due.tier,
            ok=failure is None,
            latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
            kind=None if failure is None else failure.kind,
            status=None if failure is None else failure.status,
            message="" if failure is None else failure.message,
            probe=due.probe,
        )
        await self.bus.publish(result)
        return result
