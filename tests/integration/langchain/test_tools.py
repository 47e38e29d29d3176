"""Tool calls through FallbackChatModel: bind_tools out, tool_calls back, ToolMessages in, streams, structured output.

The tool-calling provider is :class:`ToolUpstream` below, a real aiohttp
server on 127.0.0.1 (``actors.testing.FakeUpstream`` answers text only). It
speaks OpenAI ``POST /v1/chat/completions`` (JSON and SSE) and Anthropic
``POST /v1/messages`` (JSON): asked with ``tools`` and no tool result yet, it
calls the first tool with ``args`` (streamed: the arguments split over two
deltas); sent a tool result, it answers ``"the tool said: <result>"``. It
records every request body. The primary is a FakeUpstream answering 503, so
every tool call here also crosses a failover.
"""

from __future__ import annotations

import json
import operator
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import reduce
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from actors.core.config import Config, parse_config
from actors.langchain import FallbackChatModel
from actors.testing import FakeUpstream, error


def _sse(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


class ToolUpstream:
    """Answers a tool call, then the tool's result as text (see the module doc)."""

    def __init__(self, name: str = "tools", *, args: dict[str, Any] | None = None) -> None:
        self.name = name
        self.args = args if args is not None else {"city": "Paris"}
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> ToolUpstream:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _tool(self, body: dict[str, Any], result_role: str) -> str | None:
        """The tool to call now, or None when the last message is a tool's result (or no tools)."""
        tools = body.get("tools") or []
        last = (body.get("messages") or [{}])[-1]
        content = last.get("content")
        if last.get("role") == result_role and (result_role == "tool" or (
                isinstance(content, list) and any(b.get("type") == "tool_result" for b in content))):
            return None
        if not tools:
            return None
        first = tools[0]
        return str(first["function"]["name"] if "function" in first else first["name"])

    @staticmethod
    def _result(body: dict[str, Any]) -> str:
        last = (body.get("messages") or [{}])[-1]
        content = last.get("content")
        if isinstance(content, list):  # Anthropic: a tool_result block
            content = "".join(str(b.get("content", "")) for b in content if isinstance(b, dict))
        return f"the tool said: {content}"

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        tool = self._tool(body, "tool")
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        base = {"id": f"chatcmpl-{self.name}-{len(self.requests)}", "created": 0, "model": body["model"]}
        call = {"id": "call_1", "type": "function",
                "function": {"name": tool, "arguments": json.dumps(self.args)}}
        if not body.get("stream"):
            message: dict[str, Any] = ({"role": "assistant", "content": None, "tool_calls": [call]} if tool
                                       else {"role": "assistant", "content": self._result(body)})
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse({**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        await resp.write(chunk({"role": "assistant", "content": None if tool else ""}))
        if tool:
            arguments = json.dumps(self.args)
            half = len(arguments) // 2
            await resp.write(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                    "function": {"name": tool, "arguments": arguments[:half]}}]}))
            await resp.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}))
        else:
            await resp.write(chunk({"content": self._result(body)}))
        await resp.write(chunk({}, "tool_calls" if tool else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(_sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        await resp.write(_sse("[DONE]"))
        await resp.write_eof()
        return resp

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        tool = self._tool(body, "user")
        content = ([{"type": "tool_use", "id": "toolu_1", "name": tool, "input": self.args}] if tool
                   else [{"type": "text", "text": self._result(body)}])
        return web.json_response({"id": f"msg_{len(self.requests)}", "type": "message", "role": "assistant",
                                  "model": body["model"], "content": content,
                                  "stop_reason": "tool_use" if tool else "end_turn",
                                  "usage": {"input_tokens": 7, "output_tokens": 3}})


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class Weather(BaseModel):
    """Where the user asks about the weather."""

    city: str


def _config(tmp_path: Path, primary: FakeUpstream, backup: ToolUpstream, kind: str = "openai") -> Config:
    return parse_config({
        "state": {"path": str(tmp_path / "state.db")},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
        "providers": [
            {"name": "primary", "base_url": primary.base_url, "models": {"chat": "primary-model"}, "priority": 1},
            {"name": "backup", "base_url": backup.base_url, "models": {"chat": "backup-model"}, "priority": 2,
             "kind": kind},
        ],
    }, env={})


@asynccontextmanager
async def chain(tmp_path: Path, kind: str = "openai") -> AsyncIterator[tuple[FallbackChatModel, ToolUpstream]]:
    """A 503 primary, a tool-calling backup of ``kind``, and a model over both."""
    async with FakeUpstream("primary", default=error(503)) as primary, ToolUpstream("backup") as backup, \
            FallbackChatModel(config=_config(tmp_path, primary, backup, kind), model="chat") as llm:
        yield llm, backup


def _check_streamed(streamed: Sequence[AIMessage]) -> None:
    chunks = [c for c in streamed if isinstance(c, AIMessageChunk)]
    assert len(chunks) == len(streamed)
    pieces = [c.tool_call_chunks[0]["args"] for c in chunks if c.tool_call_chunks]
    assert pieces == ['{"city":', ' "Paris"}']
    whole = reduce(operator.add, chunks)
    assert whole.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1",
                                 "type": "tool_call"}]
    assert (whole.response_metadata["provider"], whole.response_metadata["fallbacks"]) == ("backup", ["primary"])
    assert whole.usage_metadata == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


@pytest.mark.anyio
async def test_bound_tools_go_out_as_openai_tools_and_come_back_as_tool_calls(tmp_path: Path) -> None:
    """bind_tools sends the tool's JSON schema; the backup's tool call is AIMessage.tool_calls."""
    async with chain(tmp_path) as (llm, backup):
        reply = await llm.bind_tools([get_weather], tool_choice="get_weather").ainvoke("weather in Paris?")
    assert reply.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1",
                                 "type": "tool_call"}]
    assert reply.response_metadata["fallbacks"] == ["primary"]
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    sent = backup.requests[0]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.anyio
async def test_a_tool_result_goes_back_as_openai_messages(tmp_path: Path) -> None:
    """An AIMessage with tool_calls and a ToolMessage become an assistant tool_calls turn and a tool turn."""
    async with chain(tmp_path) as (llm, backup):
        bound = llm.bind_tools([get_weather])
        ask = HumanMessage("weather in Paris?")
        call = await bound.ainvoke([ask])
        result = ToolMessage(get_weather.invoke(call.tool_calls[0]["args"]), tool_call_id=call.tool_calls[0]["id"])
        answer = await bound.ainvoke([ask, call, result])
    assert answer.content == "the tool said: sunny in Paris"
    assert answer.tool_calls == []
    assert backup.requests[-1]["messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "id": "call_1",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "content": "sunny in Paris", "tool_call_id": "call_1"},
    ]


