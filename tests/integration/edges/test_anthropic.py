"""The Anthropic adapter against a fake Anthropic server: both dialects, and every failure."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from actors.core.clock import SystemClock
from actors.core.config import ProviderConfig, Secret
from actors.edges.providers.anthropic import AnthropicAdapter
from actors.edges.providers.base import UpstreamFailure

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test"
MODEL = "claude-x"
MESSAGE: dict[str, Any] = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x-20250101",
    "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world."}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 5},
}


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _error(kind: str, message: str) -> bytes:
    return _json({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})


def _events(*texts: str, stop: bool = True) -> list[dict[str, Any]]:
    """An Anthropic event stream that says ``texts``; without ``message_stop`` unless ``stop``."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**MESSAGE, "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 12, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
               for t in texts]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 7}},
    ]
    return [*events, {"type": "message_stop"}] if stop else events


@dataclass
class Answer:
    """What the fake says next: a plain answer, or SSE ``events`` after which the stream just ends."""

    status: int = 200
    body: bytes = field(default_factory=lambda: _json(MESSAGE))
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] | None = None


class FakeAnthropic:
    """A real aiohttp server speaking just enough of the Messages API, with scripted answers."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.models_status = 200
        self.root_status = 404  # the Messages API has nothing at its root
        self.requests: list[tuple[str, Mapping[str, str], Any]] = []
        self.url = ""

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers, await request.json()))
        answer = self.answer
        if answer.events is None:
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers,
                                content_type=answer.content_type)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in answer.events:
            await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + _json(event) + b"\n\n")
        await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers, None))
        body = _json({"data": []}) if self.models_status < 300 else _error("authentication_error", "bad key")
        return web.Response(status=self.models_status, body=body, content_type="application/json")

    async def root(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers, None))
        return web.Response(status=self.root_status, text="not here")

    @property
    def sent(self) -> Any:
        """The JSON body of the last request."""
        return self.requests[-1][2]


def _adapter(base_url: str, session: aiohttp.ClientSession) -> AnthropicAdapter:
    config = ProviderConfig(name="claude", kind="anthropic", base_url=base_url, models={"chat": MODEL},
                            api_key_env="ANTHROPIC_API_KEY", api_key=Secret(KEY))
    return AnthropicAdapter(config, session, SystemClock())


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    app = web.Application()
    app.router.add_post("/v1/messages", server.messages)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/", server.root)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        server.url = f"http://{host}:{port}"
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def adapter(fake: FakeAnthropic, session: aiohttp.ClientSession) -> AnthropicAdapter:
    return _adapter(fake.url, session)


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], **extra}


async def _complete(adapter: AnthropicAdapter, body: dict[str, Any] | None = None) -> Any:
    return msgspec.json.decode(await adapter.complete(body or _body(), MODEL))


async def _stream(adapter: AnthropicAdapter, body: dict[str, Any] | None = None) -> list[Any]:
    async with adapter.stream(body or _body(stream=True), MODEL) as chunks:
        return [msgspec.json.decode(chunk) async for chunk in chunks]


async def _failure(adapter: AnthropicAdapter, body: dict[str, Any] | None = None) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as info:
        await adapter.complete(body or _body(), MODEL)
    return info.value


# -- request translation ------------------------------------------------------
async def test_request_goes_to_v1_messages_with_key_and_version(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """The request is POSTed to /v1/messages with x-api-key and anthropic-version headers."""
    await adapter.complete(_body(), MODEL)
    path, headers, sent = fake.requests[-1]
    assert (path, headers["x-api-key"], headers["anthropic-version"]) == ("/v1/messages", KEY, "2023-06-01")
    assert sent["model"] == MODEL


async def test_base_url_ending_in_v1_is_not_doubled(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    """A base URL that already ends in /v1 still reaches /v1/messages."""
    await _adapter(fake.url + "/v1/", session).complete(_body(), MODEL)
    assert fake.requests[-1][0] == "/v1/messages"


async def test_system_messages_become_top_level_system(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """System messages leave the message list and become the top-level ``system`` string."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Again"}]}]
    await adapter.complete(_body(messages=messages), MODEL)
    assert fake.sent["system"] == "Be brief."
    assert fake.sent["messages"] == [{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello"},
                                     {"role": "user", "content": [{"type": "text", "text": "Again"}]}]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({}, 1024, id="default"),
        pytest.param({"max_tokens": 50}, 50, id="max_tokens"),
        pytest.param({"max_tokens": 50, "max_completion_tokens": 70}, 70, id="max_completion_tokens"),
    ],
)
async def test_max_tokens_is_always_sent(
    adapter: AnthropicAdapter, fake: FakeAnthropic, extra: dict[str, Any], expected: int
) -> None:
    """Anthropic requires max_tokens: the caller's limit is sent, or 1024 when there is none."""
    await adapter.complete(_body(**extra), MODEL)
    assert fake.sent["max_tokens"] == expected


