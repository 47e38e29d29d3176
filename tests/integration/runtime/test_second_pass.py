"""Every candidate failed transiently and the deadline has room: one more pass, after a jittered wait."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.core.errors import AllProvidersFailedError, UpstreamRejectedError
from actors.runtime.replies import ChatReply
from actors.runtime.supervisor import Supervisor
from actors.testing import error, ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio


async def _chat_after(sup: Supervisor, clock: VirtualClock, seconds: float) -> ChatReply | BaseException:
    """The request's outcome, the virtual clock moved ``seconds`` each time it waits (at most 5 times)."""
    outcome: list[ChatReply | BaseException] = []

    async def call() -> None:
        try:
            outcome.append(await sup.chat(HI))
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        for _ in range(5):
            with anyio.fail_after(10):  # its waits are the only timers due within `seconds`
                # A clock's timer list has no event to wait on: poll it.
                while not outcome and ((due := clock.next_deadline()) is None or due > clock.now() + seconds):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await settle()
            if outcome:
                break
            await clock.advance(seconds)
    return outcome[0]


async def test_a_second_pass_answers_when_every_provider_failed_once(tmp_path: Path) -> None:
    """503, 502, reset: all three down for a moment; the second pass, in priority order, is answered."""
    async with running(tmp_path, "a", "b", "c", second_pass_backoff_s=1.0, server_error_retries=0) \
            as (sup, clock, (a, b, c)):
        a.script(error(503), ok("a is back"))
        b.script(error(502))
        c.script(error(500))
        result = await _chat_after(sup, clock, 1.0)
        assert isinstance(result, ChatReply)
        assert (result.provider, result.text, result.attempts) == ("a", "a is back", 4)
        assert (a.completions, b.completions, c.completions) == (2, 1, 1)


async def test_the_second_pass_is_the_last(tmp_path: Path) -> None:
    """Still failing on the second pass: the request fails, after two passes and no more."""
    async with running(tmp_path, "a", "b", second_pass_backoff_s=1.0, server_error_retries=0) \
            as (sup, clock, (a, b)):
        a.set_default(error(503))
        b.set_default(error(503))
        result = await _chat_after(sup, clock, 1.0)
        assert isinstance(result, AllProvidersFailedError)
        assert (a.completions, b.completions) == (2, 2)


async def test_no_second_pass_after_a_fault_that_will_not_pass(tmp_path: Path) -> None:
    """A 401 is not transient: going round again would only repeat it."""
    async with running(tmp_path, "a", "b", second_pass_backoff_s=1.0) as (sup, clock, (a, b)):
        a.set_default(error(401))
        b.set_default(error(503))
        result = await _chat_after(sup, clock, 1.0)
        assert isinstance(result, AllProvidersFailedError | UpstreamRejectedError)
        assert (a.completions, b.completions) == (1, 1)


async def test_a_429_whose_wait_is_short_is_tried_again_on_the_second_pass(tmp_path: Path) -> None:
    """a: 429 asking for 5 s (too long to wait at once), b: 503. The second pass waits for a's 429 to pass."""
    async with running(tmp_path, "a", "b", second_pass_backoff_s=1.0) as (sup, clock, (a, b)):
        a.script(error(429, retry_after=5))
        a.set_default(ok("a after its wait"))
        b.set_default(error(503))
        result = await _chat_after(sup, clock, 6.0)
        assert isinstance(result, ChatReply)
        assert (result.provider, result.text) == ("a", "a after its wait")
        assert b.completions == 1


async def test_a_provider_that_said_429_twice_is_not_asked_a_third_time(tmp_path: Path) -> None:
    """A persistent 429 is never hammered: two tries on it per request, the second pass included."""
    async with running(tmp_path, "a", "b", second_pass_backoff_s=1.0) as (sup, clock, (a, b)):
        a.set_default(error(429, retry_after=1))
        b.set_default(error(503))
        result = await _chat_after(sup, clock, 2.0)
        if not isinstance(result, BaseException):
            raise AssertionError(f"an answer came: {result!r}")
        asked = [r for r in a.requests if r.body is not None and r.body.get("max_tokens") != 1]
        assert len(asked) == 2  # the recovery probes (1-token completions) are not the request's
