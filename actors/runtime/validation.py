"""Checking a caller's chat request before any provider sees it.

A malformed request is the caller's to fix: it raises
:class:`~actors.errors.InvalidRequestError` naming the field
(``messages[1].role``) and never reaches, or penalises, a provider. Fields we
do not know pass through untouched (providers add parameters faster than we
could list them).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from actors.core.errors import InvalidRequestError

__all__ = ("ChatMessage", "ChatRequest", "check_request", "decode_request")

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(msgspec.Struct):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatRequest(msgspec.Struct):
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    model: str | None = None
    stream: bool = False
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    user: str | None = None


_decoder = msgspec.json.Decoder(ChatRequest)
_PATH = re.compile(r"(.*) - at `\$\.?(.*)`$")


def _invalid(exc: msgspec.MsgspecError) -> InvalidRequestError:
    text = str(exc)
    match = _PATH.match(text)
    if match is not None:
        reason, field = match.group(1), match.group(2) or None
    elif isinstance(exc, msgspec.ValidationError):  # at the top level msgspec names no path
        reason, field = text, None
    else:
        return InvalidRequestError(f"the body is not valid JSON: {text}")
    missing = re.match(r"Object missing required field `(.+)`", reason)
    if missing:
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
        return InvalidRequestError(f"'{field}' is required", param=field)
    if reason.startswith("Expected `array` of length >= 1"):
        return InvalidRequestError(f"'{field}' must not be empty", param=field)
    reason = reason[0].lower() + reason[1:]
    return InvalidRequestError(f"'{field}': {reason}", param=field)


def decode_request(raw: bytes) -> ChatRequest:
    """Validate a JSON body; raise InvalidRequestError naming the bad field."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"the body is not valid JSON: {exc}") from None


def check_request(body: Any) -> ChatRequest:
    """Validate an already-parsed body (a dict); raise InvalidRequestError naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequestError(f"the request must be a JSON object, got {type(body).__name__}")
    try:
        return msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
