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
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.config import ProviderConfig, RoutingConfig
from actors.core.errors import AllProvidersFailedError, Attempt, UpstreamRejectedError
from actors.core.messages import AttemptFailed, FallbackTriggered
from actors.core.states import TRANSIENT_CATEGORIES, Category
from actors.edges.providers.base import UpstreamFailure
from actors.runtime.admission import Need
from actors.runtime.outcomes import Reporter

__all__ = ("NextTry", "Pick", "Plan")

#: ``pick(serving, blocked, deadline, by_priority) -> (name or None, last resort?)``: routing's
#: choice now (``by_priority``: a last resort in priority order rather than the one back soonest).
Pick = Callable[[Mapping[str, ProviderConfig], Mapping[str, float], float, bool],
                Awaitable[tuple[str | None, bool]]]


#: Failures worth another pass: transient ones, and a 429 (routing lets it be tried once its
#: Retry-After is over, and waits for that when it is short).
_PASSING = TRANSIENT_CATEGORIES | {"rate_limit"}


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
                 stream: bool, why_none: Callable[[], str],
                 deployments: Mapping[str, str] | None = None, single: bool = False,
                 need: Need | None = None) -> None:
        self.model = model
        #: Fallback off (routing.fallback = false, or x-fallback: off): the first provider only.
        self.single = single
        #: The tokens this request is expected to spend (rate-limit admission).
        self.need = need or Need()
        self.request_id = request_id
        self.serving = serving
        self.stream = stream
        self._routing = routing
        self._clock = clock
        self._bus = bus
        self.reporter = reporter
        self._pick = pick
        self._why_none = why_none
        #: provider -> its deployment record for this model (only providers serving several models).
        self.deployments: Mapping[str, str] = deployments or {}
        self.deadline = clock.now() + routing.request_deadline_s
        self.log: list[Attempt] = []
        self._blocked: dict[str, float] = {}
        self._tries: dict[str, int] = {}
        self._retry: str | None = None
        self._retry_at = 0.0
        self._fallback_from: _Fallback | None = None
        self._second_pass = False
        #: An undecided 400 (not told yet) and its failure: the next provider shows whose it was.
        self._doubt: tuple[AttemptFailed, UpstreamFailure] | None = None
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
                name, spare = await self._pick(self.serving, self._blocked, self.deadline, self._second_pass)
                if name is None and await self._another_pass():
                    name, spare = await self._pick(self.serving, self._blocked, self.deadline, True)
                if name is not None and spare:
                    self.last_resort.add(name)
                if name is not None and self.single:
                    self.serving = {name: self.serving[name]}  # no other provider from here on
        self._retry = None
        if (fallback := self._fallback_from) is not None:
            self._fallback_from = None
            self._bus.tell(FallbackTriggered(at=clock.now(), request_id=self.request_id,
                                             from_provider=fallback.origin, to_provider=name,
                                             category=fallback.category, reason=fallback.reason))
        if name is None:
            doubt, self._doubt = self._doubt, None
            if doubt is not None:
                self._bus.tell(msgspec.structs.replace(doubt[0], at=clock.now()))  # still undecided
            if self.changed:
                await self.reporter.settle()
            if doubt is not None and self.log[-1].provider == doubt[0].provider:
                # Nobody else could be asked: the 400 goes back as it came.
                failure = doubt[1]
                raise UpstreamRejectedError(doubt[0].provider, failure.status or 400, failure.message,
                                            failure.body)
            raise AllProvidersFailedError(self.model, self.log, self._reason())
        self._tries[name] = self._tries.get(name, 0) + 1
        provider = self.serving[name]
        now = clock.now()
        return NextTry(name, provider, min(now + provider.timeout_s, self.deadline), time.perf_counter())

    async def _another_pass(self) -> bool:
        """Every candidate failed transiently: wait a jittered moment and go through them once more."""
        backoff = self._routing.second_pass_backoff_s
        if self._second_pass or backoff <= 0 or not self.log or \
                any(a.category not in _PASSING for a in self.log):
            return False
        wake = self._clock.now() + random.uniform(backoff / 2, backoff)
        if wake >= self.deadline:
            return False
        self._second_pass = True
        # A 429 is never hammered: a provider that said so twice to this request stays aside.
        limited = Counter(a.provider for a in self.log if a.category == "rate_limit")
        self._blocked = {name: until for name, until in self._blocked.items() if limited[name] >= 2}
        await self._clock.sleep_until(wake)
        return True

    def failed(self, name: str, failure: UpstreamFailure, started: float, *,
               mid_stream: bool = False) -> Attempt:
        """Record a failure and decide: retry, set the provider aside, or give up.

        ``mid_stream``: the caller already has part of the answer, so nothing is
        returned to it as a rejection and the next provider goes on with it.
        """
        report = self.reporter.failed(
            name, self.model, self.request_id, failure, self._tries.get(name, 1), started,
            stream=self.stream, last_resort=name in self.last_resort,
            deployment=self.deployments.get(name, ""),
        )
        self.log.append(report.attempt)
        self.changed = self.changed or report.action not in ("return", "next")
        if self._doubt is not None and report.category == "invalid_request":
            # The next provider refused the same request too: the first 400 was the caller's.
            (first, first_failure), self._doubt = self._doubt, None
            self._tell_whose(first, "caller")
            if report.undecided:
                self._tell_whose(report.message, "caller")
            if not mid_stream:
                raise UpstreamRejectedError(first.provider, first_failure.status or 400,
                                            first_failure.message, first_failure.body)
        elif report.undecided and self._doubt is None:
            self._doubt = (report.message, failure)
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

    def answered(self) -> None:
        """A provider answered: an undecided 400 before it was the provider's that gave it."""
        doubt, self._doubt = self._doubt, None
        if doubt is not None:
            self._tell_whose(doubt[0], "provider")
            self.changed = True

    def _tell_whose(self, message: AttemptFailed, whose: Literal["provider", "caller"]) -> None:
        self._bus.tell(msgspec.structs.replace(message, at=self._clock.now(), whose=whose))

    def _reason(self) -> str:
        routing = self._routing
        if len(self.log) >= routing.max_attempts:
            return f"max_attempts ({routing.max_attempts}) reached"
        if self._clock.now() >= self.deadline:
            return f"request deadline ({routing.request_deadline_s:g} s) reached"
        if not self.log:
            return self._why_none()
        if self.single:
            return "fallback is off (routing.fallback = false or x-fallback: off): no other provider is tried"
        return "no other provider can serve it within the deadline"