async def test_stop_becomes_stop_sequences(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """OpenAI's ``stop`` string becomes Anthropic's ``stop_sequences`` list."""
    await adapter.complete(_body(stop="END"), MODEL)
    assert fake.sent["stop_sequences"] == ["END"]


async def test_openai_only_fields_are_dropped(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """Fields Anthropic does not know (n, penalties, stream_options) never reach it."""
    await adapter.complete(_body(n=1, presence_penalty=0.5, stream_options={"include_usage": True},
                                 temperature=0.3, top_p=0.9), MODEL)
    assert sorted(fake.sent) == ["max_tokens", "messages", "model", "temperature", "top_p"]


async def test_temperature_is_capped_at_anthropics_maximum(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """OpenAI's temperature runs to 2 but Anthropic's to 1, so a higher one is sent as 1."""
    await adapter.complete(_body(temperature=1.5), MODEL)
    assert fake.sent["temperature"] == 1.0


async def test_tool_history_becomes_tool_use_and_tool_result(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """Assistant tool calls become tool_use blocks, and tool answers one user turn of tool_result blocks."""
    calls = [{"id": f"call_{n}", "type": "function", "function": {"name": "f", "arguments": f'{{"n": {n}}}'}}
             for n in (1, 2)]
    messages = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call_1", "content": "one"},
                {"role": "tool", "tool_call_id": "call_2", "content": "two"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await adapter.complete(_body(messages=messages, tools=tools, tool_choice="required"), MODEL)
    assert fake.sent["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert fake.sent["tool_choice"] == {"type": "any"}
    uses = [{"type": "tool_use", "id": f"call_{n}", "name": "f", "input": {"n": n}} for n in (1, 2)]
    results = [{"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
               {"type": "tool_result", "tool_use_id": "call_2", "content": "two"}]
    assert fake.sent["messages"][1:] == [{"role": "assistant", "content": uses},
                                         {"role": "user", "content": results}]


# -- response translation -----------------------------------------------------
async def test_response_becomes_a_chat_completion(adapter: AnthropicAdapter) -> None:
    """Text blocks are joined into one message, with id, model, created and usage in OpenAI's shape."""
    reply = await _complete(adapter)
    assert reply["object"] == "chat.completion"
    assert (reply["id"], reply["model"], type(reply["created"])) == ("msg_01", "claude-x-20250101", int)
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world."}
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        pytest.param("end_turn", "stop", id="end_turn"),
        pytest.param("stop_sequence", "stop", id="stop_sequence"),
        pytest.param("max_tokens", "length", id="max_tokens"),
        pytest.param("tool_use", "tool_calls", id="tool_use"),
    ],
)
async def test_stop_reason_becomes_finish_reason(
    adapter: AnthropicAdapter, fake: FakeAnthropic, stop_reason: str, finish_reason: str
) -> None:
    """Each Anthropic stop_reason maps onto the OpenAI finish_reason that means the same."""
    fake.answer = Answer(body=_json({**MESSAGE, "stop_reason": stop_reason}))
    assert (await _complete(adapter))["choices"][0]["finish_reason"] == finish_reason


async def test_tool_use_blocks_become_tool_calls(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A tool_use block becomes a tool call whose arguments are a JSON string."""
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"n": 1}}
    fake.answer = Answer(body=_json({**MESSAGE, "content": [block], "stop_reason": "tool_use"}))
    message = (await _complete(adapter))["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                      "function": {"name": "f", "arguments": '{"n":1}'}}]


# -- streaming ----------------------------------------------------------------
async def test_stream_reassembles_text_and_ends_cleanly(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """The events become a role chunk, content chunks and a final finish_reason chunk."""
    fake.answer = Answer(events=_events("Hel", "lo", "!"))
    chunks = await _stream(adapter)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello!"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "stop"]
    assert fake.sent["stream"] is True


async def test_stream_usage_is_reported_when_asked(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """With stream_options.include_usage, a last chunk without choices carries the usage."""
    fake.answer = Answer(events=_events("Hi"))
    chunks = await _stream(adapter, _body(stream=True, stream_options={"include_usage": True}))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


async def test_stream_without_message_stop_is_cut(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A stream that ends before message_stop raises stream_cut."""
    fake.answer = Answer(events=_events("Hel", stop=False))
    with pytest.raises(UpstreamFailure) as info:
        await _stream(adapter)
    assert info.value.kind == "stream_cut"


async def test_stream_tool_use_becomes_tool_call_deltas(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """A streamed tool_use block becomes a tool call chunk, then argument deltas, then tool_calls."""
    start, *_, end, stop = _events()
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    parts = [{"type": "input_json_delta", "partial_json": p} for p in ('{"n"', ": 1}")]
    fake.answer = Answer(events=[
        start, {"type": "content_block_start", "index": 0, "content_block": block},
        *({"type": "content_block_delta", "index": 0, "delta": part} for part in parts),
        {**end, "delta": {"stop_reason": "tool_use"}}, stop,
    ])
    choices = [c["choices"][0] for c in await _stream(adapter)]
    calls = [c["delta"]["tool_calls"][0] for c in choices if "tool_calls" in c["delta"]]
    assert (calls[0]["id"], calls[0]["function"]["name"]) == ("toolu_1", "f")
    assert "".join(c["function"]["arguments"] for c in calls) == '{"n": 1}'
    assert choices[-1]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        pytest.param("overloaded_error", 529, id="overloaded"),
        pytest.param("rate_limit_error", 429, id="rate_limit"),
        pytest.param("api_error", 500, id="api_error"),
    ],
)
async def test_error_event_mid_stream_is_an_http_failure(
    adapter: AnthropicAdapter, fake: FakeAnthropic, kind: str, status: int
) -> None:
    """An ``error`` event after some text raises an http failure with the status its type implies."""
    error = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}
    fake.answer = Answer(events=[*_events("Hel", stop=False)[:4], error])
    with pytest.raises(UpstreamFailure) as info:
        await _stream(adapter)
    assert (info.value.kind, info.value.status, info.value.code) == ("http", status, kind)


async def test_stream_that_is_refused_raises_before_yielding(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """A 529 answer to a streamed request raises when the stream is opened."""
    fake.answer = Answer(status=529, body=_error("overloaded_error", "Overloaded"))
    with pytest.raises(UpstreamFailure) as info:
        async with adapter.stream(_body(stream=True), MODEL):
            pass
    assert (info.value.kind, info.value.status) == ("http", 529)


# -- failures -------------------------------------------------------------------
async def test_overloaded_is_http_529(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 529 overloaded_error becomes an http failure with status 529 and its type as the code."""
    fake.answer = Answer(status=529, body=_error("overloaded_error", "Overloaded"))
    failure = await _failure(adapter)
    assert (failure.kind, failure.status, failure.code, failure.message) == (
        "http", 529, "overloaded_error", "Overloaded")


async def test_rate_limit_carries_retry_after(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 429's Retry-After header becomes retry_after_s."""
    fake.answer = Answer(status=429, body=_error("rate_limit_error", "slow down"),
                         headers={"retry-after": "17"})
    failure = await _failure(adapter)
    assert (failure.status, failure.code, failure.retry_after_s) == (429, "rate_limit_error", 17.0)


async def test_echoed_key_is_redacted(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 401 whose message echoes the API key never shows the key."""
    fake.answer = Answer(status=401, body=_error("authentication_error", f"invalid x-api-key: {KEY}"))
    failure = await _failure(adapter)
    assert (failure.status, failure.code) == (401, "authentication_error")
    assert KEY not in failure.message
    assert "***" in failure.message


async def test_prompt_too_long_has_a_context_code(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 400 saying the prompt is too long carries a code the classifier reads as context length."""
    fake.answer = Answer(status=400, body=_error("invalid_request_error",
                                                 "prompt is too long: 210000 tokens > 200000 maximum"))
    failure = await _failure(adapter)
    assert failure.status == 400
    assert failure.code is not None
    assert "context" in failure.code


async def test_other_bad_requests_keep_their_type(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 400 about something else keeps invalid_request_error as its code."""
    fake.answer = Answer(status=400, body=_error("invalid_request_error", "messages: field required"))
    assert (await _failure(adapter)).code == "invalid_request_error"


async def test_html_answer_is_a_bad_response(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 200 with an HTML page is a bad response, not a completion."""
    fake.answer = Answer(body=b"<html><body>Welcome to nginx!</body></html>", content_type="text/html")
    assert (await _failure(adapter)).kind == "bad_response"


async def test_json_without_content_is_a_bad_response(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 200 JSON body with no content list is a bad response."""
    fake.answer = Answer(body=b'{"hello": "world"}')
    assert (await _failure(adapter)).kind == "bad_response"


async def test_connection_refused_is_a_connect_failure(session: aiohttp.ClientSession) -> None:
    """A port nobody listens on raises a connect failure."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = _adapter(f"http://127.0.0.1:{port}", session)
    with pytest.raises(UpstreamFailure) as info:
        await adapter.complete(_body(), MODEL)
    assert info.value.kind == "connect"


# -- health -------------------------------------------------------------------
async def test_ping_counts_a_404_as_up(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 404 at the base URL is an HTTP answer: the server is up, so ping passes."""
    await adapter.ping()
    path, _, _ = fake.requests[-1]
    assert (path, fake.root_status) == ("/", 404)


async def test_ping_fails_on_a_5xx_at_the_base_url(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A 5xx at the base URL is a server in trouble: ping raises an http failure."""
    fake.root_status = 503
    with pytest.raises(UpstreamFailure) as info:
        await adapter.ping()
    assert (info.value.kind, info.value.status) == ("http", 503)


async def test_check_lists_models_with_the_key(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """check() GETs /v1/models with the key and passes on 200."""
    await adapter.check()
    path, headers, _ = fake.requests[-1]
    assert (path, headers["x-api-key"]) == ("/v1/models", KEY)


async def test_check_fails_on_a_rejected_key(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """check() raises an http failure when /v1/models answers 401."""
    fake.models_status = 401
    with pytest.raises(UpstreamFailure) as info:
        await adapter.check()
    assert (info.value.kind, info.value.status) == ("http", 401)
