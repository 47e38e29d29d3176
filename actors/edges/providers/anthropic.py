"""The Anthropic Messages dialect (``POST /v1/messages``), spoken for OpenAI-shaped callers.

Takes an OpenAI chat body and returns OpenAI ``chat.completion`` JSON, or
``chat.completion.chunk`` payloads when streamed, so the request path never
knows which dialect answered. What maps cleanly is translated (system
messages, content parts, tools, stop, sampling); OpenAI-only fields (n,
penalties, logprobs, response_format...) are dropped. References:
https://docs.anthropic.com/en/api/messages,
https://docs.anthropic.com/en/docs/build-with-claude/streaming,
https://docs.anthropic.com/en/api/errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.edges.providers.base import HttpAdapter, Seen, UpstreamFailure, parse_retry_after, redact

__all__ = ("AnthropicAdapter",)

_encode = msgspec.json.Encoder().encode
_VERSION = "2023-06-01"
_DEFAULT_MAX_TOKENS = 1024  # Anthropic requires max_tokens; OpenAI callers often omit it
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "refusal": "content_filter", "model_context_window_exceeded": "length"}
_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                 "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                 "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}
# "prompt is too long: 210000 tokens > 200000 maximum";
# "input length and `max_tokens` exceed context limit: 197202 + 21333 > 200000"
_CONTEXT_MARKERS = ("prompt is too long", "context limit", "context window")


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Block(msgspec.Struct):
    """A content block, or a delta to one (text_delta, input_json_delta, message_delta's)."""

    type: str = ""
    text: str = ""
    id: str = ""
    name: str = ""
    input: Any = None
    partial_json: str = ""
    stop_reason: str | None = None


class _Message(msgspec.Struct):
    content: list[_Block] | None = None
    id: str = ""
    model: str = ""
    stop_reason: str | None = None
    usage: _Usage | None = None
    error: Any = None


class _Event(msgspec.Struct):
    type: str = ""
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Block | None = None
    usage: _Usage | None = None
    error: Any = None


_message_decoder = msgspec.json.Decoder(_Message)
_event_decoder = msgspec.json.Decoder(_Event)


# -- request translation (pure) ---------------------------------------------
def _blocks(content: Any) -> list[dict[str, Any]]:
    """Text parts as Anthropic blocks; empty text (rejected upstream) and other parts dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    parts = content if isinstance(content, list) else ()
    return [{"type": "text", "text": str(p["text"])} for p in parts
            if isinstance(p, dict) and p.get("type") == "text" and p.get("text")]


def _text(content: Any) -> str:
    return "".join(block["text"] for block in _blocks(content))


def _arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = msgspec.json.decode(raw or "{}")
    except (msgspec.DecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _append(out: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Merge consecutive same-role turns: tool results of one turn must share one user message."""
    if out and out[-1]["role"] == role:
        previous = out[-1]["content"]
        merged = _blocks(previous) if isinstance(previous, str) else previous
        out[-1]["content"] = merged + (_blocks(content) if isinstance(content, str) else content)
    else:
        out.append({"role": role, "content": content})


def _messages(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages if isinstance(messages, list) else ():
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(_text(content))
        elif role == "user":
            _append(out, "user", content if isinstance(content, str) else _blocks(content))
        elif role == "assistant":
            calls = m.get("tool_calls") or []
            if isinstance(content, str) and content and not calls:
                _append(out, "assistant", content)
                continue
            blocks = _blocks(content)
            for call in calls:
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                               "input": _arguments(fn.get("arguments"))})
            _append(out, "assistant", blocks)
        elif role == "tool":
            _append(out, "user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id") or "",
                                   "content": _text(content)}])
    return system, out


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = []
    for tool in body.get("tools") or ():
        fn = tool.get("function") if tool.get("type") == "function" else None
        if isinstance(fn, dict) and fn.get("name"):
            schema = fn.get("parameters") or {"type": "object", "properties": {}}
            tools.append({"name": fn["name"], "input_schema": schema,
                          **({"description": fn["description"]} if fn.get("description") else {})})
    if not tools:
        return {}
    choice = body.get("tool_choice")
    named = choice.get("function") if isinstance(choice, dict) else None
    tc = ({"type": "tool", "name": named.get("name", "")} if isinstance(named, dict)
          else {"type": _TOOL_CHOICE[choice]} if choice in _TOOL_CHOICE else None)
    return {"tools": tools, **({"tool_choice": tc} if tc else {})}


