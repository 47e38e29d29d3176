"""Every way of calling FallbackChatModel is answered by the backup when the primary fails (503)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import reduce
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from actors.core.config import Config
from actors.langchain import FallbackChatModel
from actors.testing import FakeUpstream
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
