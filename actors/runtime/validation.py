"""Checking a caller's chat request before any provider sees it.

A malformed request is the caller's to fix: it raises
:class:`~actors.errors.InvalidRequestError` naming the field
(``messages[1].role``) and never reaches, or penalises, a provider. Fields we
do not know pass through untouched (providers add parameters faster than we
could list them).

:func:`parse_request` is the gateway's one parse of a body: the raw bytes are
decoded once into the dict the supervisor gets, and that same dict is
validated. The body must be a JSON object of valid UTF-8 (every string, known
field or not) nesting at most :data:`MAX_DEPTH` arrays/objects.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from actors.core.errors import InvalidRequestError

__all__ = ("MAX_DEPTH", "ChatMessage", "ChatRequest", "check_request", "decode_request", "parse_request")

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


MAX_DEPTH = 64  # arrays/objects nested in a request body, the body's own object counting as 1

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode  # built once: decode(type=...) costs 5x per call
_LONE_SURROGATE = re.compile(rb"(?<!\\)\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
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


def parse_request(raw: bytes) -> dict[str, Any]:
    """Decode a JSON body once and validate it: the dict to hand to the supervisor.

    Raises InvalidRequestError naming what is wrong: not UTF-8 (and where),
    not JSON, not an object, nested deeper than :data:`MAX_DEPTH`, or a field.
    """
    body = _decode(raw)
    if len(raw) > 2 * MAX_DEPTH and _deeper(body):  # shorter JSON cannot nest deeper
        raise _too_deep(body)
    try:
        msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    return body


def decode_request(raw: bytes) -> ChatRequest:
    """Validate a JSON body as :func:`parse_request` does; raise InvalidRequestError naming the field."""
    return check_request(parse_request(raw))  # validated twice: use parse_request where speed matters


def check_request(body: Any) -> ChatRequest:
    """Validate an already-parsed body (a dict); raise InvalidRequestError naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequestError(f"the request must be a JSON object, got {type(body).__name__}")
    try:
        return msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body: dict[str, Any] = _decode_object(raw)
    except RecursionError:  # msgspec recurses up to Python's recursion limit (~1000), then raises this
        raise _deep() from None
    except msgspec.ValidationError as exc:  # from the JSON alone: the top level, or a number
        reason = str(exc).split(" - at `", 1)[0]
        if reason.startswith("Expected `object`, got "):
            got = reason.removeprefix("Expected `object`, got ").strip("`")
            raise InvalidRequestError(f"the request body must be a JSON object, got {got}") from None
        raise InvalidRequestError(f"the body is not valid JSON for this service: {reason}") from None
    except msgspec.DecodeError as exc:
        raise _undecodable(raw, str(exc)) from None
    return body


def _undecodable(raw: bytes, reason: str) -> InvalidRequestError:
    """Why ``raw`` is not JSON, with a byte offset where one can be found."""
    if not raw.strip():
        return InvalidRequestError("the request body is empty: send a JSON object")
    try:
        raw.decode()
    except UnicodeDecodeError as bad:
        return InvalidRequestError(f"the body is not valid UTF-8 JSON: byte {bad.start} "
                                   f"(0x{raw[bad.start]:02x}) is not UTF-8 ({bad.reason})")
    if reason == "Input data was truncated":  # msgspec also says so of a lone \ud800 escape
        lone = _LONE_SURROGATE.search(raw)
        if lone is not None:
            return InvalidRequestError(f"the body is not valid JSON: the escape at byte {lone.start()} "
                                       "is half a UTF-16 surrogate pair (\\ud800-\\udbff must be "
                                       "followed by \\udc00-\\udfff)")
        return InvalidRequestError("the body is not valid JSON: it ends before the JSON does (truncated)")
    return InvalidRequestError(f"the body is not valid JSON: {reason}")


def _deep(where: str = "", param: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(f"the body nests arrays/objects deeper than {MAX_DEPTH} levels{where}; "
                               f"at most {MAX_DEPTH} are accepted", param=param)


def _too_deep(body: dict[str, Any]) -> InvalidRequestError:
    """The error for a ``body`` nested too deep, naming the top-level key that is."""
    key = next((key for key, value in body.items() if _deeper({key: value})), None)
    return _deep(f" (under '{key}')", param=key) if key is not None else _deep()


def _deeper(body: dict[str, Any]) -> bool:
    """True when ``body`` nests more than MAX_DEPTH containers, walked a level at a time."""
    level: list[Any] = [body]
    for _ in range(MAX_DEPTH):  # ``level`` holds the containers at depth 1, 2, ... MAX_DEPTH
        below: list[Any] = []
        keep = below.append
        for node in level:
            for value in (node.values() if type(node) is dict else node):
                if type(value) is dict or type(value) is list:  # the only containers msgspec decodes to
                    keep(value)
        if not below:
            return False
        level = below
    return True
