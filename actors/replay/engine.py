"""The machinery under :mod:`actors.replay`: fresh actors and synchronous delivery.

:class:`Engine` builds the real actors the way the supervisor does, from a
``supervisor_started`` line, and hands messages to their pure
``handle(message, now)``. :class:`Run` is one pass over a log: the engines
(a new one at each recorded start), the decisions made, the first divergence.
The schedules that decide *when* each message is delivered live in
:mod:`actors.replay` (exact) and :mod:`actors.whatif`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.core.actor import Actor
from actors.core.clock import VirtualClock
from actors.core.config import Config
from actors.core.deployments import split_key
from actors.core.messages import (
    ADDED_FIELDS,
    DECISION_TYPES,
    ActorRestarted,
    LoggedMessage,
    Message,
    ProviderView,
    RoutingSnapshot,
    StateSnapshot,
    SupervisorStarted,
    Tick,
    TimerFired,
    message_key,
)
from actors.replay.eventlog import EventLog
from actors.replay.summary import Tally
from actors.runtime.wiring import Restored, build_actors

__all__ = ("DECISIONS", "Divergence", "Engine", "Run", "lost_messages")

DECISIONS: frozenset[type[Message]] = frozenset(DECISION_TYPES)


class Divergence(msgspec.Struct, frozen=True, kw_only=True):
    """Where replay first disagreed with the log.

    ``index`` counts recorded decisions (0-based); ``line`` is the log line of
    the recorded one (0 when replay decided something the log doesn't have).
    ``expected`` is the recorded decision (None: the log had nothing more),
    ``got`` the replayed one (None: replay decided nothing of the kind).
    """

    index: int
    line: int
    expected: LoggedMessage | None
    got: LoggedMessage | None

    def describe(self) -> str:
        def show(m: Message | None) -> str:
            return "nothing" if m is None else msgspec.json.encode(m).decode()

        where = f"decision #{self.index}" + (f" (log line {self.line})" if self.line else "")
        return f"{where}:\n  expected {show(self.expected)}\n  got      {show(self.got)}"


class Engine:
    """The actors of one supervisor run, fed by hand."""

    def __init__(self, config: Config, start: SupervisorStarted | StateSnapshot,
                 lost: dict[str, dict[str, int]]) -> None:
        self.clock = VirtualClock(start.at)
        # Built as the supervisor builds them; never connected: messages go straight to handle().
        # A checkpoint (an excerpt's first line) is restored exactly: its probes stay in flight.
        actors = build_actors(config, clock=self.clock, exact=isinstance(start, StateSnapshot),
                              restored=Restored(providers={v.name: v for v in start.providers}))
        self.selector = actors.selector
        self.recovery = actors.recovery
        self.metrics = actors.metrics
        self.views: dict[str, ProviderView] = {v.name: v for v in actors.start.providers}
        self.probe_tier = config.health.probe_tier
        self.routes: dict[type[Message], list[Actor[Any]]] = {}
        for actor in actors.deciders():
            for t in actor.accepts:
                self.routes.setdefault(t, []).append(actor)
        self.timers: dict[str, Actor[Any]] = {a.name: a for a in actors.deciders() if a.logs_timers}
        self.lost = lost
        self.now = start.at

    def at(self, when: float) -> None:
        """Move the clock to ``when`` (never back)."""
        if when > self.now:
            self.now = when
            self.clock.move_to(when)

    def deliver(self, message: Message) -> list[Message]:
        """Hand ``message`` to every actor that takes it; return what they decided, in order."""
        if isinstance(message, TimerFired):
            timer = self.timers.get(message.actor)
            return timer.handle(Tick(at=message.at), message.at) if timer is not None else []
        out: list[Message] = []
        for actor in self.routes.get(type(message), ()):
            if not actor.wants(message):
                continue  # the live bus did not deliver it either
            skip = self.lost.get(actor.name)
            if skip:
                key = message_key(message)
                if skip.get(key):
                    skip[key] -= 1  # the live actor crashed on this one: it had no effect
                    continue
            decided = actor.handle(message, message.at)
            if actor is not self.metrics:  # its only output is a snapshot for readers
                out.extend(decided)
        if isinstance(message, RoutingSnapshot):
            self.views = {v.name: v for v in message.providers}
        return out

    def due(self, until: float) -> float | None:
        """The recovery timer's deadline, if it falls at or before ``until``."""
        deadline = self.recovery.next_deadline()
        return deadline if deadline is not None and deadline <= until else None

    def tick(self, at: float) -> list[Message]:
        self.at(at)
        return self.recovery.handle(Tick(at=at), at)


def lost_messages(messages: Sequence[LoggedMessage]) -> dict[str, dict[str, int]]:
    """Per actor, the messages the live actor crashed on (from ``actor_restarted`` lines)."""
    lost: dict[str, dict[str, int]] = {}
    for m in messages:
        if isinstance(m, ActorRestarted) and m.lost:
            bucket = lost.setdefault(m.actor, {})
            bucket[m.lost] = bucket.get(m.lost, 0) + 1
    return lost


class Run:
    """One pass over a log."""

    def __init__(self, log: EventLog, config: Config, *, tolerance: float = 0.0,
                 lost: dict[str, dict[str, int]] | None = None, keep: bool = True) -> None:
        self.log = log
        self.config = config
        self.tolerance = tolerance
        self.lost = lost_messages(log.messages) if lost is None else lost
        #: Keep every decision (False: a streamed pass over a long log keeps only the state).
        self.keep = keep
        #: Where a pass with a stop condition ended (see actors.replay._exact).
        self.cut: Message | None = None
        self.engine: Engine | None = None
        self.decisions: list[Message] = []
        self.divergence: Divergence | None = None
        self.inputs = 0
        self.tally = Tally()
        #: The log has its timer firings as inputs (schema 4 on): replay fires none of its own.
        written = log.header.migrated_from or log.header.schema_version
        self.timers_logged = written >= 4
        #: Decision fields added after the log was written: not compared.
        self.unseen = frozenset().union(*(f for v, f in ADDED_FIELDS.items() if v > written))

    def begin(self, start: SupervisorStarted | StateSnapshot) -> Engine:
        self.engine = Engine(self.config, start, self.lost)
        self.tally.start(start.at, {name: v.state for name, v in self.engine.views.items()
                                    if split_key(name)[1] is None})  # providers, not their models
        return self.engine

    def current(self) -> Engine:
        """The engine; a log cut without a start begins with every provider healthy."""
        if self.engine is None:
            at = self.log.messages[0].at if self.log.messages else 0.0
            views = tuple(ProviderView(name=p.name, priority=p.priority, state="healthy", healthy_since=at)
                          for p in self.config.providers)
            return self.begin(SupervisorStarted(at=at, providers=views))
        return self.engine

    def decided(self, message: Message) -> None:
        if self.keep:
            self.decisions.append(message)
        self.tally.decision(message)

    def fed(self, message: Message) -> None:
        self.inputs += 1
        self.tally.input(message)

    def diverge(self, index: int, line: int, expected: Message | None, got: Message | None) -> None:
        if self.divergence is None:
            self.divergence = Divergence(index=index, line=line, expected=expected,  # type: ignore[arg-type]
                                         got=got)  # type: ignore[arg-type]

    def same(self, a: Message, b: Message) -> bool:
        """Equal, or (for a migrated log) equal with times within the tolerance and new fields aside."""
        if a == b:
            return True
        if type(a) is not type(b) or not (self.tolerance or self.unseen):
            return False
        if self.unseen:
            a = msgspec.structs.replace(a, **{f: getattr(b, f) for f in self.unseen if hasattr(a, f)})
            if a == b:
                return True
            if not self.tolerance:
                return False
        da, db = msgspec.to_builtins(a), msgspec.to_builtins(b)
        for key in da.keys() | db.keys():
            x, y = da.get(key), db.get(key)
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > self.tolerance:
                    return False
            elif x != y:
                return False
        return True
