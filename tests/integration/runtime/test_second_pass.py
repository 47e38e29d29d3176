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
    """The request's outcome, with the virtual clock moved ``seconds`` once it waits for its second pass."""
    outcome: list[ChatReply | BaseException] = []

    async def call() -> None:
        try:
            outcome.append(await sup.chat(HI))
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(10):  # the pass's wait is the only timer due within `seconds`
            # A clock's timer list has no event to wait on: poll it.
            while not outcome and ((due := clock.next_deadline()) is None or due > clock.now() + seconds):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await settle()
        if not outcome:
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
