"""The status page's history of a window (``GET /status/history?hours=24``), from the event log.

Takes in: the event log's ``provider_state_changed``, ``supervisor_started``,
``fallback_triggered``, ``attempt_succeeded`` and ``attempt_failed`` rows of
the last ``hours`` (newest first, read on the time index: a big log costs
only its window), and the routing snapshot now.
Puts out: one JSON document (times are epoch seconds)::

    {"from", "to", "hours", "bucket_s", "generated_at", "observed_from", "truncated", "restarts": [at],
     "providers": {name: {"state", "bands": [{"from", "to", "state", "reason"}],
                          "deployments": {upstream: {"state", "bands"}},
                          "fallbacks": [at],       # fallbacks away from it
                          "latency": [[t, p50, p95, n]], "ttft": [[t, p50, p95, n]],
                          "latency_p50_ms", "latency_p95_ms", "ttft_p50_ms", "ttft_p95_ms", "answers"}},
     "fallbacks": [{"at", "request_id", "from", "to", "reason", "error", "waited_ms"}]}

``latency`` is a whole answer's time, ``ttft`` a stream's time to its first
token (a streamed attempt's ``latency_ms`` is measured there), per bucket of
``bucket_s`` (at most :data:`MAX_POINTS` buckets). ``waited_ms`` is how long
the caller waited, from its request's first attempt to the answer (its first
token when streaming), or to the last failure when nobody answered.
Promises: bounded output and work (:data:`MAX_ROWS` attempts, :data:`MAX_CHANGES`
state changes and fallbacks, :data:`MAX_FALLBACKS` log rows, :data:`MAX_BANDS`
bands a series; ``truncated`` says a bound was met); only the fields named
above leave the log (error texts were redacted where they were read, and are cut short).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.core.deployments import split_key
from actors.core.messages import (
    AttemptFailed,
    AttemptSucceeded,
    FallbackTriggered,
    LoggedMessage,
    ProviderStateChanged,
    RoutingSnapshot,
    SupervisorStarted,
)
from actors.core.stats import percentile
from actors.core.times import iso
from actors.edges.store import Store
from actors.edges.store.schema import StoredEvent

__all__ = ("MAX_HOURS", "MAX_POINTS", "bucket_for", "build_history", "load_history")

MAX_HOURS = 168
MAX_POINTS = 288  # latency buckets a series: 5 min over 24 h, 1 min up to 4.8 h
MAX_ROWS = 100_000  # attempts read a call (the newest): about half a second on a 2-core machine
MAX_CHANGES = 50_000  # state changes, starts and fallbacks read a call (the newest)
MAX_FALLBACKS = 200  # rows of the fallback log (the newest)
MAX_MARKS = 500  # fallback marks a provider's timeline
MAX_BANDS = 1000  # bands a series (the newest)
_ERROR_CHARS = 300
_PAGE = 5000
_STATES = ("provider_state_changed", "supervisor_started", "fallback_triggered")
_ATTEMPTS = ("attempt_succeeded", "attempt_failed")


def bucket_for(hours: float) -> int:
    """The latency bucket for a window: whole minutes, at least one, at most MAX_POINTS buckets."""
    return 60 * max(1, math.ceil(hours * 3600 / MAX_POINTS / 60))


class _Attempt(msgspec.Struct, frozen=True):
    """The fields of an ``attempt_succeeded`` or ``attempt_failed`` row the history reads (fast to decode)."""

    type: str
    at: float
    provider: str
    request_id: str
    latency_ms: float = 0.0
    stream: bool = False


_attempt_decoder = msgspec.json.Decoder(_Attempt)


def _tag(message: LoggedMessage) -> str:
    return str(type(message).__struct_config__.tag)


@dataclass
class _Request:
    """What a request that fell back went through: for how long its caller waited."""

    start: float | None = None  # its first attempt's start
    marks: list[float] = field(default_factory=list)  # when each failure and fallback happened
    answered: _Attempt | None = None

    def waited_ms(self) -> float | None:
        if self.start is None:
            return None  # its first attempt is older than the window
        if self.answered is not None:
            before = [t for t in self.marks if t <= self.answered.at] or [self.start]
            end = max(before) + self.answered.latency_ms / 1000.0
        else:
            end = max(self.marks, default=self.start)
        return round(max(0.0, end - self.start) * 1000.0, 1)


def _series_bands(changes: list[tuple[float, str | None, str, str]], current: str, start: float,
                  end: float) -> tuple[list[dict[str, Any]], bool]:
    """Bands [from, to) of one provider or deployment, from its changes (oldest first)."""
    state = current
    if changes:  # the first change says what came before it (a start, what it began with)
        _, old, new, _ = changes[0]
        state = old if old is not None else new
    out: list[dict[str, Any]] = []
    t, reason = start, ""
    for at, _old, new, why in changes:
        at = min(max(at, start), end)
        if new == state:
            continue
        if at > t:
            out.append({"from": round(t, 3), "to": round(at, 3), "state": state, "reason": reason})
        state, t, reason = new, max(t, at), why
    if end > t:
        out.append({"from": round(t, 3), "to": round(end, 3), "state": state, "reason": reason})
    return out[-MAX_BANDS:], len(out) > MAX_BANDS


def _points(buckets: dict[int, list[float]], since: float, bucket_s: int) -> list[list[float | None]]:
    return [[round(since + b * bucket_s, 3), _ms(percentile(v, 50)), _ms(percentile(v, 95)), len(v)]
            for b, v in sorted(buckets.items())]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class _Builder:
    """Folds the window's messages (in any order) into the history document."""

    def __init__(self, routing: RoutingSnapshot, *, since: float, now: float, hours: float) -> None:
        self.since, self.now, self.hours = since, now, hours
        self.bucket_s = bucket_for(hours)
        self.current = {v.name: str(v.state) for v in (*routing.providers, *routing.deployments)}
        self.providers = [v.name for v in routing.providers]
        self.changes: dict[str, list[tuple[float, int, str | None, str, str]]] = {}
        self.restarts: list[float] = []
        self.fallbacks: list[FallbackTriggered] = []
        self.latency: dict[str, dict[int, list[float]]] = {p: {} for p in self.providers}
        self.ttft: dict[str, dict[int, list[float]]] = {p: {} for p in self.providers}
        self.requests: dict[str, _Request] = {}
        self.truncated = False

    def add(self, message: LoggedMessage, seq: int) -> None:
        """Take one message; ``seq`` orders messages of the same time as the log does."""
        match message:
            case ProviderStateChanged():
                self.changes.setdefault(message.provider, []).append(
                    (message.at, seq, message.old, message.new, message.reason))
            case SupervisorStarted():
                self.restarts.append(message.at)
                for view in message.providers:
                    self.changes.setdefault(view.name, []).append(
                        (message.at, seq, None, view.state, "restart"))
            case FallbackTriggered():
                self.fallbacks.append(message)
            case AttemptSucceeded() | AttemptFailed():
                self.add_attempt(_Attempt(type=_tag(message), at=message.at, provider=message.provider,
                                          request_id=message.request_id, latency_ms=message.latency_ms,
                                          stream=message.stream))
            case _:
                pass

    def add_attempt(self, attempt: _Attempt) -> None:
        """Take one attempt (the hot loop: a big window holds many)."""
        req = self.requests.get(attempt.request_id)
        if attempt.type == "attempt_succeeded":
            per = (self.ttft if attempt.stream else self.latency).get(attempt.provider)
            if per is not None:
                bucket = int((attempt.at - self.since) // self.bucket_s)
                per.setdefault(bucket, []).append(attempt.latency_ms)
            if req is not None:
                req.answered = attempt
        elif req is not None:
            began = attempt.at - attempt.latency_ms / 1000.0
            req.start = began if req.start is None else min(req.start, began)
            req.marks.append(attempt.at)

    def watch_fallbacks(self) -> None:
        """After the state pass: follow the requests of the newest fallbacks through the attempts pass."""
        self.fallbacks.sort(key=lambda f: f.at)
        for f in self.fallbacks[-MAX_FALLBACKS:]:
            self.requests.setdefault(f.request_id, _Request()).marks.append(f.at)

    def build(self, observed_from: float | None) -> dict[str, Any]:
        start = max(self.since, observed_from) if observed_from is not None else self.now
        providers: dict[str, Any] = {}
        for name in self.providers:
            lat = [v for vs in self.latency[name].values() for v in vs]
            ttft = [v for vs in self.ttft[name].values() for v in vs]
            providers[name] = {
                "state": self.current.get(name),
                "bands": self._bands(name, start),
                "deployments": {},
                "fallbacks": [round(f.at, 3) for f in self.fallbacks if f.from_provider == name][-MAX_MARKS:],
                "latency": _points(self.latency[name], self.since, self.bucket_s),
                "ttft": _points(self.ttft[name], self.since, self.bucket_s),
                "latency_p50_ms": _ms(percentile(lat, 50)), "latency_p95_ms": _ms(percentile(lat, 95)),
                "ttft_p50_ms": _ms(percentile(ttft, 50)), "ttft_p95_ms": _ms(percentile(ttft, 95)),
                "answers": len(lat) + len(ttft),
            }
        for key in sorted(set(self.current) | set(self.changes)):
            provider, upstream = split_key(key)
            if upstream is not None and provider in providers:
                providers[provider]["deployments"][upstream] = {"state": self.current.get(key),
                                                                "bands": self._bands(key, start)}
        rows = [{"at": round(f.at, 3), "request_id": f.request_id, "from": f.from_provider,
                 "to": f.to_provider, "reason": f.category, "error": f.reason[:_ERROR_CHARS],
                 "waited_ms": req.waited_ms() if (req := self.requests.get(f.request_id)) else None}
                for f in reversed(self.fallbacks[-MAX_FALLBACKS:])]
        return {"from": round(self.since, 3), "to": round(self.now, 3), "hours": self.hours,
                "bucket_s": self.bucket_s, "generated_at": iso(self.now),
                "observed_from": None if observed_from is None else round(start, 3),
                "truncated": self.truncated, "restarts": sorted(round(t, 3) for t in self.restarts),
                "providers": providers, "fallbacks": rows}

    def _bands(self, key: str, start: float) -> list[dict[str, Any]]:
        changes = sorted(self.changes.get(key, []))
        current = self.current.get(key) or (changes[-1][3] if changes else "healthy")
        bands, cut = _series_bands([(at, old, new, why) for at, _, old, new, why in changes], current, start,
                                   self.now)
        self.truncated |= cut
        return bands


def build_history(routing: RoutingSnapshot, states: Sequence[LoggedMessage],
                  attempts: Sequence[LoggedMessage], *, since: float, now: float, hours: float,
                  observed_from: float | None) -> dict[str, Any]:
    """The history document from the window's messages (a pure function, for tests and tools)."""
    builder = _Builder(routing, since=since, now=now, hours=hours)
    for seq, m in enumerate(states):
        builder.add(m, seq)
    builder.watch_fallbacks()
    for seq, m in enumerate(attempts):
        builder.add(m, seq)
    return builder.build(observed_from)


async def _newest(store: Store, types: Sequence[str], since: float, first: int,
                  cap: int) -> AsyncIterator[list[StoredEvent]]:
    """Pages of the window's events of ``types``, newest first: ``cap`` of them, then one more if any."""
    before: int | None = None
    seen = 0
    while seen <= cap:
        limit = min(_PAGE, cap + 1 - seen)
        page = await store.events(after=first - 1, before=before, since=since, types=list(types),
                                  descending=True, limit=limit)
        seen += len(page)
        yield page
        if len(page) < limit:
            return
        before = page[-1].id


async def load_history(store: Store, routing: RoutingSnapshot, *, now: float, hours: float) -> dict[str, Any]:
    """The history of the last ``hours`` (1 to MAX_HOURS) from ``store``'s event log."""
    since = now - hours * 3600.0
    builder = _Builder(routing, since=since, now=now, hours=hours)
    oldest = await store.events(limit=1)
    observed_from = oldest[0].at if oldest else None
    first = await store.first_id_since(since)
    if first is not None:
        count = 0
        async for page in _newest(store, _STATES, since, first, MAX_CHANGES):
            for event in page[:MAX_CHANGES - count]:
                builder.add(event.message, event.id)
            count += len(page)
        builder.watch_fallbacks()
        rows = 0
        async for page in _newest(store, _ATTEMPTS, since, first, MAX_ROWS):
            for event in page[:MAX_ROWS - rows]:
                builder.add_attempt(_attempt_decoder.decode(event.data))
            rows += len(page)
        builder.truncated |= count > MAX_CHANGES or rows > MAX_ROWS
    return builder.build(observed_from)
