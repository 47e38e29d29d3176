"""A stream that breaks after the caller had part of it goes on from the next provider as one answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from aiohttp import web

from actors.core.clock import VirtualClock
from actors.core.config import parse_config
from actors.core.errors import StreamInterruptedError
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, cut_stream, error, ok, stall_stream
from actors.testing.upstream import PREFILL_REFUSAL, PrefillMode
from tests.helpers import HI, read_stream, service, settle

pytestmark = pytest.mark.anyio
WORDS = [f"w{i}" for i in range(60)]
TEXT = " ".join(WORDS)
CHUNKS = 60  # one word (and its space) a chunk, about


@asynccontextmanager
async def pair(tmp_path: Path, *, prefill: Any, mode: PrefillMode, **routing: Any,
               ) -> AsyncIterator[tuple[Supervisor, VirtualClock, FakeUpstream, FakeUpstream]]:
    """Primary ``a`` and backup ``b`` (``b`` has the given prefill setting and behaviour)."""
    async with FakeUpstream("a") as a, FakeUpstream("b", prefill=mode) as b:
        config = parse_config({
            "state": {"path": str(tmp_path / "state.db")},
            "routing": routing,
            "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0,
                       "probe_min_interval_s": 0},
            "providers": [
                {"name": "a", "base_url": a.base_url, "models": {"chat": "a-model"}, "priority": 1},
                {"name": "b", "base_url": b.base_url, "models": {"chat": "b-model"}, "priority": 2,
                 "prefill": prefill},
            ],
        })
        clock = VirtualClock()
        async with Supervisor(config, clock=clock) as sup:
            yield sup, clock, a, b


async def collect(sup: Supervisor, **params: Any) -> tuple[str, list[dict[str, Any]], str]:
    """The caller's text, its chunks, and the provider that ended the stream."""
    chunks: list[dict[str, Any]] = []
    async with await sup.open_stream(HI, model="chat", **params) as stream:
        async for payload in stream:
            chunks.append(msgspec.json.decode(payload))
    text = "".join(str(c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    return text, chunks, stream.provider


def sent_prefill(fake: FakeUpstream) -> str | None:
    """The assistant prefill of the fake's last request (None: it was asked from the start)."""
    body = fake.requests[-1].body
    assert body is not None
    last = body["messages"][-1]
    return str(last["content"]) if last["role"] == "assistant" else None


async def test_a_cut_stream_goes_on_from_a_prefill(tmp_path: Path) -> None:
    """Cut after 40 of 60 words: the backup gets the text so far as a prefill and streams the rest."""
    async with pair(tmp_path, prefill=True, mode="continue") as (sup, _, a, b):
        a.script(cut_stream(40, text=TEXT, chunks=CHUNKS))
        b.set_default(ok(TEXT, chunks=CHUNKS))
        text, chunks, provider = await collect(sup)
        assert text == TEXT
        assert provider == "b"
        sent = sent_prefill(b)
        assert sent is not None
        assert TEXT.startswith(sent)
        assert len(sent) > len(TEXT) // 2
        last = [c for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")][-1]
        assert last["model"] == "b-model"  # who produced the end
        parts = last["x_fallback"]["parts"]
        assert [(p["provider"], p["how"]) for p in parts] == [("a", "first"), ("b", "prefill")]
        assert sum(p["chars"] for p in parts) == len(TEXT)
        await settle()
        assert sup.state_of("a") != "healthy"  # the cut counts against a
        await sup.refresh()
        fallback = sup.status()["recent_fallbacks"][-1]
        assert (fallback["from"], fallback["to"], fallback["reason"]) == ("a", "b", "stream_interrupted")


async def test_a_provider_without_prefill_restarts_and_is_spliced(tmp_path: Path) -> None:
    """prefill = false: the backup answers from the start; what the caller has is dropped, exactly."""
    async with pair(tmp_path, prefill=False, mode="ignore") as (sup, _, a, b):
        a.script(cut_stream(40, text=TEXT, chunks=CHUNKS))
        b.set_default(ok(TEXT, chunks=7))  # chunk borders elsewhere than a's
        text, chunks, _ = await collect(sup)
        assert text == TEXT
        assert sent_prefill(b) is None
        assert not any(c["choices"][0]["delta"].get("role") for c in chunks[1:] if c.get("choices"))
        parts = [c for c in chunks if "x_fallback" in c][-1]["x_fallback"]["parts"]
        assert parts[1]["how"] == "splice"


async def test_a_refused_prefill_is_spliced_and_never_the_callers_error(tmp_path: Path) -> None:
    """The backup answers the prefill with a 400: it is asked again from the start, the answer is whole."""
    async with pair(tmp_path, prefill=True, mode="reject") as (sup, _, a, b):
        a.script(cut_stream(30, text=TEXT, chunks=CHUNKS))
        b.set_default(ok(TEXT, chunks=CHUNKS))
        text, _, provider = await collect(sup)
        assert (text, provider) == (TEXT, "b")
        assert len(b.requests) == 2
        assert sent_prefill(b) is None
        await settle()
        assert sup.state_of("b") == "healthy"  # a refused prefill is no fault of b's


async def test_a_restart_that_says_something_else_ends_with_the_typed_error(tmp_path: Path) -> None:
    """A spliced restart that diverges: StreamInterruptedError with the text so far, never a mix."""
    async with pair(tmp_path, prefill=False, mode="ignore") as (sup, _, a, b):
        a.script(cut_stream(2, text="abcdefgh", chunks=4))
        b.set_default(ok("something else entirely"))
        with pytest.raises(StreamInterruptedError) as caught:
            await collect(sup)
        assert caught.value.partial_text == "abcd"
        assert "says something else" in caught.value.reason
        assert b.completions == 1


async def test_a_partial_answer_with_tool_calls_is_not_continued(tmp_path: Path) -> None:
    """Tool-call deltas already sent: no continuation could make one call of them; the typed error ends it."""
    async with pair(tmp_path, prefill=True, mode="continue") as (sup, _, a, b):
        a.script(cut_stream(2, text='{"city": "Paris", "days": 3}', chunks=5, tool="weather"))
        with pytest.raises(StreamInterruptedError) as caught:
            await collect(sup)
        assert "tool calls" in caught.value.reason
        assert b.completions == 0


async def test_a_stall_mid_stream_goes_on_after_the_idle_limit(tmp_path: Path) -> None:
    """No chunk for stream_idle_timeout_s after text reached the caller: the backup finishes the answer."""
    async with pair(tmp_path, prefill=True, mode="continue", stream_idle_timeout_s=5) as (sup, clock, a, b):
        a.script(stall_stream(20, text=TEXT, chunks=CHUNKS))
        b.set_default(ok(TEXT, chunks=CHUNKS))
        result: list[str] = []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                result.append((await collect(sup))[0])
            tg.start_soon(call)
            await a.wait_hanging()
            await clock.advance(6)
        assert result == [TEXT]
        await settle()
        assert sup.status()["providers"]["a"]["last_error"]["category"] == "timeout"


async def test_a_continuation_that_fails_before_its_first_token_tries_the_next(tmp_path: Path) -> None:
    """The first continuation attempt fails (503): the next provider goes on; the caller sees one answer."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b, FakeUpstream("c", prefill="continue") as c:
        config = parse_config({
            "state": {"path": str(tmp_path / "state.db")},
            "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
            "providers": [
                {"name": f.name, "base_url": f.base_url, "models": {"chat": f"{f.name}-m"},
                 "priority": i, "prefill": True} for i, f in enumerate((a, b, c))],
        })
        async with Supervisor(config, clock=VirtualClock()) as sup:
            a.script(cut_stream(10, text=TEXT, chunks=CHUNKS))
            b.script(error(503))
            c.set_default(ok(TEXT, chunks=CHUNKS))
            text, _, provider = await collect(sup)
            assert (text, provider) == (TEXT, "c")


async def test_usage_of_a_continued_stream_names_the_parts(tmp_path: Path) -> None:
    """stream_options usage comes from the provider that finished, with the parts beside it."""
    async with pair(tmp_path, prefill=True, mode="continue") as (sup, _, a, b):
        a.script(cut_stream(40, text=TEXT, chunks=CHUNKS))
        b.set_default(ok(TEXT, chunks=CHUNKS))
        _, chunks, _ = await collect(sup, stream_options={"include_usage": True})
        usage = [c for c in chunks if c.get("usage")]
        assert usage
        assert usage[-1]["x_fallback"]["parts"][-1]["provider"] == "b"
        assert usage[-1]["usage"]["completion_tokens"] < len(WORDS)  # b wrote only the rest


class RefusingClaude:
    """A Messages API that refuses assistant prefill (as newer Claude models do) and streams TEXT otherwise."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if body["messages"][-1]["role"] == "assistant":
            return web.json_response({"type": "error", "error": {
                "type": "invalid_request_error", "message": PREFILL_REFUSAL}}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "model": "claude-x", "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": 3, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w + " "}}
              for w in WORDS[:-1]),
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": WORDS[-1]}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 60}},
            {"type": "message_stop"},
        ]
        for event in events:
            await resp.write(b"event: " + event["type"].encode() + b"\ndata: "
                             + msgspec.json.encode(event) + b"\n\n")
        await resp.write_eof()
        return resp


