"""The request path: one chat completion, tried across providers until one answers.

It reads the latest :class:`RoutingSnapshot` (no actor round-trip), tells
each attempt's outcome to the bus without waiting, and decides retry /
fall back / return on the spot with the same pure :func:`classify` the
ErrorClassifier actor applies. Budgets: a per-attempt timeout (the
provider's ``timeout_s``), one end-to-end ``request_deadline_s``, and
``max_attempts`` tries, retries included.

When every candidate is out of routing it does not fail at once. First, with
``routing.last_resort`` on (the default), it tries a provider that is down
after a transient fault (5xx, timeout, connection, garbage) and that this
request has not tried yet, the one whose cooldown ends first: failing for
sure is worse than trying. A provider down for a reason that will not pass
by itself (401/403, 404, quota) is not tried; one whose 429 asked for a
wait is tried once the wait is over, and a request waits for that when it
is at most ``rate_limit_max_wait_s``.
Otherwise it waits for the routing snapshot to bring one back (a
finished cooldown and a successful probe) as long as the soonest recovery
falls inside the deadline. No user request is sent to test a provider.
"""

from __future__ import annotations

import functools
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.config import Config, ProviderConfig
from actors.core.deployments import deployment_key, deployments
from actors.core.errors import (
    UnknownModelError,
)
from actors.core.messages import ProviderView, RoutingSnapshot
from actors.core.states import DOWN_STATES, TRANSIENT_CATEGORIES, USABLE_STATES
from actors.edges.providers.base import Adapter, UpstreamFailure
from actors.runtime.admission import Admission, Need, estimate
from actors.runtime.chunks import StreamReader
from actors.runtime.continuation import Continuation, Part, Segment
from actors.runtime.outcomes import Reporter
from actors.runtime.plan import Plan
from actors.runtime.replies import ChatReply, ChatStream
from actors.runtime.route import Route

__all__ = ("Choice", "Gate", "RequestPath")

#: ``gate(provider, now) -> when it has rate-limit headroom for this request`` (<= now: now).
Gate = Callable[[str, float], float]
_EVERYONE = Route()  # no per-request limits on the chain


@dataclass(frozen=True, slots=True)
class Choice:
    """What routing offers a request now."""

    best: str | None  # the best usable provider (None: none now)
    soonest: float  # when one may be back (math.inf: never within reach)
    spare: str | None  # a provider down after a transient fault, worth a last-resort try
    #: A usable provider predicted out of rate-limit headroom, the one free soonest, and when.
    held: tuple[float, str] | None = None


def _may_pass(view: ProviderView, now: float) -> bool:
    """Whether a provider that routing has down is still worth a last-resort try."""
    err = view.last_error
    if err is None:
        return False
    if err.category == "rate_limit":  # worth it once the wait it asked for is over
        return err.retry_at is not None and err.retry_at <= now
    return err.category in TRANSIENT_CATEGORIES


