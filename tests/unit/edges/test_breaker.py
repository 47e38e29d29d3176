"""RedisBreaker on a virtual clock: when it opens, what it answers while open, how it comes back."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.edges.shared import BreakerStatus, RedisBreaker, describe_failure

pytestmark = pytest.mark.anyio


class Refused(Exception):
    """Stands for redis-py's ConnectionError (the breaker is told which classes count)."""


class Server:
    """A fake Redis call: answers "PONG", or fails as told, counting how often it was reached."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    async def ping(self) -> str:
        self.calls += 1
        if not self.up:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as exc:
                raise Refused("Error 111 connecting to 127.0.0.1:6379.") from exc
        return "PONG"


def _breaker(clock: VirtualClock, reports: list[BreakerStatus], **options: Any) -> RedisBreaker:
    return RedisBreaker("127.0.0.1:6379", errors=(Refused,), clock=clock, on_change=reports.append,
                        rng=random.Random(7), base_backoff_s=1, max_backoff_s=8, **options)


async def test_a_failure_opens_it_and_open_calls_never_reach_the_server() -> None:
    """One failure opens it (reported once, naming the root cause); until the backoff ends, calls are None."""
    clock, reports, server = VirtualClock(), list[BreakerStatus](), Server()
    breaker = _breaker(clock, reports)
    server.up = False
    assert await breaker.call(server.ping) is None
    assert [r.state for r in reports] == ["open"]
    assert reports[0].reason == "redis unreachable at 127.0.0.1:6379: ConnectionRefusedError"
    for _ in range(5):
        assert await breaker.call(server.ping) is None
    assert server.calls == 1
    assert len(reports) == 1


async def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    """Each failed trial doubles the wait (x0.5 to x1 jitter), never past max_backoff_s; none is reported."""
    clock, reports, server = VirtualClock(), list[BreakerStatus](), Server()
    breaker = _breaker(clock, reports)
    server.up = False
    waits: list[float] = []
    for _ in range(7):
        opened = clock.now()
        assert await breaker.call(server.ping) is None
        waits.append(breaker.retry_at() - opened)
        await clock.advance(breaker.retry_at() - clock.now())
    for wait, nominal in zip(waits, [1, 2, 4, 8, 8, 8, 8], strict=True):
        assert nominal / 2 <= wait <= nominal
    assert [r.state for r in reports] == ["open"]
    assert server.calls == 7


async def test_a_successful_trial_closes_it_and_says_so() -> None:
    """Once the backoff is over, the next call is the trial; it succeeds, so it closes (reported once)."""
    clock, reports, server = VirtualClock(), list[BreakerStatus](), Server()
    breaker = _breaker(clock, reports)
    server.up = False
    await breaker.call(server.ping)
    server.up = True
    assert await breaker.call(server.ping) is None  # still backing off: not even tried
    await clock.advance(1)
    assert await breaker.call(server.ping) == "PONG"
    assert [r.state for r in reports] == ["open", "closed"]
    assert breaker.closed
    assert breaker.status.failures == 0
    assert breaker.status.reason == ""


async def test_only_one_trial_is_in_flight() -> None:
    """While the half-open trial runs, other calls answer None at once."""
    clock, reports = VirtualClock(), list[BreakerStatus]()
    breaker = _breaker(clock, reports)
    await breaker.call(Server().ping)
    breaker.failed(Refused("down"))
    await clock.advance(1)
    release, results = anyio.Event(), list[str | None]()

    async def slow() -> str:
        await release.wait()
        return "PONG"

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _record(breaker, slow, results))
        await anyio.wait_all_tasks_blocked()
        assert breaker.status.state == "half_open"
        assert await breaker.call(Server().ping) is None
        release.set()
    assert results == ["PONG"]
    assert breaker.closed


async def _record(breaker: RedisBreaker, fn: Callable[[], Awaitable[str]], results: list[str | None]) -> None:
    results.append(await breaker.call(fn))


async def test_a_slow_call_is_cut_at_the_timeout() -> None:
    """A call that does not answer within timeout_s answers None, and the reason says it timed out."""
    clock, reports = VirtualClock(), list[BreakerStatus]()
    breaker = _breaker(clock, reports, timeout_s=0.05)

    async def hang() -> str:
        await anyio.sleep(10)
        return "late"

    with anyio.fail_after(2):
        assert await breaker.call(hang) is None
    assert reports[0].reason == "redis unreachable at 127.0.0.1:6379: TimeoutError (no answer in time)"


async def test_cancelling_a_trial_gives_no_verdict() -> None:
    """A trial cancelled from outside leaves it open, and the next call may try again at once."""
    clock, reports = VirtualClock(), list[BreakerStatus]()
    breaker = _breaker(clock, reports)
    breaker.failed(Refused("down"))
    await clock.advance(1)

    async def hang() -> str:
        await anyio.sleep(10)
        return "late"

    with anyio.move_on_after(0.01):
        await breaker.call(hang)
    assert breaker.status.state == "open"
    assert breaker.status.failures == 1
    assert await breaker.call(Server().ping) == "PONG"


def test_the_reason_never_holds_a_secret() -> None:
    """A Redis-level refusal adds its message, with the password and any URL user info masked."""
    exc = Refused("WRONGPASS for redis://admin:pw-42@cache:6379 using pw-42")
    reason = describe_failure(exc, "cache:6379", secrets=["pw-42"])
    assert "pw-42" not in reason
    assert "admin" not in reason
    assert reason.startswith("redis unreachable at cache:6379: Refused: WRONGPASS")