async def test_auto_learns_a_refused_prefill_and_remembers_it_across_restarts(tmp_path: Path) -> None:
    """prefill = "auto" on Anthropic: one refusal, then splices at once, also after a restart."""
    claude = RefusingClaude()
    app = web.Application()
    app.router.add_post("/v1/messages", claude.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with FakeUpstream("a") as a:
            config = parse_config({
                "state": {"path": str(tmp_path / "state.db")},
                "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
                "providers": [
                    {"name": "a", "base_url": a.base_url, "models": {"chat": "a-model"}, "priority": 1},
                    {"name": "claude", "kind": "anthropic", "base_url": f"http://{host}:{port}",
                     "models": {"chat": "claude-x"}, "priority": 2},
                ],
            })
            for run in range(2):  # the second run starts from the state file the first left
                async with Supervisor(config, clock=VirtualClock()) as sup:
                    await sup.enable("a")  # the first run's cut cooled it
                    a.script(cut_stream(30, text=TEXT, chunks=CHUNKS))
                    before = len(claude.bodies)
                    text, _, provider = await collect(sup)
                    assert (text, provider) == (TEXT, "claude")
                    roles = [b["messages"][-1]["role"] for b in claude.bodies[before:]]
                    assert roles == (["assistant", "user"] if run == 0 else ["user"])
                    await settle()
                    assert sup.state_of("claude") == "healthy"
    finally:
        await runner.cleanup()


async def test_the_openai_sdk_streams_one_whole_answer_through_the_gateway(tmp_path: Path) -> None:
    """Through the gateway and the official SDK: a cut stream is spliced from the backup; no error event."""
    a, b = FakeUpstream("a"), FakeUpstream("b", prefill="continue")
    async with service(tmp_path, a, b, providers={"b": {"prefill": True}}) as svc:
        a.script(cut_stream(25, text=TEXT, chunks=CHUNKS))
        b.set_default(ok(TEXT, chunks=CHUNKS))
        parts: list[str] = []
        client = svc.client()
        try:
            await read_stream(client, parts)
        finally:
            await client.close()
        assert "".join(parts) == TEXT
        status, _, body = await svc.get("/events?type=fallback_triggered")
        assert status == 200
        events = msgspec.json.decode(body)["events"]
        assert [(e["data"]["from_provider"], e["data"]["to_provider"], e["data"]["reason"])
                for e in events] == [
            ("a", "b", "stream_interrupted")]
