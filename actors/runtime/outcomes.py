"""How attempts end, told to the bus: the one thing the request path and its streams share.

:class:`Reporter` is the narrow piece a :class:`~actors.runtime.replies.ChatStream`
needs from the request path: the clock, the bus and the routing policy, to
tell a success or classify and tell a failure. It holds no request state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.config import RoutingConfig
from actors.core.errors import Attempt
from actors.core.messages import AttemptFailed, AttemptSucceeded, RoutingSnapshot
from actors.core.states import Action, Category
from actors.edges.providers.base import UpstreamFailure, error_param
from actors.policy.error_classifier import classify

__all__ = ("FailureReport", "Reporter")


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class FailureReport:
    """One failed attempt: the record for the caller, the logged message, and what to do next."""

    attempt: Attempt
    message: AttemptFailed
    category: Category
    action: Action
    cooldown_s: float
    undecided: bool = False  # a 400 held back until the next provider says whose it is


class Reporter:
    """Tells the bus how each attempt ended; classifies failures on the spot."""

    __slots__ = ("bus", "clock", "routing", "settle", "snapshot")

    def __init__(self, *, clock: Clock, bus: Bus, routing: RoutingConfig,
                 snapshot: Callable[[], RoutingSnapshot],
                 settle: Callable[[], Awaitable[None]] | None = None) -> None:
        self.clock = clock
        self.bus = bus
        self.routing = routing
        self.snapshot = snapshot  # the latest published routing snapshot
        #: Waits until every outcome told so far is decided and its state committed:
        #: a caller is answered only once the state it caused survives a kill -9.
        self.settle = settle or _nothing

    def _routine(self, provider: str, last_resort: bool, deployment: str) -> bool:
        """A success the published snapshot says changes nothing: healthy, no failure counted."""
        if last_resort:
            return False
        snapshot = self.snapshot()
        views = (*snapshot.providers, *snapshot.deployments) if deployment else snapshot.providers
        for name in (provider, deployment) if deployment else (provider,):
            view = next((v for v in views if v.name == name), None)
            if view is None or view.state != "healthy" or view.failure_count:
                return False
        return True

    def succeeded(self, *, provider: str, model: str, request_id: str, latency_ms: float,
                  stream: bool = False, last_resort: bool = False, bad_chunks: int = 0,
                  deployment: str = "", duration_ms: float | None = None) -> bool:
        """Tell the bus; True when the success may change routing state (it was not routine)."""
        routine = self._routine(provider, last_resort, deployment)
        self.bus.tell(AttemptSucceeded(at=self.clock.now(), provider=provider, model=model,
                                       request_id=request_id, latency_ms=round(latency_ms, 3),
                                       stream=stream, last_resort=last_resort, routine=routine,
                                       bad_chunks=bad_chunks, deployment=deployment,
                                       duration_ms=None if duration_ms is None else round(duration_ms, 3)))
        return not routine

    def failed(self, provider: str, model: str, request_id: str, failure: UpstreamFailure, tries: int,
               started: float, *, stream: bool = False, last_resort: bool = False,
               deployment: str = "") -> FailureReport:
        """Tell the bus; return the attempt record, the message, the action and the cooldown.

        A 400 whose fault is not known yet (an ``undecided`` verdict) is not told: the request
        path tells it once the next provider has answered or refused the same request.
        """
        latency = round((time.perf_counter() - started) * 1000.0, 3)
        msg = AttemptFailed(
            at=self.clock.now(),
            provider=provider,
            model=model,
            request_id=request_id,
            kind=failure.kind,
            latency_ms=latency,
            status=failure.status,
            code=failure.code,
            message=failure.message[:500],
            retry_after_s=failure.retry_after_s,
            attempt=tries,
            stream=stream,
            last_resort=last_resort,
            param=error_param(failure.body) if failure.status == 400 else None,
            deployment=deployment,
        )
        verdict = classify(msg, self.routing)
        if not verdict.undecided:
            self.bus.tell(msg)
        attempt = Attempt(provider, failure.status, verdict.category, msg.message, latency)
        return FailureReport(attempt=attempt, message=msg, category=verdict.category, action=verdict.action,
                             cooldown_s=verdict.cooldown_s, undecided=verdict.undecided)
