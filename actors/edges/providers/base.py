"""What every upstream adapter shares: the failure it raises, and parsing helpers.

Adapters translate; they hold no policy. A failure leaves an adapter as an
:class:`UpstreamFailure` (translated from aiohttp/OS errors with
``raise ... from exc``), which the request path turns into an
:class:`~actors.messages.AttemptFailed` message.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import aiohttp
import msgspec

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.core.states import FailureKind

__all__ = (
    "Adapter",
    "HttpAdapter",
    "Seen",
    "UpstreamFailure",
    "error_details",
    "error_param",
    "parse_retry_after",
    "redact",
)


class UpstreamFailure(Exception):
    """An attempt at one provider failed; ``kind`` says how (see FailureKind)."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s
        self.body = body


#: Told the response headers of a completion call (2xx or not) as soon as they arrive: the
#: request path reads rate-limit headroom from them (actors.core.ratelimits).
Seen = Callable[[Mapping[str, str]], None]


class Adapter(Protocol):
    """One upstream provider, spoken to in its own dialect."""

    config: ProviderConfig

    async def complete(self, body: dict[str, Any], model: str, *, seen: Seen | None = None) -> bytes:
        """POST a chat completion; return the OpenAI-shaped JSON body."""
        ...

    def stream(
        self, body: dict[str, Any], model: str, *, seen: Seen | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open a streamed completion; iterate OpenAI chunk JSON payloads."""
        ...

    async def ping(self) -> None:
        """Raise UpstreamFailure unless the server answers HTTP at all."""
        ...

    async def check(self) -> None:
        """Raise UpstreamFailure unless an authenticated listing call works."""
        ...


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date) or retry-after-ms."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


class _ErrorBody(msgspec.Struct):
    error: Any = None
    message: Any = None
    detail: Any = None
    code: Any = None  # Snowflake's ErrorResponse: {"message": ..., "code": "390144", "request_id": ...}


# Google APIs (Vertex AI) may answer a list of errors: [{"error": {"code": 429, "status": ...}}].
_error_decoder = msgspec.json.Decoder(_ErrorBody | list[_ErrorBody])


def _decode_error(body: bytes) -> _ErrorBody:
    parsed = _error_decoder.decode(body)
    if isinstance(parsed, list):
        return parsed[0] if parsed else _ErrorBody()
    return parsed
_TAGS = re.compile(r"<[^>]+>")


def error_details(body: bytes) -> tuple[str, str | None]:
    """The human message and the machine code of an upstream error body, whatever its shape."""
    try:
        parsed = _decode_error(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = _TAGS.sub(" ", body[:2000].decode("utf-8", "replace"))
        return " ".join(text.split())[:300] or "(empty body)", None
    err = parsed.error
    if isinstance(err, dict):
        # Google's {"code": 429, "status": "RESOURCE_EXHAUSTED"}: the status is the machine code.
        status = err.get("status")
        code = status if isinstance(status, str) else err.get("code") or err.get("type")
        message = err.get("message") or err.get("msg") or ""
        return str(message)[:500], None if code is None else str(code)
    top = parsed.code if isinstance(parsed.code, str | int) else None
    for candidate in (err, parsed.message, parsed.detail):
        if isinstance(candidate, str) and candidate:
            return candidate[:500], None if top is None else str(top)
    return body[:300].decode("utf-8", "replace"), None


def error_param(body: bytes) -> str | None:
    """The request field an error body names (OpenAI's ``error.param``), if any."""
    try:
        parsed = _decode_error(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    err = parsed.error
    param = err.get("param") if isinstance(err, dict) else None
    return param if isinstance(param, str) and param else None


def redact(text: str, secret: str | None) -> str:
    """Remove a secret from text that may be shown to people (upstreams echo keys)."""
    if secret and len(secret) >= 4 and secret in text:
        return text.replace(secret, "***")
    return text


_MAX_ERROR_BODY = 64 * 1024


class HttpAdapter:
    """What the HTTP adapters share: the key, the base URL, and failure translation."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.config = config
        self.session = session
        self.clock = clock
        self._key = config.api_key.reveal() if config.api_key else None
        self._base = config.base_url.rstrip("/")

    def _connect_failure(self, exc: BaseException) -> UpstreamFailure:
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamFailure("bad_response", f"truncated response body: {exc}")
        text = redact(str(exc) or type(exc).__name__, self._key)
        return UpstreamFailure("connect", f"{type(exc).__name__}: {text}")

    async def _error_body(self, resp: aiohttp.ClientResponse) -> tuple[bytes, str, str | None]:
        """The (redacted) error body of a failed answer, its message and its code."""
        try:
            body = await resp.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, OSError, RuntimeError):
            body = b""
        message, code = error_details(body)
        # A 4xx body may go back to the caller: never with our key in it.
        body = redact(body.decode("utf-8", "replace"), self._key).encode()
        return body, redact(message, self._key), code

    async def _http_failure(self, resp: aiohttp.ClientResponse) -> UpstreamFailure:
        """Translate a non-2xx answer (each dialect may refine the code)."""
        body, message, code = await self._error_body(resp)
        return UpstreamFailure(
            "http",
            message,
            status=resp.status,
            code=code,
            retry_after_s=parse_retry_after(resp.headers, self.clock.now()),
            body=body if resp.status < 500 else b"",
        )

    @staticmethod
    def _check_json(resp: aiohttp.ClientResponse) -> None:
        if "html" in resp.headers.get("Content-Type", ""):
            raise UpstreamFailure("bad_response", f"HTTP {resp.status} with an HTML page instead of JSON")

    async def _post_json(self, url: str, payload: bytes, headers: Mapping[str, str],
                         seen: Seen | None = None) -> bytes:
        """POST and return a 2xx JSON body; every failure leaves as an UpstreamFailure."""
        try:
            async with self.session.post(url, data=payload, headers=headers) as resp:
                if seen is not None:
                    seen(resp.headers)
                if resp.status >= 300:
                    raise await self._http_failure(resp)
                self._check_json(resp)
                return await resp.read()
        except UpstreamFailure:
            raise
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            # uvloop raises RuntimeError where asyncio raises OSError (aiohappyeyeballs).
            raise self._connect_failure(exc) from exc

    @asynccontextmanager
    async def _open_stream(
        self, url: str, payload: bytes, headers: Mapping[str, str], seen: Seen | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a streamed request; yield the 2xx response, released on exit."""
        try:
            resp = await self.session.post(url, data=payload, headers=headers)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise self._connect_failure(exc) from exc
        try:
            if seen is not None:
                seen(resp.headers)
            if resp.status >= 300:
                raise await self._http_failure(resp)
            self._check_json(resp)
            yield resp
        finally:
            resp.release()
