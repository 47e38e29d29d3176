"""A fake OpenAI-compatible provider for tests: a real HTTP server with scripted faults.

:class:`FakeUpstream` is an ``aiohttp.web`` app on 127.0.0.1, port 0. Each
``POST /v1/chat/completions`` takes the next :class:`Fault` from a FIFO script
(or the default) and answers as it says: a completion (JSON or SSE), an
OpenAI-shaped error, a hang, a reset, a stream cut or stalled half-way, or a
malformed body. Health routes (``GET /v1/models``, ``/health``, ...) answer
from :meth:`FakeUpstream.set_health`. It records every completion request.
It owns its listening socket, so the port can refuse connections and later
accept them again on the same number. Hangs and stalls wait on an event that
:meth:`FakeUpstream.release` and :meth:`FakeUpstream.close` set, so closing
never waits for a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.lowlevel
from aiohttp import web

from actors.testing.bodies import completion, health_body, split, sse
from actors.testing.bodies import usage as usage_of
from actors.testing.faults import GARBAGE_BODIES, Fault, error, ok
from actors.testing.ratelimit import RateLimit

__all__ = ("PREFILL_REFUSAL", "FakeUpstream", "PrefillMode", "RecordedRequest")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A completion request as the fake received it (headers are case-insensitive)."""

    path: str
    headers: Mapping[str, str]
    body: dict[str, Any] | None
    stream: bool


def _bind(port: int) -> socket.socket:
    # SO_REUSEADDR so the port can be bound again while connections from the
    # previous listener linger in TIME_WAIT.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


_LIMIT_HEADERS = web.RequestKey("limit_headers", dict)  # rate-limit headers for this answer


