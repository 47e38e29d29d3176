"""Going on with a stream that broke after the caller had part of it, from the next provider.

A stream that breaks mid-answer (its connection cut, no chunk for
``stream_idle_timeout_s``, an in-band error, garbage) is continued, so the
caller sees one whole answer. Each provider says how (``prefill``):

- **prefill**: the conversation plus the text so far as a trailing assistant
  message; the provider streams only the rest. A 400 to that is a refusal,
  not the caller's error: the same provider is asked again by splicing, and
  with ``prefill = "auto"`` the refusal is remembered for that model
  (:class:`~actors.messages.PrefillRefused`, kept in the state file's log).
- **splice**: the request again, unchanged; its text is dropped while it is
  exactly what the caller already has, and the rest streams on. If it says
  anything else (other text, a tool call, an end before it caught up), the
  stream ends with :class:`~actors.errors.StreamInterruptedError`: a
  truncated or contradictory answer is never presented as whole.

A partial answer that holds tool-call deltas is never continued (the
caller's chunks would not add up to one call). The final chunks of a
continued stream carry ``x_fallback.parts``: who produced how many
characters of the answer, and how.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.errors import Attempt
from actors.core.messages import PrefillRefused
from actors.edges.providers.base import Adapter, UpstreamFailure
from actors.runtime.admission import Admission
from actors.runtime.chunks import StreamReader
from actors.runtime.plan import NextTry, Plan

__all__ = ("Continuation", "Diverged", "Part", "Rewriter", "Segment")

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

How = Literal["first", "prefill", "splice"]


class Diverged(Exception):
    """A restarted answer does not repeat what the caller already has."""


@dataclass(slots=True)
class Part:
    """Who produced one stretch of a stream's answer."""

    provider: str
    model: str  # the upstream model
    how: How
    chars: int = 0

    def public(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "how": self.how, "chars": self.chars}


class Rewriter:
    """A continuation's chunks as the caller gets them: without what it has, its role, or empty deltas.

    ``skip`` is the text to drop from the start. ``strict`` (splice): any
    difference from it is :class:`Diverged`; otherwise (the whitespace a
    prefill could not carry) skipping just stops at the first difference.
    """

    __slots__ = ("_parts", "_pending", "_strict", "part", "text", "tool_calls")

    def __init__(self, skip: str, *, strict: bool, part: Part, parts: list[Part]) -> None:
        self._pending = skip
        self._strict = strict
        self.part = part
        self._parts = parts
        self.text: list[str] = []  # what it passed on
        self.tool_calls = False

    def _take(self, content: str) -> str:
        pending = self._pending
        if not pending:
            return content
        n = min(len(pending), len(content))
        if content[:n] == pending[:n]:
            self._pending = pending[n:]
            return content[n:]
        if self._strict:
            raise Diverged("the restarted answer says something else than the text already sent")
        same = next((i for i in range(n) if content[i] != pending[i]), n)
        self._pending = ""
        return content[same:]

    def apply(self, payload: bytes) -> bytes | None:
        """The payload to pass on (None: nothing in it for the caller); raises Diverged."""
        chunk = _decode(payload)
        if not isinstance(chunk, dict):
            return None
        choices = chunk.get("choices")
        useful = bool(chunk.get("usage"))
        ended = False
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            delta = first.get("delta")
            if isinstance(delta, dict):
                delta.pop("role", None)
                useful = self._delta(delta) or useful
            if first.get("finish_reason"):
                if self._pending and self._strict:
                    raise Diverged("the restarted answer ended before it repeated the text already sent")
                ended = useful = True
        if not useful:
            return None
        if ended or chunk.get("usage"):
            self.part.chars = len("".join(self.text))
            chunk["x_fallback"] = {"continued": True, "parts": [p.public() for p in self._parts]}
        return _encode(chunk)

    def _delta(self, delta: dict[str, Any]) -> bool:
        content = delta.get("content")
        useful = False
        if isinstance(content, str) and content:
            new = self._take(content)
            delta["content"] = new
            if new:
                self.text.append(new)
                useful = True
        catching_up = bool(self._pending) and self._strict
        if delta.get("tool_calls"):
            if catching_up:
                raise Diverged("the restarted answer makes a tool call where the answer had text")
            self.tool_calls = useful = True
        for key in ("reasoning", "reasoning_content"):
            if delta.get(key):
                if catching_up:
                    delta.pop(key)  # the caller saw the reasoning of the first answer
                else:
                    useful = True
        return useful


@dataclass(slots=True)
class Segment:
    """One provider's stretch of a stream: its upstream, what it said, how its chunks are rewritten."""

    part: Part
    reader: StreamReader
    chunks: AsyncIterator[bytes]
    stack: AsyncExitStack
    started: float  # time.perf_counter() at its start
    last_resort: bool = False
    rewriter: Rewriter | None = None  # None: the first provider, passed through as it is
    pending: list[bytes] = field(default_factory=list)  # rewritten payloads to pass on first
    deployment: str = ""  # its deployment record, when the provider serves several models

    @property
    def provider(self) -> str:
        return self.part.provider

    @property
    def text(self) -> str:
        """What the caller got from this segment."""
        return "".join(self.rewriter.text) if self.rewriter is not None else self.reader.text

    @property
    def tool_calls(self) -> bool:
        return self.rewriter.tool_calls if self.rewriter is not None else self.reader.tool_calls


