"""One model from sync code, from a thread while a loop runs, across asyncio.run calls, and over a given Supervisor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import anyio
import anyio.to_thread
import pytest
from langchain_core.messages import AIMessageChunk

from actors.core.config import Config
from actors.core.errors import SupervisorClosedError
from actors.langchain import FallbackChatModel
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, ok
from tests.helpers import HI, make_config, primary_and_backup


def test_two_asyncio_runs_in_a_row_share_one_model(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """Each asyncio.run makes a new loop and closes it; the model's own loop outlives both."""
    _, _, config = pair
    with FallbackChatModel(config=config) as llm:
        first = asyncio.run(llm.ainvoke("hi"))
        second = asyncio.run(llm.ainvoke("hi"))
        third = llm.invoke("hi")
    assert [m.response_metadata["provider"] for m in (first, second, third)] == ["backup"] * 3
    assert first.response_metadata["fallbacks"] == ["primary"]
    assert second.response_metadata["attempts"] == 1  # the primary is in its cooldown now


def test_closing_leaves_the_supervisor_and_saves_its_state(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """A second model over the same state file starts with the primary still cooling down."""
    primary, _, config = pair
    with FallbackChatModel(config=config) as llm:
        assert llm.invoke("hi").response_metadata["fallbacks"] == ["primary"]
    with FallbackChatModel(config=config) as again:
        reply = again.invoke("hi")
    assert (reply.response_metadata["provider"], reply.response_metadata["attempts"]) == ("backup", 1)
    assert primary.completions == 1


def test_a_closed_model_refuses_calls(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """After close(), a call raises SupervisorClosedError instead of starting the Supervisor again."""
    _, _, config = pair
    llm = FallbackChatModel(config=config)
    llm.invoke("hi")
    llm.close()
    llm.close()  # idempotent
    with pytest.raises(SupervisorClosedError):
        llm.invoke("hi")


@pytest.mark.anyio
async def test_sync_invoke_from_a_thread_while_the_loop_runs(tmp_path: Path) -> None:
    """A worker thread's invoke and the loop's ainvoke are answered side by side."""
    async with primary_and_backup() as (primary, backup, _), \
            FallbackChatModel(config=make_config(tmp_path, primary, backup)) as llm:
        in_thread = await anyio.to_thread.run_sync(llm.invoke, "hi")
        in_loop = await llm.ainvoke("hi")
        chunks = await anyio.to_thread.run_sync(lambda: list(llm.stream("hi")))
    assert in_thread.response_metadata["provider"] == in_loop.response_metadata["provider"] == "backup"
    assert "".join(str(c.content) for c in chunks) == "from backup"


@pytest.mark.anyio
async def test_a_given_supervisor_is_used_on_its_own_loop_and_left_open(tmp_path: Path) -> None:
    """ainvoke/astream on the Supervisor's loop, invoke from a thread; close() leaves the Supervisor running."""
    async with primary_and_backup() as (primary, backup, _), \
            Supervisor(make_config(tmp_path, primary, backup)) as fallback:
        llm = FallbackChatModel(supervisor=fallback, model="chat")
        replies = [await llm.ainvoke("hi"), await anyio.to_thread.run_sync(llm.invoke, "hi")]
        text = "".join([str(chunk.content) async for chunk in llm.astream("hi")])
        with pytest.raises(RuntimeError, match="ainvoke"):
            llm.invoke("hi")  # on the loop's own thread it would block the Supervisor
        await llm.aclose()
        llm.close()
        assert (await fallback.chat(HI)).provider == "backup"
    assert [r.response_metadata["provider"] for r in replies] == ["backup", "backup"]
    assert replies[0].response_metadata["fallbacks"] == ["primary"]
    assert text == "from backup"


@pytest.mark.anyio
async def test_a_given_supervisor_is_reached_from_another_loop(tmp_path: Path) -> None:
    """asyncio.run in a thread makes a second loop; its ainvoke and astream hop onto the Supervisor's."""
    async with primary_and_backup() as (primary, backup, _), \
            Supervisor(make_config(tmp_path, primary, backup)) as fallback:
        llm = FallbackChatModel(supervisor=fallback)

        async def elsewhere() -> tuple[str, str]:
            reply = await llm.ainvoke("hi")
            text = "".join([str(chunk.content) async for chunk in llm.astream("hi")])
            return str(reply.response_metadata["provider"]), text

        assert await anyio.to_thread.run_sync(asyncio.run, elsewhere()) == ("backup", "from backup")


def test_a_given_supervisor_needs_its_loop(tmp_path: Path) -> None:
    """Built outside any loop and without loop=, the model can't know where the Supervisor runs."""
    config = Config(providers=())
    with pytest.raises(ValueError, match="loop="):
        FallbackChatModel(supervisor=Supervisor(config))
    with pytest.raises(ValueError, match="exactly one"):
        FallbackChatModel(model="chat")


def test_leaving_a_stream_early_releases_it(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """A consumer that stops after one chunk closes the upstream stream; the model goes on serving."""
    _, backup, config = pair
    backup.set_default(ok("a long answer in many pieces", chunks=20))
    with FallbackChatModel(config=config) as llm:
        stream = cast("Generator[AIMessageChunk, None, None]", llm.stream("hi"))  # it is one
        next(stream)
        stream.close()
        assert llm.invoke("hi").content == "a long answer in many pieces"


@pytest.mark.anyio
async def test_leaving_an_async_stream_early_releases_it(tmp_path: Path) -> None:
    """The same from a coroutine: aclose() on the stream, then another call."""
    async with primary_and_backup() as (primary, backup, _), \
            FallbackChatModel(config=make_config(tmp_path, primary, backup)) as llm:
        backup.set_default(ok("a long answer in many pieces", chunks=20))
        stream = cast("AsyncGenerator[AIMessageChunk, None]", llm.astream("hi"))
        await anext(stream)
        await stream.aclose()
        assert (await llm.ainvoke("hi")).content == "a long answer in many pieces"


def test_close_lets_a_call_in_flight_finish(pair: tuple[FakeUpstream, FakeUpstream, Config]) -> None:
    """close() from one thread while another thread's invoke waits on the provider: the invoke is answered."""
    primary, _, config = pair
    primary.set_default(ok("slow", delay_s=0.5))
    llm = FallbackChatModel(config=config)
    llm.start()
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(llm.invoke, "hi")
        deadline = time.monotonic() + 5
        while primary.completions == 0:  # bounded: until the request is at the provider
            assert time.monotonic() < deadline
            time.sleep(0.01)
        llm.close()
        assert call.result(timeout=5).content == "slow"
    with pytest.raises(SupervisorClosedError):
        llm.invoke("hi")
