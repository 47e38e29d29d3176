"""Streams as providers really send them: no [DONE], a broken event, a slow first token, usage."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from actors.core.errors import StreamInterruptedError
from actors.runtime.supervisor import Supervisor
from actors.testing import ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio
TEXT = "one two three four five six"


async def collect(sup: Supervisor, **params: object) -> tuple[str, str, list[dict[str, object]]]:
    """The whole text of a stream, who served it, and its chunks."""
    stream = await sup.open_stream(HI, model="chat", **params)
    chunks: list[dict[str, object]] = []
    async with stream:
        async for payload in stream:
            chunks.append(msgspec.json.decode(payload))
    text = "".join(
        str(c["choices"][0]["delta"].get("content") or "")  # type: ignore[index]
        for c in chunks if c.get("choices")
    )
    return text, stream.provider, chunks


async def test_a_stream_that_ends_after_its_finish_reason_without_done_is_complete(tmp_path: Path) -> None:
    """All the text, a finish_reason and a clean end of body: the answer is whole, the provider healthy."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(ok(TEXT, chunks=6, done=False))
        text, provider, _ = await collect(sup)
        await settle()
        assert (text, provider) == (TEXT, "a")
        assert sup.state_of("a") == "healthy"
        await sup.refresh()
        assert sup.status()["providers"]["a"]["metrics"]["requests_failed"] == 0


async def test_one_malformed_event_is_skipped_and_counted(tmp_path: Path) -> None:
    """A single broken event mid-stream is dropped: the caller gets the whole text; bad_chunks counts it."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(ok(TEXT, chunks=6, malformed=(3,)))
        text, provider, _ = await collect(sup)
        await settle()
        assert (text, provider) == (TEXT, "a")
        assert sup.state_of("a") == "healthy"
        await sup.refresh()
        assert sup.status()["providers"]["a"]["metrics"]["bad_chunks"] == 1


async def test_two_malformed_events_before_the_first_token_fall_over_invisibly(tmp_path: Path) -> None:
    """Garbage before anything reached the caller: the next provider answers, the caller sees only it."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(ok(TEXT, chunks=6, malformed=(0, 0)))
        b.script(ok("from b"))
        text, provider, _ = await collect(sup)
        await settle()
        assert (text, provider) == ("from b", "b")
        assert sup.status()["providers"]["a"]["last_error"]["category"] == "bad_response"


async def test_garbage_mid_stream_is_an_interruption_not_a_silent_truncation(tmp_path: Path) -> None:
    """A second broken event after text reached the caller ends the stream with the typed error."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(ok(TEXT, chunks=6, malformed=(2, 4)))
        with pytest.raises(StreamInterruptedError) as caught:
            await collect(sup)
        assert caught.value.partial_text == "one two three four "[: len(caught.value.partial_text)]
        assert caught.value.partial_text


async def test_no_first_token_within_the_limit_falls_over(tmp_path: Path) -> None:
    """Role chunk and keep-alives but no token in first_token_timeout_s: the next provider answers."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, b)):
        a.script(ok(TEXT, first_token_after_s=60))  # real seconds: far past the virtual 10 s below
        b.script(ok("from b"))
        async with anyio.create_task_group() as tg:
            result: list[tuple[str, str]] = []

            async def call() -> None:
                text, provider, _ = await collect(sup)
                result.append((text, provider))

            tg.start_soon(call)
            await settle()
            await clock.advance(10)  # the default first_token_timeout_s
        assert result == [("from b", "b")]
        await settle()
        assert sup.status()["providers"]["a"]["last_error"]["category"] == "timeout"
        assert "no first token within 10 s" in sup.status()["providers"]["a"]["last_error"]["message"]


async def test_usage_asked_for_reaches_the_caller(tmp_path: Path) -> None:
    """stream_options.include_usage goes upstream, and the usage chunk comes back to the caller."""
    async with running(tmp_path, "a") as (sup, _, (a,)):
        a.script(ok(TEXT))
        _, _, chunks = await collect(sup, stream_options={"include_usage": True})
        assert a.requests[-1].body is not None
        assert a.requests[-1].body["stream_options"] == {"include_usage": True}
        usage = [c["usage"] for c in chunks if c.get("usage")]
        assert usage
        assert usage[-1]["completion_tokens"] == len(TEXT.split())  # type: ignore[index]
