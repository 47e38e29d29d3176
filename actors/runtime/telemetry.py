"""OpenTelemetry for requests (``[telemetry] otel = true``, extra ``[otel]``), built from the bus.

Takes in: :class:`AttemptFailed`, :class:`AttemptSucceeded` and :class:`FallbackTriggered`
(``Bus.listen``: called synchronously, on the request path too). Each attempt's times are in its
message: it ended ``at``, and began ``latency_ms`` before (a stream's success: ``duration_ms``
before, its ``latency_ms`` is its first token's).
Puts out, once a request is over (:mod:`actors.runtime.otel` turns it into OpenTelemetry): one
span ``chat {model}`` (GenAI semantic conventions) with a child span per attempt, and the
``gen_ai.client.operation.duration`` and ``gen_ai.client.operation.time_to_first_chunk`` histograms.
Owns: the requests in flight that have told something (at most :data:`MAX_OPEN`).
Promises: off, nothing is imported or listened to; on, a message costs a dict look-up until its
request ends, its spans are made on the event loop's next turn (asyncio's ``call_soon``: after the
request path has gone on, not inside it), and nothing here ever raises into the request path.
No secret and no text a provider or caller wrote goes into a span: names, models, categories,
HTTP statuses and times.

A request is over when one of its attempts succeeded (a continuation that said something else
ends it as ``stream_interrupted``), when a ``FallbackTriggered`` found nobody to go to, or when its
failure goes back to the caller (the classifier's ``return``). A request no provider was even
tried for tells nothing, so it has no span. One that ends
otherwise (its last try was a retry, the caller hung up) is closed at its last attempt's end once
nothing has come for it for :attr:`Telemetry.horizon_s`, with ``error.type`` ``_OTHER``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.core.actor import Bus
from actors.core.config import Config
from actors.core.errors import ConfigError
from actors.core.messages import AttemptFailed, AttemptSucceeded, FallbackTriggered, Message
from actors.policy.error_classifier import classify
from actors.runtime.request_trace import AttemptKind, AttemptRecord, Finished

__all__ = ("MAX_OPEN", "Telemetry")

log = logging.getLogger("actors.telemetry")
MAX_OPEN = 10_000  # requests in flight that have told something; past it the oldest are closed


@dataclass(slots=True)
class _Open:
    model: str
    stream: bool
    seen: float  # the clock time of its last message
    attempts: list[AttemptRecord] = field(default_factory=list)
    next_kind: tuple[str, AttemptKind] | None = None  # (provider, kind) a FallbackTriggered announced


class Telemetry:
    """Follows requests on the bus and hands each finished one to ``emit`` (see the module doc)."""

    def __init__(self, config: Config, emit: Callable[[Finished], None] | None = None, *,
                 horizon_s: float | None = None) -> None:
        if emit is None:
            from actors.runtime.otel import Instruments  # the [otel] extra: imported only when on

            emit = Instruments.for_config(config)
        self.emit = emit
        self._routing = config.routing
        #: Closes a request nothing marked the end of once it has been quiet this long.
        self.horizon_s = horizon_s if horizon_s is not None else \
            max(2 * config.routing.request_deadline_s, 600.0)
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._failing = False

    @classmethod
    def open(cls, config: Config) -> Telemetry | None:
        """None when ``[telemetry] otel`` is off; else a Telemetry over the global OpenTelemetry providers.

        Raises ConfigError naming the extra when OpenTelemetry is not installed.
        """
        if not config.telemetry.otel:
            return None
        try:
            import opentelemetry.metrics
            import opentelemetry.trace  # noqa: F401
        except ImportError as exc:
            raise ConfigError("is true, but OpenTelemetry is not installed: pip install "
                              "'provider-fallback[otel]' (or set it to false)", path=config.source,
                              key="telemetry.otel") from exc
        return cls(config)

    def attach(self, bus: Bus) -> None:
        bus.listen([AttemptFailed, AttemptSucceeded, FallbackTriggered], self.record)

    # -- the sink -----------------------------------------------------------
    def record(self, message: Message) -> None:
        """Take one message (a bus sink: never raises: the request path is calling)."""
        self._guarded(self._take, message, "take a message")

    def _guarded(self, call: Callable[[Any], None], arg: Any, what: str) -> None:
        """``call(arg)``; a failure (a bug here, a broken exporter or SDK) is logged once, never raised:
        telemetry must never break serving."""
        try:
            call(arg)
        except Exception:
            if not self._failing:
                self._failing = True
                log.exception("telemetry could not %s (further failures are silent)", what)

    def _take(self, message: Message) -> None:
        match message:
            case FallbackTriggered():
                req = self._touch(message.request_id, None, message.at)
                if req is None:
                    return
                if message.to_provider is None:
                    self._finish(message.request_id, message.category)
                else:
                    mid = message.reason == "stream_interrupted"
                    req.next_kind = (message.to_provider, "continuation" if mid else "fallback")
            case AttemptSucceeded():
                req = self._touch(message.request_id, message, message.at)
                assert req is not None
                took = (message.duration_ms if message.duration_ms is not None else message.latency_ms) / 1000
                attempt = self._attempt(req, message.provider, message.at - took, message.at, ok=True,
                                        last_resort=message.last_resort)
                ttft = None
                if message.stream and message.duration_ms is None:
                    # Only a continuation that answered something else (Diverged) tells a stream's
                    # success without its whole time: the caller gets StreamInterruptedError.
                    self._finish(message.request_id, "stream_interrupted")
                    return
                if message.stream:
                    # The first chunk came from the segment the first continuation took over from.
                    kinds = [a.kind for a in req.attempts]
                    began = req.attempts[kinds.index("continuation") - 1] if "continuation" in kinds \
                        else attempt
                    start = min(a.start for a in req.attempts)
                    ttft = max(0.0, began.start + message.latency_ms / 1000 - start)
                self._finish(message.request_id, None, ttft)
            case AttemptFailed():
                req = self._touch(message.request_id, message, message.at)
                assert req is not None
                verdict = classify(message, self._routing)
                attempt = self._attempt(req, message.provider, message.at - message.latency_ms / 1000,
                                        message.at, ok=False, category=verdict.category,
                                        status=message.status, last_resort=message.last_resort)
                if verdict.action == "return" and not verdict.undecided and attempt.kind != "continuation":
                    self._finish(message.request_id, verdict.category)
            case _:
                pass

    def _touch(self, request_id: str, attempt: AttemptSucceeded | AttemptFailed | None,
               now: float) -> _Open | None:
        req = self._open.get(request_id)
        if req is None:
            if attempt is None:
                return None  # a fallback of a request none of whose attempts told anything yet
            req = self._open[request_id] = _Open(model=attempt.model, stream=attempt.stream, seen=now)
        else:
            req.seen = now
            self._open.move_to_end(request_id)
        self._sweep(now)
        return req

    def _attempt(self, req: _Open, provider: str, start: float, end: float, *, ok: bool,
                 category: str | None = None, status: int | None = None,
                 last_resort: bool = False) -> AttemptRecord:
        kind: AttemptKind
        if req.next_kind is not None and req.next_kind[0] == provider:
            kind, req.next_kind = req.next_kind[1], None
        elif not req.attempts:
            kind = "first"
        elif req.attempts[-1].provider == provider:
            kind = "retry"
        else:
            kind = "fallback"
        record = AttemptRecord(provider, kind, start, end, ok, category, status, last_resort)
        req.attempts.append(record)
        return record

    def _finish(self, request_id: str, error_type: str | None, ttft_s: float | None = None) -> None:
        req = self._open.pop(request_id, None)
        if req is None or not req.attempts:
            return
        done = Finished(request_id=request_id, model=req.model, stream=req.stream, attempts=req.attempts,
                        error_type=error_type, ttft_s=ttft_s)
        try:  # the spans are made once the request path has gone on (the SDK costs ~50 µs a span)
            asyncio.get_running_loop().call_soon(self._emit, done)
        except RuntimeError:  # no event loop (replay, a unit test calling record()): now
            self._emit(done)

    def _emit(self, done: Finished) -> None:
        self._guarded(self.emit, done, "emit a request's spans")

    def _sweep(self, now: float) -> None:
        """Close the requests quiet past the horizon (the least recently told come first)."""
        while self._open:
            request_id, oldest = next(iter(self._open.items()))
            if oldest.seen >= now - self.horizon_s and len(self._open) <= MAX_OPEN:
                return
            self._finish(request_id, "_OTHER")

    @property
    def in_flight(self) -> int:
        """Requests that told something and are not over yet."""
        return len(self._open)
