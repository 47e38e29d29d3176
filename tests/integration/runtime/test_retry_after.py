"""A short Retry-After on the preferred provider is waited out there; a long one, or a second, falls over."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from actors.runtime.replies import ChatReply
from actors.runtime.supervisor import Supervisor
from actors.testing import error, ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio


async def _chat_while(sup: Supervisor, advance: object) -> ChatReply:
    """A chat that meets a 429 on ``a``; the clock moves on once ``a`` is cooling (the request waits then)."""
    replies: list[ChatReply] = []
    async with anyio.create_task_group() as tg:
        async def call() -> None:
            replies.append(await sup.chat(HI))
        tg.start_soon(call)
        await sup.wait_for_state("a", "cooldown")
        await settle()
        await advance()  # type: ignore[operator]
    return replies[0]


@pytest.mark.parametrize("status", [429, 503])
async def test_a_short_retry_after_is_waited_out_on_the_same_provider(tmp_path: Path, status: int) -> None:
    """Retry-After 2 s on the primary: the request waits 2 s and the primary answers; b is never asked."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, b)):
        a.script(error(status, retry_after=2))
        a.set_default(ok("from a"))  # (the cooldown's own probe may come first: it finds a healed too)
        start = clock.now()
        reply = await _chat_while(sup, lambda: clock.advance(2))
        await settle()
        assert (reply.provider, reply.text, reply.attempts) == ("a", "from a", 2)
        assert clock.now() - start >= 2
        assert b.completions == 0
        assert sup.state_of("a") == "healthy"  # the answer after the wait is the evidence


async def test_a_second_short_retry_after_falls_over(tmp_path: Path) -> None:
    """A 429 again after the wait: at most two tries on that provider, then the next one answers."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, b)):
        a.script(error(429, retry_after=2), error(429, retry_after=2))
        b.script(ok("from b"))
        reply = await _chat_while(sup, lambda: clock.advance(2))
        assert (reply.provider, a.completions) == ("b", 2)


async def test_a_long_retry_after_falls_over_at_once(tmp_path: Path) -> None:
    """Retry-After 30 s is past retry_after_wait_s (3 s): no wait, the next provider answers now."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, b)):
        a.script(error(429, retry_after=30))
        b.script(ok("from b"))
        start = clock.now()
        reply = await sup.chat(HI)
        assert (reply.provider, clock.now()) == ("b", start)
        assert a.completions == 1


async def test_no_wait_past_the_request_deadline(tmp_path: Path) -> None:
    """A short Retry-After that would end after the request's deadline is not waited for."""
    async with running(tmp_path, "a", "b", request_deadline_s=1) as (sup, clock, (a, b)):
        a.script(error(429, retry_after=2))
        b.script(ok("from b"))
        start = clock.now()
        reply = await sup.chat(HI)
        assert (reply.provider, clock.now()) == ("b", start)