async def _stamp_limits(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(request.get(_LIMIT_HEADERS) or {})


PrefillMode = Literal["ignore", "continue", "reject"]
#: What a model that does not take an assistant prefill answers (Anthropic's wording).
PREFILL_REFUSAL = ("This model does not support assistant message prefill. The conversation must end"
                   " with a user message.")


class FakeUpstream:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a script."""

    def __init__(self, name: str = "fake", *, default: Fault | None = None,
                 models: list[str] | None = None, api_key: str | None = None,
                 prefill: PrefillMode = "ignore", limit: RateLimit | None = None) -> None:
        self.name = name
        #: Requests per window, enforced with 429s and reported in rate-limit headers.
        self.limit = limit
        #: What it does with a trailing assistant message: "ignore" answers anew (as OpenAI's API
        #: does), "continue" answers only the rest of its text, "reject" answers 400.
        self.prefill = prefill
        self.models = list(models) if models is not None else ["fake-model"]
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.health_requests = 0
        self._default = default or ok()
        self._health: Fault | None = None
        self._script: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        # While refusing, a bound but not listening socket holds the port: the
        # kernel answers SYNs with RST (ECONNREFUSED) and nobody else can take it.
        self._reserved: socket.socket | None = None
        self._port = 0
        self._closing = False
        self._released: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._parked = 0
        self._parked_changed: anyio.Event | None = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The TCP port, fixed from :meth:`start` until :meth:`close`."""
        if not self._port:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> int:
        """How many completion requests arrived."""
        return len(self.requests)

    def script(self, *faults: Fault) -> None:
        """Queue answers for the next completion requests, in order."""
        self._script.extend(faults)

    def set_default(self, fault: Fault) -> None:
        """Answer with `fault` whenever the script is empty."""
        self._default = fault

    def set_health(self, fault: Fault | None) -> None:
        """Answer health routes with `fault`; None (or ``ok()``) means healthy."""
        self._health = fault

    def release(self) -> None:
        """Wake every hang and stall now waiting; each then closes its connection."""
        if self._released is not None:
            self._released.set()
            self._released = anyio.Event()
            # Count them out now, not when their tasks next run, so that a
            # following wait_hanging() waits for new hangs.
            self._parked = 0

    async def wait_hanging(self, count: int = 1) -> None:
        """Wait until at least `count` requests are parked in a hang or stall."""
        while self._parked < count:
            assert self._parked_changed is not None, "FakeUpstream is not started"
            await self._parked_changed.wait()

    async def start(self) -> None:
        """Start listening on a free port."""
        if self._runner is not None:
            raise RuntimeError("FakeUpstream is already started")
        self._released, self._stopped = anyio.Event(), anyio.Event()
        self._parked_changed = anyio.Event()
        app = web.Application()
        app.on_response_prepare.append(_stamp_limits)
        self._add_routes(app)
        # Hangs are woken on close, so a short shutdown timeout never bites.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        sock = _bind(0)
        self._port = sock.getsockname()[1]
        await self._listen(sock)

    def _add_routes(self, app: web.Application) -> None:
        """The completion and health routes (a provider's fake adds its own)."""
        for path in ("/v1/chat/completions", "/chat/completions"):
            app.router.add_post(path, self._on_completion)
        for path in ("/v1/models", "/models", "/health", "/health/liveliness", "/v1/health"):
            app.router.add_get(path, self._on_health)

    async def close(self) -> None:
        """Wake hangs, drop connections and stop the server; idempotent."""
        if self._runner is None or self._closing:
            return
        self._closing = True
        assert self._stopped is not None
        self._stopped.set()
        self.release()
        try:
            await self._runner.cleanup()
        finally:
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None
            self._site = None

    async def refuse_connections(self) -> None:
        """Stop listening and drop open connections; the port refuses until accept_connections."""
        if self._site is None or self._runner is None:
            return
        await self._site.stop()
        self._site = None
        self._reserved = _bind(self._port)
        server = self._runner.server
        handlers = server.connections if server is not None else []
        for handler in handlers:
            if handler.transport is not None:
                handler.transport.abort()
        # Wait until the sockets are really closed, then give a client in this
        # event loop a few turns to read the EOF, so its pool doesn't hand out a
        # dead connection: its next request must see ECONNREFUSED, as after a
        # crash. (Two turns suffice on asyncio and uvloop; three for margin.)
        for _ in range(100):
            if all(handler.transport is None for handler in handlers):
                break
            await anyio.lowlevel.checkpoint()
        for _ in range(3):
            await anyio.lowlevel.checkpoint()

    async def accept_connections(self) -> None:
        """Listen again on the same port."""
        if self._reserved is None or self._closing:
            return
        sock, self._reserved = self._reserved, None
        await self._listen(sock)

    async def _listen(self, sock: socket.socket) -> None:
        assert self._runner is not None
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()

    async def _on_completion(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        stream = bool(body and body.get("stream"))
        self.requests.append(RecordedRequest(request.path, request.headers, body, stream))
        if not self._authorized(request):
            fault = error(401)  # a rejected request does not use up the script
        else:
            refusal, request[_LIMIT_HEADERS] = self.limit.take() if self.limit else (None, {})
            fault = refusal or (self._script.popleft() if self._script else self._default)
            fault = self._prefilled(fault, body or {})
        return await self._answer(request, fault, body or {}, health=False)

    def _prefilled(self, fault: Fault, body: dict[str, Any]) -> Fault:
        """The answer to a request whose last message is the assistant's own start (a prefill)."""
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if self.prefill == "ignore" or not isinstance(last, dict) or last.get("role") != "assistant":
            return fault
        if self.prefill == "reject":
            return error(400, PREFILL_REFUSAL)
        start = str(last.get("content") or "")
        if fault.kind in ("ok", "cut_stream", "stall_stream") and fault.text.startswith(start):
            return dataclasses.replace(fault, text=fault.text[len(start):] or " ")
        return fault

    async def _on_health(self, request: web.Request) -> web.StreamResponse:
        self.health_requests += 1
        await request.read()
        fault = (self._health or ok()) if self._authorized(request) else error(401)
        return await self._answer(request, fault, {}, health=True)

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or (
            request.headers.get("Authorization") == f"Bearer {self.api_key}")

    async def _answer(self, request: web.Request, fault: Fault, body: dict[str, Any],
                      *, health: bool) -> web.StreamResponse:
        try:
            return await self._dispatch(request, fault, body, health=health)
        except ConnectionError:
            # The client went away mid-answer. Without this, aiohttp would log
            # "Error handling request" with a traceback.
            return self._drop(request)

    async def _dispatch(self, request: web.Request, fault: Fault, body: dict[str, Any],
                        *, health: bool) -> web.StreamResponse:
        model = str(body.get("model", self.models[0] if self.models else "fake-model"))
        match fault.kind:
            case "ok":
                if fault.delay_s > 0:
                    assert self._stopped is not None
                    with anyio.move_on_after(fault.delay_s):
                        await self._stopped.wait()
                if health:
                    return web.json_response(health_body(self.name, self.models, request.path))
                if body.get("stream"):
                    include = bool((body.get("stream_options") or {}).get("include_usage"))
                    return await self._stream(request, fault, model, body,
                                              usage=include and fault.usage)
                return web.json_response(completion(self.name, len(self.requests), fault, model, body))
            case "error":
                ra = fault.retry_after
                if isinstance(ra, float | int) and float(ra).is_integer():
                    ra = int(ra)  # "30", not "30.0", like real servers
                headers = {} if ra is None else {"Retry-After": str(ra)}
                return web.json_response(self._error_body(fault), status=fault.status, headers=headers)
            case "hang":
                await self._park()
                return self._drop(request)
            case "reset":
                return self._drop(request, rst=True)
            case "cut_stream" | "stall_stream":
                resp = await self._stream(request, fault, model, body, usage=False,
                                          upto=fault.after)
                if fault.kind == "stall_stream":
                    await self._park()
                self._drop(request)
                return resp
            case "garbage":
                return await self._garbage(request, fault, model)

    def _error_body(self, fault: Fault) -> Any:
        """An error answer's JSON, in OpenAI's shape (a provider's fake answers in its own)."""
        return {"error": {"message": fault.message, "type": fault.type, "code": fault.code,
                          "param": fault.param}}

    async def _park(self) -> None:
        assert self._released is not None
        assert self._parked_changed is not None
        if self._closing:
            return
        released, self._parked = self._released, self._parked + 1
        self._parked_changed.set()
        self._parked_changed = anyio.Event()
        try:
            await released.wait()
        except BaseException:
            if not released.is_set():
                self._parked -= 1
            raise

    def _drop(self, request: web.Request, *, rst: bool = False) -> web.StreamResponse:
        """Close the connection; the returned response is never sent."""
        transport = request.transport
        if transport is not None and not transport.is_closing():
            if rst:
                # Linger 0 makes close() send RST: the client sees ECONNRESET.
                sock = transport.get_extra_info("socket")
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        # aiohttp then fails to write this response, sees ConnectionError and
        # treats it as a client disconnect: no log, no further answer.
        resp = web.Response()
        resp.force_close()
        return resp

    async def _stream(self, request: web.Request, fault: Fault, model: str, body: dict[str, Any],
                      *, usage: bool, upto: int | None = None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        ident, created = f"chatcmpl-{self.name}-{len(self.requests)}", int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            usage_field = {"usage": None} if usage else {}
            return {"id": ident, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": choices, **usage_field, **extra}

        pieces = split(fault.text, fault.chunks)
        if fault.first_token_after_s > 0:
            await resp.write(sse(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}])))
            assert self._stopped is not None
            deadline = anyio.current_time() + fault.first_token_after_s
            while (left := deadline - anyio.current_time()) > 0 and not self._stopped.is_set():
                await resp.write(b": keep-alive\n\n")  # a comment: not a token
                with anyio.move_on_after(min(1.0, left)):
                    await self._stopped.wait()
        for i, piece in enumerate(pieces[:upto]):
            for _ in range(fault.malformed.count(i)):  # an index twice: two broken events there
                await resp.write(b'data: {"id": "broken", "choices": [{"delta": {"content": "x\n\n')
            delta: dict[str, Any] = {"content": piece}
            if fault.tool is not None:
                function = {"arguments": piece, **({"name": fault.tool} if i == 0 else {})}
                call = {"index": 0, "function": function,
                        **({"id": f"call_{ident}", "type": "function"} if i == 0 else {})}
                delta = {"content": None, "tool_calls": [call]}
            if i == 0:
                delta["role"] = "assistant"
            await resp.write(sse(chunk([{"index": 0, "delta": delta, "finish_reason": None}])))
        if upto is not None:
            return resp
        finish = "stop" if fault.tool is None else "tool_calls"
        await resp.write(sse(chunk([{"index": 0, "delta": {}, "finish_reason": finish}])))
        if usage:
            await resp.write(sse(chunk([], usage=usage_of(fault, body))))
        if fault.done:
            await resp.write(sse("[DONE]"))
        await resp.write_eof()
        return resp

    async def _garbage(self, request: web.Request, fault: Fault, model: str) -> web.StreamResponse:
        if fault.garbage != "truncated":
            text, content_type = GARBAGE_BODIES[fault.garbage]
            return web.Response(status=fault.status, text=text, content_type=content_type)
        full = json.dumps(completion(self.name, len(self.requests), fault, model, {})).encode()
        resp = web.StreamResponse(status=fault.status, headers={"Content-Type": "application/json"})
        resp.content_length = len(full)  # promise it all, send half, hang up
        await resp.prepare(request)
        await resp.write(full[: len(full) // 2])
        self._drop(request)
        return resp