class RequestPath:
    """Sends one request to the best provider, falling back as the matrix says."""

    def __init__(
        self,
        config: Config,
        adapters: Mapping[str, Adapter],
        *,
        clock: Clock,
        bus: Bus,
        snapshot: Callable[[], RoutingSnapshot],
        changed: Callable[[], anyio.Event],
        settle: Callable[[], Awaitable[None]] | None = None,
        prefill_refused: set[tuple[str, str]] | None = None,
    ) -> None:
        self.config = config
        self.adapters = adapters
        self.clock = clock
        self.bus = bus
        self.reporter = Reporter(clock=clock, bus=bus, routing=config.routing, snapshot=snapshot,
                                 settle=settle)
        self._snapshot = snapshot
        self._changed = changed
        self.admission = Admission(config, clock)
        self._deployment_cache: tuple[RoutingSnapshot, dict[str, ProviderView]] | None = None
        #: (provider, upstream model) pairs that refused a prefill: with prefill = "auto", they splice.
        self.prefill_refused: set[tuple[str, str]] = prefill_refused if prefill_refused is not None else set()
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._serving: dict[str, dict[str, ProviderConfig]] = {}
        #: logical model -> provider -> its deployment record (providers serving several models).
        self._deployments: dict[str, dict[str, str]] = {}
        for p in config.providers:
            own = deployments(p)
            for logical, upstream in p.models.items():
                self._serving.setdefault(logical, {})[p.name] = p
                if own:
                    self._deployments.setdefault(logical, {})[p.name] = deployment_key(p.name, upstream)

    def new_request_id(self) -> str:
        return f"req-{self._prefix}-{next(self._ids)}"

    def serving(self, model: str) -> dict[str, ProviderConfig]:
        found = self._serving.get(model)
        if found is None:
            raise UnknownModelError(model, list(self._serving))
        return found

    # -- choosing -----------------------------------------------------------
    def _deployment_views(self, snapshot: RoutingSnapshot) -> dict[str, ProviderView]:
        cached = self._deployment_cache
        if cached is None or cached[0] is not snapshot:
            cached = self._deployment_cache = (snapshot, {v.name: v for v in snapshot.deployments})
        return cached[1]

    def _choose(self, serving: Mapping[str, ProviderConfig], blocked: Mapping[str, float],
                now: float, by_priority: bool = False, deployments: Mapping[str, str] | None = None,
                gate: Gate | None = None, order: Sequence[str] | None = None) -> Choice:
        """The best usable provider now, or None, when one may come back, and a last resort.

        ``deployments``: provider -> its record for this model; a model out of routing counts
        as its provider out (for this model only). ``gate``: when a provider has rate-limit
        headroom for this request (actors.runtime.admission). ``order``: the caller's order of
        the providers (default: routing's, by priority).
        """
        soonest = math.inf
        spare: tuple[float, str] | None = None
        held: tuple[float, str] | None = None
        last_resort = self.config.routing.last_resort
        snapshot = self._snapshot()
        models = self._deployment_views(snapshot) if deployments else None
        views: Sequence[ProviderView] = snapshot.providers
        if order is not None:
            by_name = {v.name: v for v in views}
            views = [by_name[n] for n in order if n in by_name]
        for view in views:
            name = view.name
            if name not in serving:
                continue
            if models is not None and view.state in USABLE_STATES and deployments and \
                    (own := models.get(deployments.get(name, ""))) is not None and \
                    own.state not in USABLE_STATES:
                view = own
            until = blocked.get(name, 0.0)
            if view.state in USABLE_STATES:
                if until <= now:
                    free = gate(name, now) if gate is not None else 0.0
                    if free <= now:
                        return Choice(name, now, None)
                    if held is None or free < held[0]:
                        held = (free, name)
                    until = free
                soonest = min(soonest, until)
            elif view.state in DOWN_STATES:
                back = view.cooldown_until or now
                soonest = min(soonest, max(back, until, now))
                if not last_resort or name in blocked:
                    continue
                if _may_pass(view, now):
                    # The one back soonest; on a second pass, the first in priority order.
                    if spare is None or (back < spare[0] and not by_priority):
                        spare = (back, name)
                elif (err := view.last_error) is not None and err.retry_at is not None and \
                        err.retry_at - now <= self.config.routing.rate_limit_max_wait_s:
                    soonest = min(soonest, err.retry_at)  # a short Retry-After: worth waiting out
        return Choice(None, soonest, spare[1] if spare is not None else None, held)

    async def _pick(
        self, serving: Mapping[str, ProviderConfig], blocked: Mapping[str, float], deadline: float,
        by_priority: bool = False, deployments: Mapping[str, str] | None = None,
        gate: Gate | None = None, order: Sequence[str] | None = None,
    ) -> tuple[str | None, bool]:
        """The provider to try next and whether it is a last resort (None: nothing can answer)."""
        while True:
            now = self.clock.now()
            choice = self._choose(serving, blocked, now, by_priority, deployments, gate, order)
            if choice.best is not None:
                return choice.best, False
            if choice.spare is not None:
                return choice.spare, True
            if choice.held is not None and choice.held[0] > deadline:
                # Out of headroom past this request's deadline and nothing else is up: ask it
                # anyway (the prediction may be wrong; a real 429 then says so). Within the
                # deadline, it is waited for like a cooldown's end, with no 429 paid.
                return choice.held[1], False
            soonest = choice.soonest
            if soonest > deadline:
                return None, False
            # Wait for routing to bring one back (cooldown over and probe passed),
            # or for a provider this request set aside to be worth a new try.
            wake = min(deadline, max(soonest, now)) if soonest > now else deadline
            changed = self._changed()
            with self.clock.move_on_at(wake):
                await changed.wait()
            if self.clock.now() >= deadline:
                return None, False

    def _plan(self, model: str, body: Mapping[str, Any], route: Route, *, stream: bool) -> Plan:
        serving = self.serving(model)
        if route.providers is not None:
            serving = {name: serving[name] for name in route.providers if name in serving}
        own = self._deployments.get(model)
        need = estimate(body) if self.admission.counts_tokens else Need()
        gate = functools.partial(self._gate, serving, model, need)
        pick = functools.partial(self._pick, deployments=own, gate=gate, order=route.providers)
        return Plan(model=model, request_id=self.new_request_id(), serving=serving,
                    routing=self.config.routing, clock=self.clock, bus=self.bus, reporter=self.reporter,
                    pick=pick, stream=stream, why_none=lambda: self.no_provider_reason(serving),
                    deployments=own, single=not route.fallback, need=need)

    def _gate(self, serving: Mapping[str, ProviderConfig], model: str, need: Need, name: str,
              now: float) -> float:
        return self.admission.until(name, serving[name].models[model], need, now)

    # -- reporting ----------------------------------------------------------
    def no_provider_reason(self, serving: Mapping[str, ProviderConfig]) -> str:
        views = {v.name: v for v in self._snapshot().providers}
        parts = []
        for name in serving:
            view = views.get(name)
            if view is not None and view.state not in USABLE_STATES:
                detail = f": {view.detail}" if view.detail else ""
                parts.append(f"{name} is {view.state}{detail}")
        return "; ".join(parts)

    # -- the loop ---------------------------------------------------------
    async def complete(self, body: dict[str, Any], model: str, route: Route | None = None) -> ChatReply:
        """One non-streamed chat completion, with failover."""
        plan = self._plan(model, body, route or _EVERYONE, stream=False)
        while True:
            step = await plan.next()
            name, provider, started = step.name, step.provider, step.started
            failure: UpstreamFailure | None = None
            with self.clock.move_on_at(step.deadline) as scope:
                try:
                    upstream = provider.models[model]
                    ticket = self.admission.admit(name, upstream, plan.need)
                    raw = await self.adapters[name].complete(body, upstream, seen=ticket.seen)
                except UpstreamFailure as exc:
                    failure = exc
            if scope.cancelled_caught:
                failure = UpstreamFailure("timeout", f"no answer within {provider.timeout_s:g} s")
            if failure is not None:
                plan.failed(name, failure, started)
                continue
            latency = (time.perf_counter() - started) * 1000.0
            plan.answered()
            if self.reporter.succeeded(provider=name, model=model, request_id=plan.request_id,
                                       latency_ms=latency, last_resort=name in plan.last_resort,
                                       deployment=plan.deployments.get(name, "")):
                plan.changed = True
            if plan.changed:
                await self.reporter.settle()
            return ChatReply(provider=name, model=model, raw=raw, attempt_log=plan.log,
                             latency_ms=latency)

    async def open_stream(self, body: dict[str, Any], model: str, route: Route | None = None) -> ChatStream:
        """Connect a streamed completion, failing over until a first chunk arrives."""
        plan = self._plan(model, body, route or _EVERYONE, stream=True)
        idle = self.config.routing.stream_idle_timeout_s
        while True:
            step = await plan.next()
            name, provider, started = step.name, step.provider, step.started
            stack = AsyncExitStack()
            reader = StreamReader()
            first: list[bytes] = []
            # Nothing reaches the caller before a first token (content, a tool call, reasoning):
            # until then a provider can be replaced invisibly, and it has first_token_timeout_s.
            token_deadline = min(step.deadline, self.clock.now() + provider.first_token_timeout_s)
            failure: UpstreamFailure | None = None
            with self.clock.move_on_at(token_deadline) as scope:
                try:
                    upstream = provider.models[model]
                    ticket = self.admission.admit(name, upstream, plan.need)
                    chunks = await stack.enter_async_context(
                        self.adapters[name].stream(body, upstream, seen=ticket.seen)
                    )
                    while not (reader.tokens or reader.finished):
                        payload = await chunks.__anext__()
                        if reader.take(payload):
                            first.append(payload)
                except StopAsyncIteration:
                    failure = UpstreamFailure("stream_cut", "the stream ended before its first token")
                except UpstreamFailure as exc:
                    if not (exc.kind == "stream_cut" and reader.finished):
                        failure = exc
            if scope.cancelled_caught:
                limit = min(provider.first_token_timeout_s, provider.timeout_s)
                failure = UpstreamFailure("timeout", f"no first token within {limit:g} s")
            if failure is None:
                plan.answered()
                segment = Segment(Part(name, provider.models[model], "first"), reader, chunks, stack,
                                  started, last_resort=name in plan.last_resort,
                                  deployment=plan.deployments.get(name, ""))
                continuation = Continuation(plan=plan, adapters=self.adapters, body=body, clock=self.clock,
                                            bus=self.bus, idle_timeout_s=idle, refused=self.prefill_refused,
                                            admission=self.admission)
                if plan.changed:
                    await self.reporter.settle()  # before the caller sees the first chunk
                return ChatStream(self.reporter, idle_timeout_s=idle, model=model,
                                  request_id=plan.request_id, first=first, segment=segment,
                                  attempt_log=plan.log, continuation=continuation)
            await stack.aclose()
            plan.failed(name, failure or UpstreamFailure("stream_cut", "no first chunk"), started)