class _Refused(Exception):
    """A 400 to a prefill."""


class Continuation:
    """What a :class:`~actors.replies.ChatStream` asks when its provider broke: the next segment."""

    def __init__(self, *, plan: Plan, adapters: Mapping[str, Adapter], body: dict[str, Any],
                 clock: Clock, bus: Bus, idle_timeout_s: float, refused: set[tuple[str, str]],
                 admission: Admission | None = None) -> None:
        self.plan = plan
        self._admission = admission
        self._adapters = adapters
        self._body = body
        self._clock = clock
        self._bus = bus
        self._idle = idle_timeout_s
        self._refused = refused  # (provider, upstream model) that refused a prefill ("auto" learns)

    def failed(self, segment: Segment, failure: UpstreamFailure) -> Attempt:
        """Count a break: the provider is set aside and the next one goes on with the answer."""
        return self.plan.failed(segment.provider, failure, segment.started, mid_stream=True)

    def _prefills(self, step: NextTry) -> bool:
        setting = step.provider.prefill
        if setting != "auto":
            return setting
        upstream = step.provider.models[self.plan.model]
        return step.provider.kind == "anthropic" and (step.name, upstream) not in self._refused

    async def next(self, shown: str, parts: list[Part]) -> Segment:
        """Open the next provider and read it until it has something new for the caller.

        Raises AllProvidersFailedError when none is left, Diverged when a restart says otherwise.
        """
        while True:
            step = await self.plan.next()
            prefill = self._prefills(step)
            while True:
                try:
                    segment = await self._open(step, shown, prefill, parts)
                except _Refused as refusal:
                    self._learn(step, str(refusal))
                    prefill = False
                    continue
                except UpstreamFailure as failure:
                    self.plan.failed(step.name, failure, step.started, mid_stream=True)
                    break
                segment.last_resort = step.name in self.plan.last_resort
                self.plan.answered()
                return segment

    def _learn(self, step: NextTry, message: str) -> None:
        upstream = step.provider.models[self.plan.model]
        if step.provider.prefill == "auto":
            self._refused.add((step.name, upstream))
        self._bus.tell(PrefillRefused(at=self._clock.now(), provider=step.name, model=upstream,
                                      request_id=self.plan.request_id, message=message[:300]))

    async def _open(self, step: NextTry, shown: str, prefill: bool, parts: list[Part]) -> Segment:
        body, upstream = self._body, step.provider.models[self.plan.model]
        part = Part(step.name, upstream, "prefill" if prefill else "splice")
        if prefill:
            head = shown.rstrip()  # Anthropic refuses a prefill that ends in whitespace
            messages = body.get("messages")
            body = {**body, "messages": [*(messages if isinstance(messages, list) else ()),
                                         {"role": "assistant", "content": head}]}
            rewriter = Rewriter(shown[len(head):], strict=False, part=part, parts=parts)
        else:
            rewriter = Rewriter(shown, strict=True, part=part, parts=parts)
        reader, stack = StreamReader(), AsyncExitStack()
        segment = Segment(part, reader, _nothing(), stack, step.started, rewriter=rewriter,
                          deployment=self.plan.deployments.get(step.name, ""))
        parts.append(part)
        clock, provider = self._clock, step.provider
        token_deadline = min(step.deadline, clock.now() + provider.first_token_timeout_s)
        try:
            with clock.move_on_at(token_deadline) as scope:
                ticket = self._admission.admit(step.name, upstream, self.plan.need) \
                    if self._admission is not None else None
                segment.chunks = await stack.enter_async_context(
                    self._adapters[step.name].stream(body, upstream, seen=ticket.seen if ticket else None))
            if scope.cancelled_caught:
                raise UpstreamFailure("timeout", f"no answer within {provider.first_token_timeout_s:g} s")
            while not (rewriter.text or rewriter.tool_calls or reader.finished):
                payload = await self._read(segment, token_deadline if not reader.tokens else None)
                if payload is None:
                    break
                if reader.take(payload) and (out := rewriter.apply(payload)) is not None:
                    segment.pending.append(out)
        except BaseException as exc:
            parts.remove(part)
            await stack.aclose()
            if isinstance(exc, UpstreamFailure) and prefill and exc.status == 400 \
                    and exc.code != "context_length_exceeded":
                raise _Refused(exc.message) from exc
            if isinstance(exc, Diverged):  # it answered; it just said something else
                self.plan.reporter.succeeded(provider=step.name, model=self.plan.model,
                                             request_id=self.plan.request_id, stream=True,
                                             latency_ms=(time.perf_counter() - step.started) * 1000.0,
                                             deployment=segment.deployment)
            raise
        return segment

    async def _read(self, segment: Segment, deadline: float | None) -> bytes | None:
        """The next payload within the first-token deadline or the idle limit; None at a clean end."""
        clock = self._clock
        with clock.move_on_at(deadline if deadline is not None else clock.now() + self._idle):
            try:
                return await segment.chunks.__anext__()
            except StopAsyncIteration:
                if segment.reader.finished:
                    return None
                raise UpstreamFailure("stream_cut", "the stream ended before it went on") from None
            except UpstreamFailure as exc:
                if exc.kind == "stream_cut" and segment.reader.finished:
                    return None
                raise
        if deadline is not None:
            raise UpstreamFailure("timeout", "no first token in time")
        raise UpstreamFailure("stream_stall", f"no chunk for {self._idle:g} s")


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover
