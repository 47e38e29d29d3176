"""Rate-limit headroom routes away before a 429: reported by headers, or configured as rpm/tpm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.core.config import parse_config
from actors.core.errors import AllProvidersFailedError
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, RateLimit
from tests.helpers import HI, settle

pytestmark = pytest.mark.anyio


def _config(tmp_path: Path, a: FakeUpstream, b: FakeUpstream, *, a_model: Any = "a-model",
            a_extra: dict[str, Any] | None = None, **routing: Any) -> Any:
    return parse_config({
        "state": {"path": str(tmp_path / "state.db")},
        "routing": {"second_pass_backoff_s": 0, **routing},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, "probe_min_interval_s": 0},
        "providers": [
            {"name": "a", "base_url": a.base_url, "models": {"chat": a_model}, "priority": 1, **(a_extra or {})},
            {"name": "b", "base_url": b.base_url, "models": {"chat": "b-model"}, "priority": 2},
        ],
    }, env={})


async def _burst(sup: Supervisor, n: int, *, concurrent: bool = False) -> list[str]:
    served: list[str] = []

    async def one() -> None:
        served.append((await sup.chat(HI)).provider)
    if concurrent:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    else:
        for _ in range(n):
            await one()
    return served


@pytest.mark.parametrize("style", ["openai", "anthropic"])
async def test_headers_saying_no_requests_left_send_the_rest_elsewhere_until_the_reset(
        tmp_path: Path, style: str) -> None:
    """a allows 5 a minute and says so in its headers: requests 6..20 go to b, with no 429 paid;
    once a's window resets, a answers again."""
    clock = VirtualClock()
    limit = RateLimit(requests=5, style=style, clock=clock)  # type: ignore[arg-type]
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            Supervisor(_config(tmp_path, a, b), clock=clock) as sup:
        served = await _burst(sup, 20)
        assert served == ["a"] * 5 + ["b"] * 15
        assert (limit.refused, a.completions, b.completions) == (0, 5, 15)
        assert sup.state_of("a") == "healthy"  # nothing went wrong: no cooldown, no failure
        headroom = sup.status()["providers"]["a"]["headroom"]
        assert headroom[0]["reported"]["requests"]["remaining"] == 0
        assert 0 < headroom[0]["skipped_for_s"] <= 60
        await clock.advance(61)
        await settle()
        assert await _burst(sup, 1) == ["a"]


async def test_without_header_admission_the_same_burst_pays_a_429(tmp_path: Path) -> None:
    """The peer's way (react to 429s only): the 6th request meets a 429 and a cools down."""
    clock = VirtualClock()
    limit = RateLimit(requests=5, clock=clock)
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            Supervisor(_config(tmp_path, a, b, rate_limit_headers=False), clock=clock) as sup:
        served = await _burst(sup, 20)
        assert served.count("b") == 15 and limit.refused == 1
        assert sup.state_of("a") == "cooldown"


async def test_a_configured_rpm_is_enforced_locally_even_in_a_concurrent_burst(tmp_path: Path) -> None:
    """rpm = 5 on a provider that says nothing in its headers: 20 concurrent requests, 5 reach it, no 429.
    Headers alone can't do that for a burst (no answer has come back yet); a configured limit can."""
    clock = VirtualClock()
    limit = RateLimit(requests=5, style="none", clock=clock)
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            Supervisor(_config(tmp_path, a, b, a_model={"model": "a-model", "rpm": 5}), clock=clock) as sup:
        served = await _burst(sup, 20, concurrent=True)
        assert (served.count("a"), served.count("b"), limit.refused) == (5, 15, 0)
        headroom = sup.status()["providers"]["a"]["headroom"]
        assert headroom == [{"model": "a-model", "rpm": 5, "tpm": None,
                             "last_minute": {"requests": 5, "tokens": headroom[0]["last_minute"]["tokens"]},
                             "skipped_for_s": 60.0}]
        await clock.advance(30)
        assert await _burst(sup, 1) == ["b"]  # the window slides: still full 30 s later
        await clock.advance(31)
        assert await _burst(sup, 5) == ["a"] * 5


async def test_a_tpm_limit_counts_the_requests_estimated_tokens(tmp_path: Path) -> None:
    """tpm = 100 and max_tokens = 40 (+ a few input tokens): two requests fit in a minute, the third goes to b."""
    clock = VirtualClock()
    async with FakeUpstream("a") as a, FakeUpstream("b") as b, \
            Supervisor(_config(tmp_path, a, b, a_extra={"tpm": 100}), clock=clock) as sup:
        served = [(await sup.chat(HI, max_tokens=40)).provider for _ in range(3)]
        assert served == ["a", "a", "b"]


async def test_out_of_headroom_past_the_deadline_it_is_asked_anyway(tmp_path: Path) -> None:
    """Only a serves and it is out for 60 s, past the 30 s deadline: it is asked anyway (a prediction
    is not a refusal), and its own answer, a 429 here, reaches the caller at once: nothing hangs."""
    clock = VirtualClock()
    limit = RateLimit(requests=1, clock=clock)
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            Supervisor(_config(tmp_path, a, b, a_extra={"rpm": 1}, request_deadline_s=30), clock=clock) as sup:
        await sup.disable("b")
        assert (await sup.chat(HI)).provider == "a"
        start = clock.now()
        with pytest.raises(AllProvidersFailedError, match="rate_limit"):
            await sup.chat(HI)
        assert clock.now() == start and limit.refused == 1


@pytest.mark.parametrize("window_s", [2, 60])
async def test_headroom_back_within_the_deadline_is_waited_for(tmp_path: Path, window_s: float) -> None:
    """Only a serves and its headers say the window resets in 2 s (or 60 s, inside the 120 s deadline):
    the request waits for it, as for a cooldown's end, then a answers; no 429 is paid."""
    clock = VirtualClock()
    limit = RateLimit(requests=1, window_s=window_s, clock=clock)
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            Supervisor(_config(tmp_path, a, b), clock=clock) as sup:
        await sup.disable("b")
        await sup.chat(HI)
        replies: list[str] = []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                replies.append((await sup.chat(HI)).provider)
            tg.start_soon(call)
            with anyio.fail_after(5):
                while clock.next_deadline() is None:
                    await settle()
            await clock.advance(window_s)
        assert replies == ["a"] and limit.refused == 0
