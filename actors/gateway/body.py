"""Reading a completion request's body: size cap, Content-Encoding, one JSON parse.

The body is read as bytes (aiohttp's own decompression is off: the runner
gets ``auto_decompress=False``), inflated here when it says ``gzip`` or
``deflate``, with the output capped at ``server.max_body_bytes`` (so a small
compressed bomb is refused after that many bytes, not expanded), then parsed
once by :func:`~actors.runtime.validation.parse_request` into the dict the
supervisor gets. Any other ``Content-Encoding`` (``br``, ``zstd``, stacked
codings) is a 415 before the body is read. ``Content-Type`` is not checked:
a JSON body is served whatever it is labelled.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

from aiohttp import web

from actors.core.errors import SupervisorClosedError
from actors.gateway.http import HTTPError, too_large
from actors.gateway.serverlog import Lines, one_line
from actors.runtime.validation import parse_request

__all__ = ("ENCODINGS", "read_body")

ENCODINGS = ("gzip", "x-gzip", "deflate")  # besides identity (or none)


def _coding(request: web.Request) -> str | None:
    """The one content coding to undo (None for identity); 415 for any other."""
    if "Content-Encoding" not in request.headers:  # the usual case, kept cheap
        return None
    codings = [c.strip().lower() for value in request.headers.getall("Content-Encoding")
               for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in ENCODINGS:
        named = one_line(", ".join(codings))
        raise HTTPError(415, f"Content-Encoding {named!r} is not supported: send the body as is (identity) "
                             "or compressed once with gzip or deflate", code="unsupported_media_type",
                        param="Content-Encoding")
    return codings[0]


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    """``data`` decompressed, at most ``limit`` bytes of it (413 beyond), 400 if it is not ``coding``."""
    if coding == "deflate":  # zlib-wrapped as RFC 9110 says, or raw deflate as some clients send
        wbits = zlib.MAX_WBITS if data[:1] and data[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    out = bytearray()
    rest = data
    while True:  # a gzip body may hold several members, one after another
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise HTTPError(400, f"the body says Content-Encoding {coding!r} but is not {coding} data: {exc}",
                             code="invalid_content_encoding", param="Content-Encoding") from None
        if len(out) > limit:
            raise too_large(limit, decompressed=True)
        if not inflater.eof:
            raise HTTPError(400, f"the {coding} body is truncated: it ends before its compressed stream does",
                             code="invalid_content_encoding", param="Content-Encoding")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)
        if coding == "deflate":
            raise HTTPError(400, f"the deflate body has {len(rest)} bytes after its compressed stream",
                             code="invalid_content_encoding", param="Content-Encoding")


async def read_body(request: web.Request, limit: int, lines: Lines) -> dict[str, Any]:
    """The validated JSON body as a dict; 413 above ``limit`` bytes, 415/400 naming what is wrong."""
    coding = _coding(request)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    except ConnectionError as exc:  # ConnectionResetError, aiohttp's ClientConnectionResetError
        lines.emit(logging.INFO, "disconnect", f"client {request.remote} disconnected before sending the "
                                               f"whole body ({type(exc).__name__}: {one_line(exc)})")
        raise HTTPError(400, "the client disconnected before sending the whole body",
                        code="client_disconnected") from None
    except web.RequestPayloadError as exc:  # aiohttp could not de-frame the body (chunked encoding, ...)
        raise HTTPError(400, f"the request body could not be read: {one_line(exc)}",
                        code="invalid_body") from None
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        # Not our cancellation: aiohttp's shutdown fails a body still arriving with CancelledError.
        raise SupervisorClosedError("the body was still arriving when the service stopped") from None
    if len(raw) > limit:
        raise too_large(limit)
    if coding is not None:
        raw = _inflate(raw, coding, limit)
    return parse_request(raw)
