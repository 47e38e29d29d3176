"""Scripted answers for :class:`~actors.testing.FakeUpstream`: what a fake provider does next.

Build them with :func:`ok`, :func:`error`, :func:`hang`, :func:`reset`,
:func:`cut_stream`, :func:`stall_stream`, :func:`garbage` and
:func:`context_length_exceeded`; each returns a frozen :class:`Fault`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

__all__ = (
    "ERROR_DEFAULTS",
    "GARBAGE_BODIES",
    "Fault",
    "FaultKind",
    "GarbageKind",
    "context_length_exceeded",
    "cut_stream",
    "error",
    "garbage",
    "hang",
    "ok",
    "reset",
    "stall_stream",
)

FaultKind = Literal["ok", "error", "hang", "reset", "cut_stream", "stall_stream", "garbage"]
GarbageKind = Literal["html", "invalid_json", "wrong_shape", "truncated", "empty"]

_DEFAULT_TEXT = "Hello from fake"
# (message, type, code) per status, as the OpenAI API spells them.
ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: ("The model does not exist or you do not have access to it.",
          "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded, please try again later.", "server_error", "overloaded"),
    504: ("Gateway timeout.", "server_error", None),
}
GARBAGE_BODIES: dict[str, tuple[str, str]] = {
    "html": ("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
             "<hr><center>nginx</center></body></html>", "text/html"),
    "invalid_json": ('{"choices": [', "application/json"),
    "wrong_shape": ('{"result": "ok"}', "application/json"),
    "empty": ("", "application/json"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """One scripted answer; build it with :func:`ok`, :func:`error`, :func:`hang`, ..."""

    kind: FaultKind
    text: str = _DEFAULT_TEXT
    chunks: int = 4
    usage: bool = True
    delay_s: float = 0.0
    status: int = 200
    message: str = ""
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | str | None = None
    after: int = 0
    garbage: GarbageKind = "html"
    done: bool = True  # a stream ends with data: [DONE]
    malformed: tuple[int, ...] = ()  # a stream sends a malformed event before these chunks
    first_token_after_s: float = 0.0  # a stream sends its role and keep-alives, content only after this
    tool: str | None = None  # answer with a call of this function, ``text`` being its JSON arguments


def ok(text: str = _DEFAULT_TEXT, *, chunks: int = 4, usage: bool = True, delay_s: float = 0.0,
       done: bool = True, malformed: tuple[int, ...] = (), first_token_after_s: float = 0.0,
       tool: str | None = None) -> Fault:
    """Answer normally: a chat.completion, or `chunks` SSE chunks when the request streams.

    Streams can misbehave while still answering in full: ``done=False`` ends
    the body after the finish_reason without ``data: [DONE]``; ``malformed``
    sends one broken event before each of those chunk indexes;
    ``first_token_after_s`` sends the role and ``: keep-alive`` comments at
    once and the first content only after that long (real time). ``tool``
    answers with a call of that function instead, ``text`` being its arguments.
    """
    if chunks < 1:
        raise ValueError("chunks must be at least 1")
    return Fault(kind="ok", text=text, chunks=chunks, usage=usage, delay_s=delay_s, done=done,
                 malformed=tuple(malformed), first_token_after_s=first_token_after_s, tool=tool)


def error(status: int, message: str = "", *, code: str | None = None, type: str | None = None,
          retry_after: float | str | None = None, param: str | None = None) -> Fault:
    """Answer `status` with an OpenAI error body (``param``: the field it is about) and a Retry-After."""
    phrase = HTTPStatus(status).phrase if status in set(HTTPStatus) else "Error"
    default_message, default_type, default_code = ERROR_DEFAULTS.get(
        status, (phrase, "server_error" if status >= 500 else "invalid_request_error", None))
    return Fault(kind="error", status=status, message=message or default_message,
                 type=type or default_type, code=code or default_code, retry_after=retry_after,
                 param=param)


def context_length_exceeded() -> Fault:
    """Answer 400 ``context_length_exceeded`` the way OpenAI does."""
    return Fault(kind="error", status=400, type="invalid_request_error",
                 code="context_length_exceeded", param="messages",
                 message="This model's maximum context length is 8192 tokens. However, your "
                         "messages resulted in 9000 tokens. Please reduce the length of the "
                         "messages.")


def hang() -> Fault:
    """Read the request and never answer, until released or closed; then drop the connection."""
    return Fault(kind="hang")


def reset() -> Fault:
    """Reset the TCP connection without sending any HTTP response."""
    return Fault(kind="reset")


def cut_stream(after: int, *, text: str = _DEFAULT_TEXT, chunks: int | None = None,
               tool: str | None = None) -> Fault:
    """Stream `after` content chunks of `text`, then close the connection without ``[DONE]``.

    The text is split into `chunks` pieces (default ``after + 1``, so content is always lost).
    With ``tool``, the chunks are the arguments of a call of that function.
    """
    return dataclasses.replace(_stream_fault("cut_stream", after, text, chunks), tool=tool)


def stall_stream(after: int, *, text: str = _DEFAULT_TEXT, chunks: int | None = None) -> Fault:
    """Stream `after` content chunks of `text`, then go silent until released or closed."""
    return _stream_fault("stall_stream", after, text, chunks)


def garbage(kind: GarbageKind = "html", *, status: int = 200) -> Fault:
    """Answer `status` with a body no OpenAI client can parse."""
    return Fault(kind="garbage", garbage=kind, status=status)


def _stream_fault(kind: FaultKind, after: int, text: str, chunks: int | None) -> Fault:
    total = after + 1 if chunks is None else chunks
    if not 0 <= after <= total or total < 1:
        raise ValueError("need 0 <= after <= chunks and chunks >= 1")
    return Fault(kind=kind, after=after, text=text, chunks=total)


