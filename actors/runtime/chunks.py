"""What a stream has said so far, read chunk by chunk: text, tokens, its end, broken events.

:class:`StreamReader` is pure state over the ``data:`` payloads of an OpenAI
``chat.completion.chunk`` stream. The request path asks it whether a first
token has come (content, a tool-call delta or reasoning: role-only and empty
deltas are not tokens), whether the stream finished (a ``finish_reason``: a
body that ends after it is complete with or without ``[DONE]``), and what to
do with a malformed event (the first is skipped and counted, as every peer
gateway does; a second in one stream is garbage).
"""

from __future__ import annotations

from typing import Any

import msgspec

from actors.edges.providers.base import UpstreamFailure

__all__ = ("MAX_BAD_CHUNKS", "StreamReader")

#: Malformed events one stream may send before it counts as garbage.
MAX_BAD_CHUNKS = 1


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[Any] | None = None
    reasoning: str | None = None  # OpenRouter and others
    reasoning_content: str | None = None  # DeepSeek, vLLM


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_decode = msgspec.json.Decoder(_Chunk).decode


class StreamReader:
    """The state of one stream, from its chunks (see the module doc)."""

    __slots__ = ("bad_chunks", "finished", "parts", "tokens", "tool_calls")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tokens = False  # a content, tool-call or reasoning delta has come
        self.tool_calls = False  # the partial answer holds tool-call deltas
        self.finished = False  # a finish_reason has come: the answer is whole
        self.bad_chunks = 0

    @property
    def text(self) -> str:
        """The content so far (the first choice's)."""
        return "".join(self.parts)

    def take(self, payload: bytes) -> bool:
        """Read one payload; True to pass it on, False to skip it (one malformed event).

        Raises UpstreamFailure ``bad_response`` at the second malformed event.
        """
        try:
            chunk = _decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.bad_chunks += 1
            if self.bad_chunks > MAX_BAD_CHUNKS:
                raise UpstreamFailure("bad_response", f"{self.bad_chunks} stream events are not valid"
                                                      " chat.completion.chunk JSON") from None
            return False
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    self.parts.append(delta.content)
                    self.tokens = True
                if delta.tool_calls:
                    self.tool_calls = self.tokens = True
                if delta.reasoning or delta.reasoning_content:
                    self.tokens = True
            if choice.finish_reason:
                self.finished = True
        return True
