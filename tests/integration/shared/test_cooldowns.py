"""Shared provider state against a real redis-server: cooldowns never shorten, changes reach the peers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.edges.shared import ChangesResumed, CooldownExtended, PeerChange, SharedState, StateSet
from tests.integration.shared.conftest import Clients
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0


async def test_a_shorter_cooldown_never_shortens_a_longer_one(clients: Clients) -> None:
    """A later write with an earlier end changes nothing and answers the end that holds."""
    async with clients(2) as [a, b]:
        first = await a.extend_cooldown("litellm", T0 + 600, reason="503")
        second = await b.extend_cooldown("litellm", T0 + 60, reason="429")
        assert first is not None
        assert first.changed
        assert first.until == T0 + 600
        assert second is not None
        assert not second.changed
        assert second.until == T0 + 600
        records = await b.records()
        assert records is not None
        assert records["litellm"].until == T0 + 600
        assert records["litellm"].reason == "503"
        assert records["litellm"].instance == "i0"


async def test_concurrent_writers_leave_the_latest_end(clients: Clients) -> None:
    """3 instances x 50 random cooldown ends at once: the record holds the greatest, its writer's reason."""
    ends = [[T0 + random.uniform(0, 3600) for _ in range(50)] for _ in range(3)]
    async with clients(3) as instances:

        async def write(shared: SharedState, mine: list[float]) -> None:
            for until in mine:
                assert await shared.extend_cooldown("kilocode/glm", until, reason=repr(until)) is not None

        async with anyio.create_task_group() as tg:
            for shared, mine in zip(instances, ends, strict=True):
                tg.start_soon(write, shared, mine)
        records = await instances[0].records()
    assert records is not None
    best = max(max(mine) for mine in ends)
    assert records["kilocode/glm"].until == best  # exact: the text written is the text stored
    assert records["kilocode/glm"].reason == repr(best)


async def test_a_cooldown_leaves_a_disabled_record_alone(clients: Clients) -> None:
    """An admin's disable holds against any cooldown a peer sets after it."""
    async with clients(1) as [a]:
        await a.set_state("openrouter", "disabled", origin="admin")
        written = await a.extend_cooldown("openrouter", T0 + 600)
        records = await a.records()
    assert written is not None
    assert not written.changed
    assert records is not None
    assert records["openrouter"].state == "disabled"


async def test_a_failure_seen_before_a_restore_does_not_undo_it(clients: Clients) -> None:
    """A cooldown dated (``since``) before the latest restore is refused; one dated after it holds."""
    async with clients(2, clock=VirtualClock(T0)) as [a, b]:
        await a.extend_cooldown("litellm", T0 + 600)
        await b.restore("litellm", origin="probe")  # at T0
        stale = await a.extend_cooldown("litellm", T0 + 900, since=T0 - 1)
        fresh = await a.extend_cooldown("litellm", T0 + 900, since=T0 + 1)
    assert stale is not None
    assert not stale.changed
    assert fresh is not None
    assert fresh.changed


async def test_restore_clears_the_cooldown_and_the_failures(clients: Clients) -> None:
    """After restore the record is healthy with no end, and the failure count starts again at one."""
    async with clients(2) as [a, b]:
        await a.count_failure("litellm", 60)
        await a.count_failure("litellm", 60)
        await a.extend_cooldown("litellm", T0 + 600)
        version = await b.restore("litellm", origin="admin")
        records = await a.records()
        count = await a.count_failure("litellm", 60)
    assert records is not None
    assert version == records["litellm"].version
    assert (records["litellm"].state, records["litellm"].until) == ("healthy", 0.0)
    assert count == 1


async def _next_change(feed: AsyncIterator[PeerChange]) -> PeerChange:
    with anyio.fail_after(5):
        return await anext(feed)


async def test_changes_reach_the_peer_and_not_the_writer(clients: Clients) -> None:
    """B hears A's cooldown and restore, in order, with their versions; A hears only B's."""
    async with clients(2) as [a, b], aclosing(a.changes()) as heard_by_a, aclosing(b.changes()) as heard_by_b:
        assert isinstance(await _next_change(heard_by_a), ChangesResumed)
        assert isinstance(await _next_change(heard_by_b), ChangesResumed)
        await a.extend_cooldown("litellm/groq-70b", T0 + 60, reason="429", origin="req-1")
        await a.restore("litellm/groq-70b", origin="probe")
        await b.set_state("kilocode", "disabled", origin="admin")
        first, second = await _next_change(heard_by_b), await _next_change(heard_by_b)
        assert isinstance(first, CooldownExtended)
        assert (first.key, first.until, first.reason, first.origin, first.instance) == (
            "litellm/groq-70b", T0 + 60, "429", "req-1", "i0")
        assert isinstance(second, StateSet)
        assert second.restored
        assert second.state == "healthy"
        assert 0 < first.version < second.version
        theirs = await _next_change(heard_by_a)  # not its own two: B's disable comes first
        assert isinstance(theirs, StateSet)
        assert (theirs.key, theirs.state, theirs.instance, theirs.restored) == ("kilocode", "disabled", "i1", False)


async def test_an_unchanged_cooldown_publishes_nothing(clients: Clients) -> None:
    """A shorter cooldown changes nothing, so the peer hears only the next real change."""
    async with clients(2) as [a, b], aclosing(b.changes()) as heard:
        assert isinstance(await _next_change(heard), ChangesResumed)
        await a.extend_cooldown("litellm", T0 + 600)
        await a.extend_cooldown("litellm", T0 + 60)
        await a.set_state("litellm", "disabled")
        assert isinstance(await _next_change(heard), CooldownExtended)
        assert isinstance(await _next_change(heard), StateSet)


async def test_a_message_that_is_not_a_change_is_skipped(clients: Clients, redis_server: RedisServer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Something else publishing on the channel is logged and skipped; the feed goes on."""
    import redis.asyncio

    async with clients(2) as [a, b], aclosing(b.changes()) as heard:
        assert isinstance(await _next_change(heard), ChangesResumed)
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await raw.publish(f"{b.prefix}:changes", b'{"type": "something_else"}')
        finally:
            await raw.aclose()
        await a.extend_cooldown("litellm", T0 + 60)
        assert isinstance(await _next_change(heard), CooldownExtended)
    assert "is not a change, skipped" in caplog.text
