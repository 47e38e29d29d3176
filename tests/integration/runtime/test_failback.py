"""Failback driven by evidence: re-checks from probe_min_interval_s, backing off x2, the cheapest proof."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.policy.recovery_manager import probe_times
from actors.testing import error, ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio
EARLY: dict[str, Any] = {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, "probe_min_interval_s": 5}


def test_the_schedule_backs_off_and_stops_at_the_cooldown_end() -> None:
    """5 s after the failure, then 10, 20, 40... apart; none at or after the cooldown's end."""
    assert probe_times(0.0, 5.0, 600.0) == [5.0, 15.0, 35.0, 75.0, 155.0, 315.0]
    assert probe_times(0.0, 5.0, 80.0, 10.0) == [5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0]  # capped
    assert probe_times(0.0, 0.0, 600.0) == []  # probe_min_interval_s = 0: only the cooldown's own probe


async def _advance_to(clock: Any, at: float) -> None:
    await clock.advance_to(at)
    await settle()


async def test_a_60_s_outage_fails_back_within_15_s_of_healing(tmp_path: Path) -> None:
    """The primary 503s for a minute under a 600 s cooldown, then heals: traffic is back by 75 s, not 600."""
    async with running(tmp_path, "a", "b", health=EARLY) as (sup, clock, (a, _b)):
        t0 = clock.now()
        a.set_default(error(503))
        assert (await sup.chat(HI)).provider == "b"
        await settle()
        for probe_at in (5, 15, 35):  # still broken at each early re-check
            await _advance_to(clock, t0 + probe_at)
            await sup.wait_for_state("a", "cooldown")
        view = sup.status()["providers"]["a"]
        assert (view["failure_count"], view["cooldown_level"]) == (1, 1)  # early probes count nothing
        await _advance_to(clock, t0 + 60)
        a.set_default(ok("a is back"))  # it heals at 60 s
        await _advance_to(clock, t0 + 75)
        await sup.wait_for_state("a", "healthy")
        reply = await sup.chat(HI)
        assert (reply.provider, reply.text) == ("a", "a is back")
        assert clock.now() - t0 <= 75


async def test_a_connection_failure_is_rechecked_by_ping(tmp_path: Path) -> None:
    """Refused connections: the early re-check is a ping (it answers again), not a paid completion."""
    async with running(tmp_path, "a", "b", health=EARLY) as (sup, clock, (a, _b)):
        t0 = clock.now()
        await a.refuse_connections()
        assert (await sup.chat(HI)).provider == "b"
        await settle()
        await a.accept_connections()
        before = a.completions
        await _advance_to(clock, t0 + 5)
        await sup.wait_for_state("a", "healthy")
        assert a.completions == before  # no completion was spent on proving it
        assert a.health_requests >= 1


async def test_an_auth_failure_is_rechecked_by_the_model_list(tmp_path: Path) -> None:
    """A 401: the re-check is the authenticated GET /models; the key fixed, it passes and restores."""
    async with running(tmp_path, "a", "b", health=EARLY) as (sup, clock, (a, _b)):
        t0 = clock.now()
        a.set_default(error(401))
        a.set_health(error(401))
        assert (await sup.chat(HI)).provider == "b"
        await settle()
        await _advance_to(clock, t0 + 5)
        await sup.wait_for_state("a", "cooldown")
        a.set_health(ok())
        a.set_default(ok())  # the operator fixed the key
        await _advance_to(clock, t0 + 15)
        await sup.wait_for_state("a", "healthy")


async def test_no_early_probe_before_a_429s_retry_after(tmp_path: Path) -> None:
    """A 429 asked for 60 s: nothing is sent to it before then, however early probes are set."""
    async with running(tmp_path, "a", "b", health=EARLY) as (sup, clock, (a, _b)):
        t0 = clock.now()
        a.script(error(429, retry_after=60))
        assert (await sup.chat(HI)).provider == "b"
        await settle()
        sent = a.completions + a.health_requests
        await _advance_to(clock, t0 + 59)
        assert a.completions + a.health_requests == sent
        await _advance_to(clock, t0 + 61)
        await sup.wait_for_state("a", "healthy")


async def test_early_probes_are_off_at_zero(tmp_path: Path) -> None:
    """probe_min_interval_s = 0: the provider waits for its cooldown's own probe (the old behaviour)."""
    health = {**EARLY, "probe_min_interval_s": 0}
    async with running(tmp_path, "a", "b", health=health) as (sup, clock, (a, _b)):
        t0 = clock.now()
        a.script(error(503))
        await sup.chat(HI)
        await settle()
        await _advance_to(clock, t0 + 300)
        assert sup.state_of("a") == "cooldown"
