"""What an operator (or the request path) asks of a running Supervisor: settle, disable, enable, probe.

A mixin of :class:`~actors.runtime.supervisor.Supervisor`. Each command goes
to the actor that owns the state as a message (an ask), and is answered only
once the change it made is committed to the state file.
"""

from __future__ import annotations

import logging
from typing import Any

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.config import Config
from actors.core.errors import SupervisorClosedError, UnknownProviderError
from actors.core.messages import (
    CheckDue,
    DisableProvider,
    EnableProvider,
    RestoreProvider,
    RoutingSnapshot,
    Sync,
)
from actors.core.states import DOWN_STATES
from actors.edges.prober import Prober
from actors.edges.store import Store
from actors.runtime.request import RequestPath

__all__ = ("Control",)

log = logging.getLogger("actors.supervisor")
_SELECTOR = "priority_selector"


class Control:
    """Commands over the supervisor's actors (the attributes are the Supervisor's)."""

    config: Config
    clock: Clock
    store: Store | None
    actors: dict[str, Actor[Any]]
    _prober: Prober | None
    _closing: bool
    _path: RequestPath | None
    _routing: RoutingSnapshot | None

    def _current_routing(self) -> RoutingSnapshot:
        assert self._routing is not None
        return self._routing

    def _request_path(self) -> RequestPath:
        if self._path is None or self._closing:
            raise SupervisorClosedError("the supervisor is not running (use 'async with Supervisor(...)')")
        return self._path

    def state_of(self, name: str) -> str:
        """The provider's current state."""
        for view in self._current_routing().providers:
            if view.name == name:
                return view.state
        raise UnknownProviderError(name, [p.name for p in self.config.providers])

    async def settle(self) -> None:
        """Return once every outcome told so far is decided and the state it changed is committed.

        Asks the classifier, then the selector, to answer a :class:`Sync` (each
        has then handled all that was queued before it), then waits for the
        store's next commit. The request path calls it before answering a
        request whose outcome may have changed routing state, so what a caller
        saw survives a kill -9 right after.
        """
        if self._closing or self.store is None:
            return
        now = self.clock.now()
        try:
            await self.actors["error_classifier"].ask(Sync(at=now))
            await self.actors["priority_selector"].ask(Sync(at=now))
        except (SupervisorClosedError, TimeoutError):
            return  # stopping, or an actor is wedged: answering matters more than the barrier
        if not await self.store.commit():
            log.warning("the state file did not commit within 5 s; answering anyway")

    async def refresh(self) -> None:
        """Bring the metrics snapshot up to now (it is otherwise published at most every second).

        Asks the collector for one (it answers after publishing it); readers
        that show counts a caller just caused (``/status``, ``/metrics``) call it first.
        """
        if self._closing or "metrics_collector" not in self.actors:
            return
        try:
            await self.actors["metrics_collector"].ask(Sync(at=self.clock.now()), wait_s=5)
        except (SupervisorClosedError, TimeoutError):
            return  # a stale snapshot is better than no answer

    async def _admin(self, name: str, command: DisableProvider | EnableProvider) -> str:
        if self.config.provider(name) is None:
            raise UnknownProviderError(name, [p.name for p in self.config.providers])
        self._request_path()
        await self.actors[_SELECTOR].ask(command)
        if self.store is not None:
            await self.store.commit()  # the admin is answered once the change would survive a kill -9
        return self.state_of(name)

    async def disable(self, name: str) -> str:
        """Take a provider out of routing until :meth:`enable`; returns its new state."""
        return await self._admin(name, DisableProvider(at=self.clock.now(), provider=name))

    async def enable(self, name: str) -> str:
        """Restore a provider to routing now (disabled, cooling down or unhealthy): failure count and
        cooldown cleared, as the original skill's manual ``restore_provider``; returns its new state."""
        return await self._admin(name, EnableProvider(at=self.clock.now(), provider=name))

    async def probe(self, name: str) -> dict[str, Any]:
        """Run the provider's recovery check (the ``probe_tier``) now; a pass restores it at once.

        The result is logged as a health check like any other (a failure is
        evidence too: it is classified and may cool the provider). Returns
        the check's outcome and the provider's state after it.
        """
        if self.config.provider(name) is None:
            raise UnknownProviderError(name, [p.name for p in self.config.providers])
        self._request_path()
        assert self._prober is not None
        tier = self.config.health.probe_tier
        result = await self._prober.check(CheckDue(at=self.clock.now(), provider=name, tier=tier))
        if result.ok and self.state_of(name) in DOWN_STATES:
            await self.actors[_SELECTOR].ask(
                RestoreProvider(at=result.at, provider=name, reason="admin_probe_ok"))
        await self.settle()
        return {"provider": name, "tier": tier, "ok": result.ok, "latency_ms": result.latency_ms,
                "status": result.status, "message": result.message, "state": self.state_of(name)}

