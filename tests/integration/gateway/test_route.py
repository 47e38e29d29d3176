"""Per-request control of the chain (x-fallback-providers, x-fallback, the body's "fallback") and the
rollback switch ``routing.fallback = false``, through the gateway with the official SDK as the client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from actors.testing import FakeUpstream, error
from tests.helpers import read_stream, service

pytestmark = pytest.mark.anyio

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _three() -> tuple[FakeUpstream, FakeUpstream, FakeUpstream]:
    return FakeUpstream("groq"), FakeUpstream("kilocode"), FakeUpstream("openrouter")


async def _ask(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, str]:
    raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI, **kw)
    return raw.headers["x-fallback-provider"], raw.headers["x-fallback-attempts"]


async def test_the_header_pins_and_reorders_the_chain(tmp_path: Path) -> None:
    """x-fallback-providers: openrouter,kilocode skips groq (priority 1) and tries openrouter first;
    when it fails, kilocode answers; groq is never asked."""
    groq, kilo, router = _three()
    async with service(tmp_path, groq, kilo, router) as s:
        client = s.client()
        assert await _ask(client, extra_headers={"x-fallback-providers": "openrouter,kilocode"}) == \
            ("openrouter", "1")
        router.script(error(503))
        assert await _ask(client, extra_headers={"x-fallback-providers": "openrouter, kilocode"}) == \
            ("kilocode", "2")
        await client.close()
    assert groq.completions == 0


async def test_the_body_pins_the_chain_and_the_key_never_reaches_a_provider(tmp_path: Path) -> None:
    groq, kilo, router = _three()
    async with service(tmp_path, groq, kilo, router) as s:
        client = s.client()
        got = await _ask(client, extra_body={"fallback": {"providers": ["kilocode"]}})
        parts: list[str] = []
        async with await client.chat.completions.create(
                model="chat", messages=HI, stream=True, extra_body={"fallback": {"providers": ["openrouter"]}}
        ) as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        await client.close()
    assert got == ("kilocode", "1") and "".join(parts) == "Hello from fake"
    assert kilo.requests[0].body is not None and "fallback" not in kilo.requests[0].body
    assert router.requests[0].body is not None and "fallback" not in router.requests[0].body


async def test_x_fallback_off_tries_the_first_provider_only(tmp_path: Path) -> None:
    """x-fallback: off: groq's 503 comes back as a 503 naming the switch; kilocode is not asked."""
    groq, kilo, router = _three()
    groq.script(error(503), error(503))
    async with service(tmp_path, groq, kilo, router, routing={"server_error_retries": 0}) as s:
        status, _, body = await s.post("/v1/chat/completions", headers={"x-fallback": "off"},
                                       json={"model": "chat", "messages": HI})
    assert status == 503
    assert "fallback is off" in body["error"]["message"]
    assert [a["provider"] for a in body["error"]["attempts"]] == ["groq"]
    assert (kilo.completions, router.completions) == (0, 0)


@pytest.mark.parametrize(("headers", "body", "param", "words"), [
    ({"x-fallback-providers": "openrouter,nope"}, {}, "x-fallback-providers", "unknown provider 'nope'"),
    ({"x-fallback-providers": ","}, {}, "x-fallback-providers", "names no provider"),
    ({"x-fallback-providers": "kilocode,kilocode"}, {}, "x-fallback-providers", "twice"),
    ({"x-fallback": "maybe"}, {}, "x-fallback", "'off' or 'on'"),
    ({}, {"fallback": {"providers": ["ghost"]}}, "fallback.providers", "unknown provider 'ghost'"),
    ({}, {"fallback": {"providers": "kilocode"}}, "fallback.providers", "list of provider names"),
    ({}, {"fallback": {"order": ["kilocode"]}}, "fallback.order", "unknown key"),
    ({}, {"fallback": "off"}, "fallback", "must be an object"),
    ({}, {"fallback": {"enabled": "no"}}, "fallback.enabled", "true or false"),
])
async def test_a_bad_chain_is_a_400_naming_what_is_wrong(tmp_path: Path, headers: dict[str, str],
                                                        body: dict[str, Any], param: str, words: str) -> None:
    groq, kilo, router = _three()
    async with service(tmp_path, groq, kilo, router) as s:
        status, _, answer = await s.post("/v1/chat/completions", headers=headers,
                                         json={"model": "chat", "messages": HI, **body})
    assert status == 400, answer
    assert answer["error"]["param"] == param and words in answer["error"]["message"]
    assert groq.completions + kilo.completions + router.completions == 0


async def test_a_provider_that_does_not_serve_the_model_is_a_400(tmp_path: Path) -> None:
    groq, kilo = FakeUpstream("groq"), FakeUpstream("kilocode")
    async with service(tmp_path, groq, kilo, providers={"kilocode": {"models": {"fast": "k-fast"}}}) as s:
        status, _, answer = await s.post("/v1/chat/completions", headers={"x-fallback-providers": "kilocode"},
                                         json={"model": "chat", "messages": HI})
    assert status == 400 and "kilocode does not serve model 'chat'" in answer["error"]["message"]


async def test_the_rollback_switch_is_single_provider_mode(tmp_path: Path) -> None:
    """routing.fallback = false: the highest-priority usable provider only. Its failure is the caller's
    answer (the same provider is still retried, as any client would), a stream too; a provider already
    out of routing is skipped for the next usable one; a request can't turn fallback back on."""
    groq, kilo, router = _three()
    groq.script(error(500), error(500))  # 500: one retry on the same provider (server_error_retries = 1)
    async with service(tmp_path, groq, kilo, router, routing={"fallback": False}) as s:
        status, _, body = await s.post("/v1/chat/completions", json={"model": "chat", "messages": HI,
                                                                     "fallback": {"enabled": True}})
        assert status == 503 and [a["provider"] for a in body["error"]["attempts"]] == ["groq", "groq"]
        assert (kilo.completions, router.completions) == (0, 0)
        _, _, doc = await s.get("/status")
        assert json.loads(doc)["routing"] == {"fallback": False}
        await s.supervisor.disable("groq")  # out of routing: the next usable one is "the" provider now
        client = s.client()
        assert await _ask(client) == ("kilocode", "1")
        parts: list[str] = []
        await read_stream(client, parts)
        await client.close()
    assert "".join(parts) == "Hello from fake" and router.completions == 0


async def test_the_embedded_api_takes_the_same_keys(tmp_path: Path) -> None:
    groq, kilo, router = _three()
    async with service(tmp_path, groq, kilo, router) as s:
        reply = await s.supervisor.chat(HI, fallback={"providers": ["openrouter"]})  # type: ignore[arg-type]
    assert reply.provider == "openrouter" and groq.completions == 0
