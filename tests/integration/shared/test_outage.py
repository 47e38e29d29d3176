"""A Redis that is down, hung or refusing us, for real: calls stay fast, it is said once, it comes back.

The server is a real redis-server stopped (connections refused), paused
(SIGSTOP: nothing answers) and started again on the same port.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.core.config_schema import Secret
from actors.edges.shared import (
    BreakerStatus,
    ChangesResumed,
    CooldownExtended,
    PeerChange,
    SharedState,
    SharedStateError,
)
from tests.integration.shared.conftest import Clients
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
FAST: dict[str, Any] = {"timeout_s": 0.25, "base_backoff_s": 0.05, "max_backoff_s": 0.2}


async def _every_call(shared: SharedState) -> list[object]:
    """One of each call, each timed: every one must answer None within the timeout."""
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: shared.extend_cooldown("litellm", T0 + 60),
        lambda: shared.set_state("litellm", "disabled"),
        lambda: shared.restore("litellm"),
        lambda: shared.records(),
        lambda: shared.count_failure("litellm", 60),
        lambda: shared.reset_failures("litellm"),
        lambda: shared.acquire_probe("litellm", "i0", 1),
        lambda: shared.renew_probe("litellm", "i0", 1),
        lambda: shared.release_probe("litellm", "i0"),
        lambda: shared.spend("litellm", limit_requests=5),
    ]
    answers: list[object] = []
    for call in calls:
        started = anyio.current_time()
        answers.append(await call())
        assert anyio.current_time() - started < FAST["timeout_s"]
    return answers


async def _wait_until_back(shared: SharedState) -> None:
    with anyio.fail_after(5):
        while not await shared.ping():  # noqa: ASYNC110 (the backoff: no event to wait for)
            await anyio.sleep(0.02)


async def test_a_stopped_redis_answers_none_fast_says_so_once_and_comes_back(
        clients: Clients, redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Refused connections: every call is None under the timeout, one report, then closed after a restart."""
    reports: list[BreakerStatus] = []
    caplog.set_level(logging.WARNING, "actors.shared")
    async with clients(1, on_change=reports.append, **FAST) as [shared]:
        assert await shared.extend_cooldown("litellm", T0 + 60) is not None
        redis_server.stop()
        for _ in range(3):
            assert await _every_call(shared) == [None] * 10
            await anyio.sleep(0.1)  # past a backoff: trials are made, and fail, unreported
        assert [r.state for r in reports] == ["open"]
        # Its pooled connection closed, the retry on a fresh one refused: the root cause is named.
        assert reports[0].reason == f"redis unreachable at 127.0.0.1:{redis_server.port}: ConnectionRefusedError"
        assert shared.breaker.state == "open"
        redis_server.start()
        await _wait_until_back(shared)
        assert [r.state for r in reports] == ["open", "closed"]
        written = await shared.extend_cooldown("litellm", T0 + 60)  # its script reloaded (NOSCRIPT)
        assert written is not None
        assert written.changed
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "unreachable" in lines[0]
    assert "reachable again" in lines[1]


async def test_a_hung_redis_costs_one_timeout_then_nothing(clients: Clients, redis_server: RedisServer) -> None:
    """Paused: the first call waits out the timeout and answers None; the next ones answer at once."""
    async with clients(1, **FAST) as [shared]:
        assert await shared.ping()
        redis_server.pause()
        try:
            started = anyio.current_time()
            assert await shared.count_failure("litellm", 60) is None
            assert FAST["timeout_s"] <= anyio.current_time() - started < 1.0
            assert "TimeoutError" in shared.breaker.reason
            started = anyio.current_time()
            assert await shared.records() is None
            assert anyio.current_time() - started < 0.05
        finally:
            redis_server.resume()
        await _wait_until_back(shared)
        assert await shared.count_failure("litellm", 60) in (1, 2)  # the timed-out one may have run


async def _next(feed: AsyncIterator[PeerChange]) -> PeerChange:
    with anyio.fail_after(5):
        return await anext(feed)


async def test_the_change_feed_resumes_after_an_outage(clients: Clients, redis_server: RedisServer) -> None:
    """A peer's feed says it resumed once Redis is back (reconcile then), and carries changes again."""
    async with clients(2, **FAST) as [a, b], aclosing(b.changes()) as feed:
        assert isinstance(await _next(feed), ChangesResumed)
        redis_server.restart()
        assert isinstance(await _next(feed), ChangesResumed)
        await _wait_until_back(a)
        assert (await a.extend_cooldown("litellm", T0 + 60)) is not None
        change = await _next(feed)
        assert isinstance(change, CooldownExtended)
        assert change.key == "litellm"


async def test_the_password_is_used_and_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With requirepass: the right password works; a wrong or missing one is reported without any password."""
    right, wrong = "right-pw-7f3a", "wrong-pw-91c2"
    server = RedisServer(tmp_path, password=right)
    server.start()
    caplog.set_level(logging.DEBUG)
    reports: list[BreakerStatus] = []
    try:
        async with SharedState.connect(server.url, password=Secret(right), instance_id="i0", **FAST) as shared:
            assert (await shared.extend_cooldown("litellm", T0 + 60)) is not None
            assert right not in repr(shared)
        for password in (wrong, None):
            async with SharedState.connect(server.url, password=password, instance_id="i1",
                                           on_change=reports.append, **FAST) as refused:
                assert await refused.records() is None
        server.stop()
        async with SharedState.connect(server.url, password=right, instance_id="i2",
                                       on_change=reports.append, **FAST) as down:
            assert await down.records() is None
    finally:
        server.stop()
    assert [r.state for r in reports] == ["open", "open", "open"]
    assert "AuthenticationError" in reports[0].reason
    shown = caplog.text + "".join(r.reason for r in reports)
    assert right not in shown
    assert wrong not in shown


@pytest.mark.parametrize("url", [
    pytest.param("redis://:hunter2-pw@127.0.0.1:6379/0", id="password-in-userinfo"),
    pytest.param("redis://user:hunter2-pw@127.0.0.1:6379/0", id="user-and-password"),
    pytest.param("redis://127.0.0.1:6379/0?password=hunter2-pw", id="password-in-query"),
])
async def test_a_url_with_a_password_is_refused_without_showing_it(url: str) -> None:
    """connect() refuses the URL the config check refuses, and the error holds no password."""
    with pytest.raises(SharedStateError, match="shared_password_env") as caught:
        async with SharedState.connect(url, instance_id="i0"):
            pass
    assert "hunter2" not in str(caught.value)
