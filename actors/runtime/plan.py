"""One request's journey across providers: which one next, and what each failure means.

A :class:`Plan` lives as long as its request, a stream's continuation
included. It asks the request path's ``pick`` for the next provider, counts
tries per provider and in all (``max_attempts``), keeps providers this
request set aside, tells a :class:`~actors.messages.FallbackTriggered` when
it leaves one, and turns each failure into retry / next / give up with the
same verdict the ErrorClassifier reaches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.config import ProviderConfig, RoutingConfig
from actors.core.errors import AllProvidersFailedError, Attempt, UpstreamRejectedError
from actors.core.messages import FallbackTriggered
from actors.core.states import Category
from actors.edges.providers.base import UpstreamFailure
from actors.runtime.outcomes import Reporter

__all__ = ("NextTry", "Pick", "Plan")

#: ``pick(serving, blocked, deadline) -> (name or None, last resort?)``: routing's choice now.
Pick = Callable[[Mapping[str, ProviderConfig], Mapping[str, float], float],
                Awaitable[tuple[str | None, bool]]]


@dataclass(frozen=True, slots=True)
class NextTry:
    """The next attempt of a request."""

    name: str
    provider: ProviderConfig
    deadline: float  # this attempt's end, on the clock
    started: float  # time.perf_counter() at its start


@dataclass(frozen=True, slots=True)
class _Fallback:
    origin: str
    category: Category
    reason: str


class Plan:
    """One request's journey (see the module doc)."""

    def __init__(self, *, model: str, request_id: str, serving: Mapping[str, ProviderConfig],
                 routing: RoutingConfig, clock: Clock, bus: Bus, reporter: Reporter, pick: Pick,
                 stream: bool, why_none: Callable[[], str]) -> None:
        self.model = model
        self.request_id = request_id
        self.serving = serving
        self.stream = stream
        self._routing = routing
        self._clock = clock
        self._bus = bus
        self.reporter = reporter
        self._pick = pick
        self._why_none = why_none
        self.deadline = clock.now() + routing.request_deadline_s
        self.log: list[Attempt] = []
        self._blocked: dict[str, float] = {}
        self._tries: dict[str, int] = {}
        self._retry: str | None = None
        self._retry_at = 0.0
        self._fallback_from: _Fallback | None = None
        #: Providers this request tried although routing had them down (see request.py).
        self.last_resort: set[str] = set()
        #: An outcome of this request may have changed routing state (settle before answering).
        self.changed = False

    async def next(self) -> NextTry:
        """The next provider to try; raises AllProvidersFailedError when there is none."""
        clock, routing = self._clock, self._routing
        name: str | None = None
        if len(self.log) < routing.max_attempts:
            if self._retry is not None:
                name = self._retry
                if self._retry_at > clock.now():
                    await clock.sleep_until(self._retry_at)
            else:
                name, spare = await self._pick(self.serving, self._blocked, self.deadline)
                if name is not None and spare:
                    self.last_resort.add(name)
        self._retry = None
        if (fallback := self._fallback_from) is not None:
            self._fallback_from = None
            self._bus.tell(FallbackTriggered(at=clock.now(), request_id=self.request_id,
                                             from_provider=fallback.origin, to_provider=name,
                                             category=fallback.category, reason=fallback.reason))
        if name is None:
            if self.changed:
                await self.reporter.settle()
            raise AllProvidersFailedError(self.model, self.log, self._reason())
        self._tries[name] = self._tries.get(name, 0) + 1
        provider = self.serving[name]
        now = clock.now()
        return NextTry(name, provider, min(now + provider.timeout_s, self.deadline), time.perf_counter())

    def failed(self, name: str, failure: UpstreamFailure, started: float, *,
               mid_stream: bool = False) -> Attempt:
        """Record a failure and decide: retry, set the provider aside, or give up.

        ``mid_stream``: the caller already has part of the answer, so nothing is
        returned to it as a rejection and the next provider goes on with it.
        """
        report = self.reporter.failed(
            name, self.model, self.request_id, failure, self._tries.get(name, 1), started,
            stream=self.stream, last_resort=name in self.last_resort,
        )
        self.log.append(report.attempt)
        self.changed = self.changed or report.action not in ("return", "next")
        if report.action == "return" and not mid_stream:
            raise UpstreamRejectedError(name, failure.status or 400, failure.message, failure.body)
        if report.action == "retry" and not mid_stream:
            wait = failure.retry_after_s or 0.0
            if self._clock.now() + wait < self.deadline:
                self._retry, self._retry_at = name, self._clock.now() + wait
                if wait:
                    # Routing has it cooling for the wait it asked for; this request goes back
                    # to it then, and an answer is the evidence that restores it (as a last resort's).
                    self.last_resort.add(name)
                return report.attempt
        now = self._clock.now()
        self._blocked[name] = now + report.cooldown_s if report.cooldown_s > 0 else math.inf
        reason = "stream_interrupted" if mid_stream else report.message.message[:200]
        self._fallback_from = _Fallback(name, report.category, reason)
        return report.attempt

    def _reason(self) -> str:
        routing = self._routing
        if len(self.log) >= routing.max_attempts:
            return f"max_attempts ({routing.max_attempts}) reached"
        if self._clock.now() >= self.deadline:
            return f"request deadline ({routing.request_deadline_s:g} s) reached"
        if not self.log:
            return self._why_none()
        return "no other provider can serve it within the deadline"
