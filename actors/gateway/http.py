"""Answers and errors of the gateway: OpenAI-shaped JSON for every failure, never a traceback.

:func:`failure` maps each exception a handler can meet to its HTTP status and
OpenAI error shape (``{"error": {"message", "type", "code", "param"}}``);
:func:`errors` is the middleware that applies it to whatever a handler raises.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from actors.core.errors import (
    AllProvidersFailedError,
    FallbackError,
    InvalidRequestError,
    SupervisorClosedError,
    UnknownModelError,
    UnknownProviderError,
    UpstreamRejectedError,
)

__all__ = ("ATTEMPTS", "PROVIDER", "GatewayError", "HTTPError", "errors", "failure", "json_response",
           "sse_error", "too_large")

log = logging.getLogger("actors.gateway")
PROVIDER, ATTEMPTS = "x-fallback-provider", "x-fallback-attempts"
_encode = msgspec.json.Encoder().encode
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayError(FallbackError):
    """Raised by :func:`serve` when the service cannot start (the port is taken, ...)."""


class HTTPError(Exception):
    """An answer for the client, raised from anywhere in a handler."""

    def __init__(self, status: int, message: str, *, code: str | None, type: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type, param


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encode(data), status=status, content_type="application/json", headers=headers)


def _error(status: int, message: str, *, type: str, code: str | None, param: str | None = None,
           headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = {"error": {"message": message, "type": type, "code": code, "param": param, **extra}}
    return json_response(body, status, headers)


def _upstream_code_param(body: bytes) -> tuple[str | None, str | None]:
    """The ``code`` and ``param`` of a provider's OpenAI-shaped error body, when it has one."""
    try:
        err = msgspec.json.decode(body).get("error") if body else None
    except (msgspec.DecodeError, AttributeError):
        return None, None
    if not isinstance(err, dict):
        return None, None
    code, param = err.get("code"), err.get("param")
    return (None if code is None else str(code)), (param if isinstance(param, str) else None)


def failure(exc: Exception, *, completion: bool) -> web.Response:
    """The OpenAI-shaped answer for an exception; completions also learn the attempt count."""
    none = {ATTEMPTS: "0"} if completion else {}
    match exc:
        case HTTPError():
            return _error(exc.status, exc.message, type=exc.type, code=exc.code, param=exc.param,
                          headers=none)
        case InvalidRequestError():
            return _error(400, str(exc), type="invalid_request_error", code="invalid_request",
                          param=exc.param, headers=none)
        case UnknownModelError():
            return _error(404, str(exc), type="invalid_request_error", code="model_not_found",
                          param="model", headers=none)
        case UnknownProviderError():
            return _error(404, str(exc), type="invalid_request_error", code="provider_not_found")
        case UpstreamRejectedError():
            code, param = _upstream_code_param(exc.body)
            # The exception does not carry the attempt log: 1 unless it ever does.
            tries = getattr(exc, "attempts", None)
            count = len(tries) if isinstance(tries, list) else 1
            return _error(exc.status if exc.status >= 400 else 400, str(exc), type="invalid_request_error",
                          code=code, param=param, headers={PROVIDER: exc.provider, ATTEMPTS: str(count)})
        case AllProvidersFailedError():
            log.warning("%s", exc)
            attempts = [{"provider": a.provider, "status": a.status, "category": a.category,
                         "message": a.message} for a in exc.attempts]
            return _error(503, str(exc), type="server_error", code="all_providers_failed",
                          headers={ATTEMPTS: str(len(exc.attempts))}, attempts=attempts)
        case SupervisorClosedError():
            return _error(503, f"the service is shutting down: {exc}", type="server_error",
                          code="shutting_down", headers=none)
        case _:
            log.error("unexpected error answering a request: %s", type(exc).__name__, exc_info=exc)
            return _error(500, f"the gateway failed unexpectedly ({type(exc).__name__}); see the service log",
                          type="server_error", code="internal_error")


@web.middleware
async def errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Turn whatever a handler raises into an OpenAI-shaped error answer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, f"{request.method} {request.path}: {exc.reason}",
                      type="invalid_request_error", code=exc.reason.lower().replace(" ", "_"), headers=allow)
    except Exception as exc:
        return failure(exc, completion=False)


def sse_error(message: str, type: str, code: str) -> bytes:
    error = {"error": {"message": message, "type": type, "code": code, "param": None}}
    return b"data: " + _encode(error) + b"\n\n"


def too_large(limit: int, *, decompressed: bool = False) -> HTTPError:
    what = "decompressed request body" if decompressed else "request body"
    return HTTPError(413, f"the {what} is larger than {limit} bytes (server.max_body_bytes)",
                      code="request_too_large")