def test_tool_calls_stream_as_tool_call_chunks(portal: BlockingPortal, tmp_path: Path) -> None:
    """stream: the arguments arrive in two tool_call_chunks that add up to the whole call."""
    primary, backup = FakeUpstream("primary", default=error(503)), ToolUpstream("backup")
    portal.call(primary.start)
    portal.call(backup.start)
    try:
        with FallbackChatModel(config=_config(tmp_path, primary, backup)) as llm:
            _check_streamed(list(llm.bind_tools([get_weather]).stream("weather in Paris?")))
    finally:
        portal.call(backup.close)
        portal.call(primary.close)


@pytest.mark.anyio
async def test_tool_calls_astream_as_tool_call_chunks(tmp_path: Path) -> None:
    """astream: the same chunks, from a coroutine."""
    async with chain(tmp_path) as (llm, _):
        _check_streamed([c async for c in llm.bind_tools([get_weather]).astream("weather in Paris?")])


@pytest.mark.anyio
async def test_structured_output_works_through_tool_calling(tmp_path: Path) -> None:
    """The BaseChatModel default of with_structured_output: one forced tool, parsed into the schema."""
    async with chain(tmp_path) as (llm, backup):
        parsed = await llm.with_structured_output(Weather).ainvoke("weather in Paris?")
    assert parsed == Weather(city="Paris")
    assert backup.requests[0]["tool_choice"] == "required"
    assert [t["function"]["name"] for t in backup.requests[0]["tools"]] == ["Weather"]


@pytest.mark.anyio
async def test_tool_calls_cross_into_the_anthropic_dialect(tmp_path: Path) -> None:
    """An Anthropic backup gets Anthropic tools and tool_result blocks; LangChain still sees OpenAI's shape."""
    async with chain(tmp_path, kind="anthropic") as (llm, backup):
        bound = llm.bind_tools([get_weather], tool_choice="any")
        ask = HumanMessage("weather in Paris?")
        call = await bound.ainvoke([ask])
        assert isinstance(call, AIMessage)
        answer = await bound.ainvoke([ask, call, ToolMessage("sunny", tool_call_id=call.tool_calls[0]["id"])])
    assert call.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "toolu_1",
                                "type": "tool_call"}]
    assert answer.content == "the tool said: sunny"
    first, second = backup.requests
    assert first["tools"][0]["name"] == "get_weather"
    assert first["tool_choice"] == {"type": "any"}
    assert second["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    assert second["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                 "content": "sunny"}]
