"""The library's errors reach LangChain callers as they are, readable, from every way of calling."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from functools import reduce
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessageChunk

from actors.core.config import Config
from actors.langchain import (
    AllProvidersFailedError,
    FallbackChatModel,
    StreamInterruptedError,
    UnknownModelError,
    UpstreamRejectedError,
)
from actors.testing import FakeUpstream, cut_stream, error
from tests.helpers import make_config


@pytest.fixture
def failing(portal: BlockingPortal, tmp_path: Path) -> Iterator[tuple[FakeUpstream, FallbackChatModel]]:
    """A lone provider (so nothing can take over) and a model over it; script its answers."""
    lone = FakeUpstream("lone")
    portal.call(lone.start)
    try:
        with FallbackChatModel(config=make_config(tmp_path, lone)) as llm:
            yield lone, llm
    finally:
        portal.call(lone.close)


def test_all_providers_failed_lists_every_attempt(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """Both providers answer 503: invoke raises AllProvidersFailedError naming each attempt."""
    _, backup, config = pair
    backup.set_default(error(503))
    with FallbackChatModel(config=config) as llm, pytest.raises(AllProvidersFailedError) as caught:
        llm.invoke("hi")
    assert [(a.provider, a.status) for a in caught.value.attempts] == [("primary", 503), ("backup", 503)]
    assert caught.value.model == "chat"


def test_a_rejected_request_is_upstream_rejected(failing: tuple[FakeUpstream, FallbackChatModel]) -> None:
    """A 400 invalid request is the caller's: UpstreamRejectedError with the provider and status."""
    lone, llm = failing
    lone.script(error(400, "messages: bad role"))
    with pytest.raises(UpstreamRejectedError, match="bad role") as caught:
        llm.invoke("hi")
    assert (caught.value.provider, caught.value.status) == ("lone", 400)


def test_a_stream_cut_after_its_first_token_is_interrupted(failing: tuple[FakeUpstream, FallbackChatModel]
                                                           ) -> None:
    """The chunks before the cut reach the caller, then StreamInterruptedError with the same partial text."""
    lone, llm = failing
    lone.set_default(cut_stream(after=2, text="abcdef", chunks=3))
    seen: list[AIMessageChunk] = []
    with pytest.raises(StreamInterruptedError) as caught:
        seen.extend(llm.stream("hi"))
    assert caught.value.provider == "lone"
    assert caught.value.partial_text == "abcd"
    assert reduce(operator.add, seen).content == "abcd"


def test_an_unknown_model_is_named(failing: tuple[FakeUpstream, FallbackChatModel]) -> None:
    """A model= no provider serves raises UnknownModelError (a LookupError) listing the known ones."""
    _, llm = failing
    with pytest.raises(UnknownModelError, match="unknown model 'smart': configured models are chat"):
        llm.invoke("hi", model="smart")


@pytest.mark.anyio
async def test_async_calls_raise_the_same_errors(tmp_path: Path) -> None:
    """ainvoke and astream raise AllProvidersFailedError too (across the thread hop, unwrapped)."""
    async with FakeUpstream("lone", default=error(503)) as lone, \
            FallbackChatModel(config=make_config(tmp_path, lone)) as llm:
        with pytest.raises(AllProvidersFailedError):
            await llm.ainvoke("hi")
        with pytest.raises(AllProvidersFailedError):
            _ = [chunk async for chunk in llm.astream("hi")]


def test_with_fallbacks_catches_them(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """LangChain's own with_fallbacks takes over when every provider failed."""
    _, backup, config = pair
    backup.set_default(error(503))
    with FallbackChatModel(config=config) as llm:
        chain = llm.with_fallbacks([FakeListChatModel(responses=["canned"])],
                                   exceptions_to_handle=(AllProvidersFailedError,))
        assert chain.invoke("hi").content == "canned"
