"""What a chat call hands back: a finished :class:`ChatReply`, or a :class:`ChatStream` already answering.

The request path (``request.py``) builds these once a provider has answered;
a stream keeps reporting through the :class:`~actors.runtime.outcomes.Reporter`
it is handed (success when closed). When its provider breaks after the first
chunk, it asks its :class:`~actors.runtime.continuation.Continuation` for the
next provider to go on from, and raises the typed error with the partial text
only when none can.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

import msgspec

from actors.core.errors import AllProvidersFailedError, Attempt, StreamInterruptedError
from actors.edges.providers.base import UpstreamFailure
from actors.runtime.continuation import Continuation, Diverged, Part, Segment
from actors.runtime.outcomes import Reporter

__all__ = ("ChatReply", "ChatStream")

_decode_json = msgspec.json.Decoder().decode


class ChatReply:
    """A completed chat: who answered, after how many attempts, and the body."""

    __slots__ = ("__dict__", "attempt_log", "attempts", "latency_ms", "model", "provider", "raw")

    def __init__(
        self, *, provider: str, model: str, raw: bytes, attempt_log: list[Attempt], latency_ms: float
    ) -> None:
        self.provider = provider
        self.model = model
        self.raw = raw
        self.attempt_log = attempt_log
        self.attempts = len(attempt_log) + 1
        self.latency_ms = latency_ms

    @cached_property
    def body(self) -> dict[str, Any]:
        """The OpenAI-shaped response body."""
        result: dict[str, Any] = _decode_json(self.raw)
        return result

    @property
    def text(self) -> str:
        """The first choice's message content ('' when there is none)."""
        try:
            content = self.body["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
        return content if isinstance(content, str) else ""

    def __repr__(self) -> str:
        return f"ChatReply(provider={self.provider!r}, attempts={self.attempts})"


class ChatStream:
    """A stream already answering: its first chunk has arrived from ``provider``.

    Iterate it for each chunk's JSON payload (bytes); use it as an async
    context manager so the upstream connection is released. If the provider
    breaks, the answer goes on from the next one (``provider`` then names
    it); :class:`StreamInterruptedError` with the partial text is raised only
    when no provider can go on with it.
    """

    def __init__(
        self,
        reporter: Reporter,
        *,
        idle_timeout_s: float,
        model: str,
        request_id: str,
        first: list[bytes],
        segment: Segment,
        attempt_log: list[Attempt],
        continuation: Continuation | None = None,
    ) -> None:
        self._reporter = reporter
        self._idle_timeout_s = idle_timeout_s
        self.model = model
        self.request_id = request_id
        self._first = first  # what came up to and with the first token
        self._segment = segment
        self._continuation = continuation
        self._before = ""  # what earlier providers' segments said
        self._tool_calls = False  # the caller has tool-call deltas (a stream that cannot go on)
        #: Who produced which part of the answer (one entry until a continuation).
        self.parts: list[Part] = [segment.part]
        self.attempt_log = attempt_log
        self._ttfb_ms = (time.perf_counter() - segment.started) * 1000.0
        self._reported = False

    @property
    def provider(self) -> str:
        """The provider streaming now (the last one, once the stream is over)."""
        return self._segment.provider

    @property
    def last_resort(self) -> bool:
        return self._segment.last_resort

    @property
    def attempts(self) -> int:
        return len(self.attempt_log) + 1

    @property
    def partial_text(self) -> str:
        """The content the caller has been sent so far."""
        return self._before + self._segment.text

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the upstream; a stream that did not fail counts as a success."""
        segment = self._segment
        if not self._reported:
            self._reported = True
            self._reporter.succeeded(provider=segment.provider, model=self.model, request_id=self.request_id,
                                     latency_ms=self._ttfb_ms, stream=True, last_resort=segment.last_resort,
                                     bad_chunks=segment.reader.bad_chunks, deployment=segment.deployment,
                                     duration_ms=(time.perf_counter() - segment.started) * 1000.0)
        await segment.stack.aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        clock = self._reporter.clock
        first, self._first = self._first, []
        for early in first:
            yield early
        idle = self._idle_timeout_s
        while True:
            segment = self._segment
            failure: UpstreamFailure | None = None
            payload: bytes | None = None
            keep = True
            with clock.move_on_at(clock.now() + idle) as scope:
                try:
                    payload = await segment.chunks.__anext__()
                    keep = segment.reader.take(payload)
                except StopAsyncIteration:
                    pass
                except UpstreamFailure as exc:
                    if not (exc.kind == "stream_cut" and segment.reader.finished):
                        failure = exc  # after a finish_reason, a body that just ends is complete
            if scope.cancelled_caught:
                failure = UpstreamFailure("stream_stall", f"no chunk for {idle:g} s")
            if failure is not None:
                for out in await self._go_on(segment, failure):
                    yield out
                continue
            if payload is None:
                return
            if keep:
                rewriter = segment.rewriter
                if rewriter is None:
                    yield payload
                elif (rewritten := rewriter.apply(payload)) is not None:  # caught up: it can't diverge
                    yield rewritten

    async def _go_on(self, segment: Segment, failure: UpstreamFailure) -> list[bytes]:
        """The provider broke: continue from the next one (its first payloads), or raise."""
        self._reported = True
        if self._continuation is not None:
            attempt = self._continuation.failed(segment, failure)
        else:
            attempt = self._reporter.failed(segment.provider, self.model, self.request_id, failure, 1,
                                            segment.started, stream=True, last_resort=segment.last_resort,
                                            deployment=segment.deployment).attempt
            self.attempt_log.append(attempt)
        await segment.stack.aclose()
        segment.part.chars = len(segment.text)
        self._tool_calls = self._tool_calls or segment.tool_calls
        shown = self.partial_text
        reason = ""
        if self._continuation is None:
            reason = "continuation is off"
        elif self._tool_calls:
            reason = "the partial answer holds tool calls, which cannot be continued"
        else:
            try:
                nxt = await self._continuation.next(shown, self.parts)
            except AllProvidersFailedError as exc:
                reason = f"no provider could go on with it ({exc.reason})" if exc.reason else \
                    "no provider could go on with it"
            except Diverged as exc:
                reason = str(exc)
            else:
                self._before, self._segment, self._reported = shown, nxt, False
                pending, nxt.pending = nxt.pending, []
                return pending
        await self._reporter.settle()  # the caller learns of it once the state it caused is saved
        raise StreamInterruptedError(segment.provider, shown, attempt, len(self.attempt_log), reason)
