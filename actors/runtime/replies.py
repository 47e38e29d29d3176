"""What a chat call hands back: a finished :class:`ChatReply`, or a :class:`ChatStream` already answering.

The request path (``request.py``) builds these once a provider has answered;
a stream keeps reporting through the :class:`~actors.runtime.outcomes.Reporter`
it is handed (success when closed, a typed error with the partial text if it
breaks after the first chunk). It knows nothing else of the request path.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import cached_property
from typing import Any

import msgspec

from actors.core.errors import Attempt, StreamInterruptedError
from actors.edges.providers.base import UpstreamFailure
from actors.runtime.chunks import StreamReader
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
    context manager so the upstream connection is released. A failure from
    here on raises :class:`StreamInterruptedError` with the partial text.
    """

    def __init__(
        self,
        reporter: Reporter,
        *,
        idle_timeout_s: float,
        provider: str,
        model: str,
        request_id: str,
        first: list[bytes],
        reader: StreamReader,
        chunks: AsyncIterator[bytes],
        stack: AsyncExitStack,
        attempt_log: list[Attempt],
        started: float,
        last_resort: bool = False,
    ) -> None:
        self._reporter = reporter
        self._idle_timeout_s = idle_timeout_s
        self.last_resort = last_resort
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self._first = first  # what came up to and with the first token
        self._reader = reader
        self._chunks = chunks
        self._stack = stack
        self.attempt_log = attempt_log
        self.attempts = len(attempt_log) + 1
        self._started = started
        self._ttfb_ms = (time.perf_counter() - started) * 1000.0
        self._reported = False

    @property
    def partial_text(self) -> str:
        return self._reader.text

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the upstream; a stream that did not fail counts as a success."""
        if not self._reported:
            self._reported = True
            self._reporter.succeeded(provider=self.provider, model=self.model, request_id=self.request_id,
                                     latency_ms=self._ttfb_ms, stream=True, last_resort=self.last_resort,
                                     bad_chunks=self._reader.bad_chunks)
        await self._stack.aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        reporter, clock, reader = self._reporter, self._reporter.clock, self._reader
        first, self._first = self._first, []
        for early in first:
            yield early
        idle = self._idle_timeout_s
        while True:
            failure: UpstreamFailure | None = None
            payload: bytes | None = None
            keep = True
            with clock.move_on_at(clock.now() + idle) as scope:
                try:
                    payload = await self._chunks.__anext__()
                    keep = reader.take(payload)
                except StopAsyncIteration:
                    pass
                except UpstreamFailure as exc:
                    if not (exc.kind == "stream_cut" and reader.finished):
                        failure = exc  # after a finish_reason, a body that just ends is complete
            if scope.cancelled_caught:
                failure = UpstreamFailure("stream_stall", f"no chunk for {idle:g} s")
            if failure is not None:
                self._reported = True
                attempt = reporter.failed(
                    self.provider, self.model, self.request_id, failure, 1, self._started, stream=True,
                    last_resort=self.last_resort,
                ).attempt
                await self.aclose()
                await reporter.settle()  # the caller learns of it once the state it caused is saved
                raise StreamInterruptedError(self.provider, self.partial_text, attempt, self.attempts)
            if payload is None:
                return
            if keep:
                yield payload
