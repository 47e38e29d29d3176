"""Every way of calling FallbackChatModel is answered by the backup when the primary fails (503)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import reduce
from pathlib import Path

import msgspec
import pytest
from langchain_core.messages import BaseMessage

from actors.core.config import Config, Secret
from actors.langchain import AllProvidersFailedError, FallbackChatModel
from actors.testing import FakeUpstream, cut_stream, error, ok
from tests.helpers import make_config, primary_and_backup

USAGE = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}  # FakeUpstream counts words


def _invoke(llm: FallbackChatModel) -> list[BaseMessage]:
    return [llm.invoke("hi")]


def _stream(llm: FallbackChatModel) -> list[BaseMessage]:
    return [reduce(operator.add, llm.stream("hi"))]


def _batch(llm: FallbackChatModel) -> Sequence[BaseMessage]:
    return llm.batch(["hi", "hi"])


async def _ainvoke(llm: FallbackChatModel) -> list[BaseMessage]:
    return [await llm.ainvoke("hi")]


async def _astream(llm: FallbackChatModel) -> list[BaseMessage]:
    return [reduce(operator.add, [chunk async for chunk in llm.astream("hi")])]


async def _abatch(llm: FallbackChatModel) -> Sequence[BaseMessage]:
    return await llm.abatch(["hi", "hi"])


def _check(replies: Sequence[BaseMessage]) -> None:
    """Each reply is the backup's, with usage; one at least says it fell back from the 503 primary."""
    assert [r.content for r in replies] == ["from backup"] * len(replies)
    assert all(r.response_metadata["provider"] == "backup" for r in replies)
    assert all(r.usage_metadata == USAGE for r in replies)  # type: ignore[attr-defined]
    fell_back = [r.response_metadata for r in replies if r.response_metadata["fallbacks"]]
    assert fell_back, [r.response_metadata for r in replies]
    meta = fell_back[0]
    assert (meta["fallbacks"], meta["attempts"]) == (["primary"], 2)
    assert [(a["provider"], a["status"], a["category"]) for a in meta["attempt_log"]] == [
        ("primary", 503, "service_unavailable")]
    assert meta["logical_model"] == "chat"
    assert meta["finish_reason"] == "stop"
    assert meta["model_name"] == "backup-model"


@pytest.mark.parametrize("call", [pytest.param(_invoke, id="invoke"), pytest.param(_stream, id="stream"),
                                  pytest.param(_batch, id="batch")])
def test_sync_calls_fail_over_to_the_backup(pair: tuple[FakeUpstream, FakeUpstream, Config],
                                            call: Callable[[FallbackChatModel], Sequence[BaseMessage]]) -> None:
    """From sync code (no event loop running), the 503 primary is replaced by the backup."""
    primary, backup, config = pair
    with FallbackChatModel(config=config, model="chat") as llm:
        _check(call(llm))
    assert primary.completions >= 1
    assert backup.completions >= 1


@pytest.mark.anyio
@pytest.mark.parametrize("call", [pytest.param(_ainvoke, id="ainvoke"), pytest.param(_astream, id="astream"),
                                  pytest.param(_abatch, id="abatch")])
async def test_async_calls_fail_over_to_the_backup(tmp_path: Path, call: Callable[[FallbackChatModel], object]
                                                   ) -> None:
    """From a coroutine, the 503 primary is replaced by the backup."""
    async with primary_and_backup() as (primary, backup, _), \
            FallbackChatModel(config=make_config(tmp_path, primary, backup), model="chat") as llm:
        replies = await call(llm)  # type: ignore[misc]
    _check(replies)


def test_a_streamed_answer_says_who_answers_before_its_first_token(
        pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """The first chunk carries provider, attempts and fallbacks; the text follows; usage comes last."""
    _, _, config = pair
    with FallbackChatModel(config=config) as llm:
        chunks = list(llm.stream("hi"))
    first = chunks[0]
    assert first.content == ""
    assert (first.response_metadata["provider"], first.response_metadata["fallbacks"]) == ("backup", ["primary"])
    assert "".join(str(c.content) for c in chunks) == "from backup"
    assert [c.usage_metadata for c in chunks if c.usage_metadata] == [USAGE]


@pytest.mark.anyio
async def test_a_call_can_pin_the_chain_or_turn_fallback_off(tmp_path: Path) -> None:
    """``fallback=`` in a call (or model_kwargs) reaches routing: pinned to the backup, the failing
    primary is never asked; with fallback off, the primary's 503 is the caller's answer."""
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup:
        primary.set_default(error(503))
        backup.set_default(ok("from backup"))
        config = make_config(tmp_path, primary, backup, server_error_retries=0)
        async with FallbackChatModel(config=config, model="chat") as llm:
            pinned = await llm.ainvoke("hi", fallback={"providers": ["backup"]})
            assert (pinned.content, primary.completions) == ("from backup", 0)
            with pytest.raises(AllProvidersFailedError, match="fallback is off"):
                await llm.ainvoke("hi", fallback={"enabled": False})
    assert primary.completions == 1 and backup.completions == 1
    assert all("fallback" not in (r.body or {}) for r in backup.requests)


@pytest.mark.anyio
async def test_a_primary_with_a_wrong_key_falls_over_to_the_backup(tmp_path: Path) -> None:
    """The primary answers 401 (its key is wrong): the backup answers ainvoke and astream alike."""
    async with FakeUpstream("primary", api_key="right") as primary, FakeUpstream("backup") as backup:
        backup.set_default(ok("from backup"))
        config = make_config(tmp_path, primary, backup)
        wrong = msgspec.structs.replace(config.providers[0], api_key=Secret("sk-wrong"))
        config = msgspec.structs.replace(config, providers=(wrong, config.providers[1]))
        async with FallbackChatModel(config=config, model="chat") as llm:
            reply = await llm.ainvoke("hi")
            streamed = reduce(operator.add, [c async for c in llm.astream("hi")])
    assert reply.content == streamed.content == "from backup"
    assert reply.response_metadata["attempt_log"][0]["status"] == 401
    assert primary.completions == 1  # out of routing after the 401: the stream went straight to backup


@pytest.mark.anyio
async def test_a_stream_cut_mid_answer_is_continued_by_the_backup(tmp_path: Path) -> None:
    """The primary's stream breaks after two chunks; the backup restarts it and the splice drops what
    the caller already has: astream yields the whole answer once; the first chunk says who started it,
    the last who finished it and who wrote what."""
    text = "one two three four five six"
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup:
        primary.script(cut_stream(after=2, text=text, chunks=6))
        backup.set_default(ok(text, chunks=6))
        async with FallbackChatModel(config=make_config(tmp_path, primary, backup), model="chat") as llm:
            chunks = [c async for c in llm.astream("hi")]
    whole = reduce(operator.add, chunks)
    assert whole.content == text
    meta = whole.response_metadata
    assert (meta["provider"], meta["finished_by"], meta["continued"]) == ("primary", "backup", True)
    assert [p["provider"] for p in meta["parts"]] == ["primary", "backup"]
