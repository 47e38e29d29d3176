"""Counted once across the cluster, against a real redis-server: failures, the half-open probe, budgets.

Lock and window expiry run on the server's real clock: the TTLs here are
fractions of a second, and every wait is bounded.
"""

from __future__ import annotations

import anyio
import pytest

from actors.edges.shared import SharedState, Spent
from tests.integration.shared.conftest import Clients

pytestmark = pytest.mark.anyio


async def test_failures_from_three_instances_count_once_each(clients: Clients) -> None:
    """3 instances x 20 concurrent failures: the cluster's count is 60, whoever asks."""
    async with clients(3) as instances:
        counts: list[int] = []

        async def fail(shared: SharedState) -> None:
            for _ in range(20):
                count = await shared.count_failure("litellm", 60)
                assert count is not None
                counts.append(count)

        async with anyio.create_task_group() as tg:
            for shared in instances:
                tg.start_soon(fail, shared)
        assert sorted(counts) == list(range(1, 61))  # each increment seen by exactly one caller
        assert await instances[2].count_failure("litellm", 60) == 61


async def test_a_repeated_failure_id_counts_once(clients: Clients) -> None:
    """The same failure reported by two instances (or twice) is one failure."""
    async with clients(2) as [a, b]:
        assert await a.count_failure("litellm", 60, failure_id="req-1") == 1
        assert await b.count_failure("litellm", 60, failure_id="req-1") == 1
        assert await b.count_failure("litellm", 60, failure_id="req-2") == 2


async def test_failures_older_than_the_window_are_forgotten(clients: Clients) -> None:
    """A failure counts only within window_s of the next: after the window the count starts again."""
    async with clients(1) as [a]:
        assert await a.count_failure("litellm", 0.2) == 1
        assert await a.count_failure("litellm", 0.2) == 2
        await anyio.sleep(0.3)  # the server's clock decides; there is no event to wait for
        assert await a.count_failure("litellm", 0.2) == 1


async def test_reset_failures_is_for_everyone(clients: Clients) -> None:
    """A success reported by one instance resets the count the others see."""
    async with clients(2) as [a, b]:
        await a.count_failure("litellm", 60)
        await a.count_failure("litellm", 60)
        assert await b.reset_failures("litellm") is True
        assert await a.count_failure("litellm", 60) == 1


async def test_exactly_one_of_three_concurrent_acquirers_probes(clients: Clients) -> None:
    """Three instances claim the same deployment's probe at once: one wins, two are told no."""
    async with clients(3) as instances:
        won: dict[str, bool] = {}

        async def claim(shared: SharedState) -> None:
            ok = await shared.acquire_probe("litellm/groq-70b", shared.instance_id, 5)
            assert ok is not None
            won[shared.instance_id] = ok

        async with anyio.create_task_group() as tg:
            for shared in instances:
                tg.start_soon(claim, shared)
        assert sorted(won.values()) == [False, False, True]
        winner = next(name for name, ok in won.items() if ok)
        loser = next(s for s in instances if s.instance_id != winner)
        assert await loser.release_probe("litellm/groq-70b", loser.instance_id) is False
        holder = next(s for s in instances if s.instance_id == winner)
        assert await holder.release_probe("litellm/groq-70b", winner) is True
        assert await loser.acquire_probe("litellm/groq-70b", loser.instance_id, 5) is True


async def test_an_expired_probe_is_taken_over_and_the_old_owner_cannot_release_it(clients: Clients) -> None:
    """A dead owner's lock expires; the next owner holds it and the old one can neither renew nor free it."""
    async with clients(2) as [a, b]:
        assert await a.acquire_probe("kilocode", "i0", 0.2) is True
        assert await b.acquire_probe("kilocode", "i1", 0.2) is False
        with anyio.fail_after(3):
            while not await b.acquire_probe("kilocode", "i1", 5):  # noqa: ASYNC110 (a server-side TTL: no event)
                await anyio.sleep(0.05)
        assert await a.release_probe("kilocode", "i0") is False
        assert await a.renew_probe("kilocode", "i0", 5) is False
        assert await a.acquire_probe("kilocode", "i0", 5) is False  # still b's


async def test_renewing_keeps_the_probe(clients: Clients) -> None:
    """An owner that renews its lock before the TTL keeps it past the first TTL."""
    async with clients(2) as [a, b]:
        assert await a.acquire_probe("kilocode", "i0", 0.3) is True
        for _ in range(3):
            await anyio.sleep(0.15)
            assert await a.renew_probe("kilocode", "i0", 0.3) is True
        assert await b.acquire_probe("kilocode", "i1", 1) is False


async def test_spending_never_overspends_under_concurrency(clients: Clients) -> None:
    """3 instances x 30 concurrent spends of 1 request and 7 tokens, against 50 requests / 200 tokens."""
    async with clients(3) as instances:
        answers: list[Spent] = []

        async def spend(shared: SharedState) -> None:
            for _ in range(30):
                spent = await shared.spend("groq-70b", requests=1, tokens=7, window_s=60,
                                           limit_requests=50, limit_tokens=200)
                assert spent is not None
                answers.append(spent)

        async with anyio.create_task_group() as tg:
            for shared in instances:
                tg.start_soon(spend, shared)
        allowed = [s for s in answers if s.allowed]
        assert len(allowed) == 200 // 7  # 28: the token limit binds first
        assert max(s.tokens_used for s in answers) == 28 * 7
        final = await instances[0].spend("groq-70b", requests=0, tokens=0, window_s=60,
                                          limit_requests=50, limit_tokens=200)
        assert final is not None
        assert final.remaining_tokens == 200 - 28 * 7
        assert final.remaining_requests == 22


async def test_a_budget_starts_over_after_its_window(clients: Clients) -> None:
    """Refused once the window's budget is gone, allowed again when the window has passed."""
    async with clients(2) as [a, b]:
        first = await a.spend("m", requests=1, window_s=0.2, limit_requests=1)
        refused = await b.spend("m", requests=1, window_s=0.2, limit_requests=1)
        assert first is not None
        assert first.allowed
        assert first.remaining_requests == 0
        assert refused is not None
        assert not refused.allowed
        assert 0 < refused.reset_s <= 0.2
        await anyio.sleep(refused.reset_s + 0.05)
        again = await b.spend("m", requests=1, window_s=0.2, limit_requests=1)
        assert again is not None
        assert again.allowed