def _request(body: dict[str, Any], model: str, *, stream: bool) -> bytes:
    system, messages = _messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or _DEFAULT_MAX_TOKENS
    req: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        req["system"] = "\n\n".join(system)
    if body.get("temperature") is not None:
        # OpenAI allows 0..2, Anthropic 0..1: a request the primary took must not fail here.
        req["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        req["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        req["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    req.update(_tools(body))
    if stream:
        req["stream"] = True
    return _encode(req)


# -- response translation (pure) --------------------------------------------
def _usage(u: _Usage) -> dict[str, int]:
    # OpenAI's prompt_tokens counts cached input; Anthropic's input_tokens does not.
    prompt = (u.input_tokens or 0) + (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0)
    completion = u.output_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(msg: _Message, content: list[_Block], model: str, created: int) -> bytes:
    text = "".join(b.text for b in content if b.type == "text")
    calls = [{"id": b.id, "type": "function",
              "function": {"name": b.name, "arguments": _encode(b.input or {}).decode()}}
             for b in content if b.type == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return _encode({
        "id": msg.id, "object": "chat.completion", "created": created, "model": msg.model or model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH.get(msg.stop_reason or "", "stop")}],
        "usage": _usage(msg.usage or _Usage()),
    })


class _Chunks:
    """Anthropic stream events in, OpenAI chunk payloads out; remembers what the events spread out."""

    def __init__(self, model: str, created: int) -> None:
        self.id, self.model, self.created = "", model, created
        self.usage = _Usage()
        self.tools: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self.finished = False

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _encode({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    def usage_chunk(self) -> bytes:
        return _encode({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": _usage(self.usage)})

    def translate(self, ev: _Event) -> bytes | None:
        block, delta = ev.content_block, ev.delta
        if ev.type == "message_start" and ev.message is not None:
            self.id, self.model = ev.message.id, ev.message.model or self.model
            self.usage = ev.message.usage or self.usage
            return self.chunk({"role": "assistant", "content": ""})
        if ev.type == "content_block_start" and block is not None:
            if block.type == "tool_use":
                index = self.tools.setdefault(ev.index, len(self.tools))
                return self.chunk({"tool_calls": [{"index": index, "id": block.id, "type": "function",
                                                   "function": {"name": block.name, "arguments": ""}}]})
            return self.chunk({"content": block.text}) if block.type == "text" and block.text else None
        if ev.type == "content_block_delta" and delta is not None:
            if delta.type == "text_delta" and delta.text:
                return self.chunk({"content": delta.text})
            if delta.type == "input_json_delta" and delta.partial_json and ev.index in self.tools:
                return self.chunk({"tool_calls": [{"index": self.tools[ev.index],
                                                   "function": {"arguments": delta.partial_json}}]})
            return None  # thinking, signature, citations: no OpenAI counterpart
        if ev.type == "message_delta":
            for field in _Usage.__struct_fields__:  # message_delta's usage is cumulative
                if (value := getattr(ev.usage, field, None)) is not None:
                    setattr(self.usage, field, value)
            if delta is not None and delta.stop_reason:
                self.finished = True
                return self.chunk({}, _FINISH.get(delta.stop_reason, "stop"))
        return None  # ping, content_block_stop, and event types added later


class AnthropicAdapter(HttpAdapter):
    """Speaks /v1/messages to one provider; translates both dialects and every failure."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        super().__init__(config, session, clock)
        base = self._base
        self._api = base if base.endswith("/v1") else base + "/v1"
        self._url = self._api + "/messages"
        headers = {"Content-Type": "application/json", "anthropic-version": _VERSION, **config.headers}
        if self._key:
            headers["x-api-key"] = self._key
        self._headers = headers

    # -- failures ---------------------------------------------------------
    @staticmethod
    def _code(code: str | None, message: str) -> str | None:
        """The error type, or context_length_exceeded when a 400 says the prompt does not fit."""
        if code == "invalid_request_error" and any(m in message.lower() for m in _CONTEXT_MARKERS):
            return "context_length_exceeded"
        return code

    async def _http_failure(self, resp: aiohttp.ClientResponse) -> UpstreamFailure:
        body, message, code = await self._error_body(resp)
        return UpstreamFailure("http", message, status=resp.status, code=self._code(code, message),
                               retry_after_s=parse_retry_after(resp.headers, self.clock.now()),
                               body=body if resp.status < 500 else b"")

    def _error_failure(self, error: Any) -> UpstreamFailure:
        """An error object inside a 200 answer or a stream: its type says the status."""
        err = error if isinstance(error, dict) else {"message": str(error)}
        kind = str(err.get("type") or "api_error")
        message = redact(str(err.get("message") or kind)[:500], self._key)
        return UpstreamFailure("http", message, status=_ERROR_STATUS.get(kind, 500),
                               code=self._code(kind, message))

    # -- calls --------------------------------------------------------------
    async def complete(self, body: dict[str, Any], model: str, *, seen: Seen | None = None) -> bytes:
        payload = _request(body, model, stream=False)
        raw = await self._post_json(self._url, payload, self._headers, seen)
        try:
            msg = _message_decoder.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise UpstreamFailure("bad_response", f"invalid JSON in the response: {exc}") from None
        if msg.error is not None:
            raise self._error_failure(msg.error)
        if msg.content is None:
            raise UpstreamFailure("bad_response", "the response has no 'content' list")
        return _completion(msg, msg.content, model, int(self.clock.now()))

    @asynccontextmanager
    async def stream(self, body: dict[str, Any], model: str, *,
                     seen: Seen | None = None) -> AsyncIterator[AsyncIterator[bytes]]:
        payload = _request(body, model, stream=True)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        async with self._open_stream(self._url, payload, self._headers, seen) as resp:
            yield self._events(resp, _Chunks(model, int(self.clock.now())), include_usage)

    async def _events(self, resp: aiohttp.ClientResponse, chunks: _Chunks, include_usage: bool
                      ) -> AsyncIterator[bytes]:
        """Yield OpenAI chunk payloads; a stream without ``message_stop`` is cut."""
        try:
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue  # event: lines repeat the data's "type"; blank lines end events
                try:
                    event = _event_decoder.decode(line[5:].strip())
                except msgspec.DecodeError as exc:
                    raise UpstreamFailure("bad_response", f"a stream event is not JSON: {exc}") from None
                if event.type == "error":
                    raise self._error_failure(event.error)
                if event.type == "message_stop":
                    if not chunks.finished:
                        yield chunks.chunk({}, "stop")
                    if include_usage:
                        yield chunks.usage_chunk()
                    return
                payload = chunks.translate(event)
                if payload is not None:
                    yield payload
        except UpstreamFailure:
            raise
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise UpstreamFailure("stream_cut", f"the stream broke: {type(exc).__name__}") from exc
        raise UpstreamFailure("stream_cut", "the stream ended without message_stop")

    async def _get(self, url: str, headers: dict[str, str] | None, ok: Callable[[int], bool]) -> None:
        try:
            async with self.session.get(url, headers=headers) as resp:
                if not ok(resp.status):
                    raise await self._http_failure(resp)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise self._connect_failure(exc) from exc

    async def ping(self) -> None:
        """Any HTTP answer below 500 at the base URL means the server is up."""
        await self._get(self._base, None, lambda status: status < 500)

    async def check(self) -> None:
        """An authenticated GET /v1/models: catches bad keys and dead backends."""
        # 404/405: a gateway without the model listing; that says nothing bad about it.
        await self._get(self._api + "/models", self._headers, lambda s: s < 300 or s in (404, 405))
