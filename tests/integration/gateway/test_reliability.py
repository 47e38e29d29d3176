"""The reliability score of a scripted health history, in /status, /metrics, and after a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error, reset
from tests.helpers import SDK_HI, Service, make_config, service

pytestmark = pytest.mark.anyio

#: A ping every 30 s and nothing else; a 503 only degrades (no cooldown), so a ping can find it degraded.
HEALTH = {"ping_interval_s": 30, "probe_min_interval_s": 0}
ROUTING = {"cooldown_s": {"service_unavailable": 0}}


async def _checks(s: Service, n: int) -> dict[str, Any]:
    """/status once provider a has ``n`` scored checks (they are real I/O: the result lands a moment later)."""
    with anyio.fail_after(10):
        while True:
            _, _, body = await s.get("/status")
            a: dict[str, Any] = json.loads(body)["providers"]["a"]
            if a["reliability_checks"] >= n:
                assert a["reliability_checks"] == n
                return a
            await anyio.sleep(0.02)


async def test_a_scripted_history_gives_the_exact_score(tmp_path: Path) -> None:
    """healthy, degraded, refused, back, healthy: (1 + 0.5 + 0 + 1 + 1) / 5 = 0.7 in /status and /metrics."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    async with service(tmp_path, a, b, health=HEALTH, routing=ROUTING) as s:
        first = await _checks(s, 1)  # the ping at start: healthy
        assert first["reliability_score"] == 1.0
        a.script(error(503))
        client = s.client()
        await client.chat.completions.create(model="chat", messages=SDK_HI)  # b answers; a is degraded
        await client.close()
        await s.supervisor.wait_for_state("a", "degraded")
        await s.clock.advance(30)
        assert (await _checks(s, 2))["reliability_score"] == 0.75  # a ping finds it degraded: 0.5
        a.set_health(reset())
        await s.clock.advance(30)
        await s.supervisor.wait_for_state("a", "cooldown")
        assert (await _checks(s, 3))["reliability_score"] == 0.5  # the ping failed: 0
        a.set_health(None)
        await s.clock.advance(30)
        await s.supervisor.wait_for_state("a", "healthy")  # it answers again: restored at once
        await _checks(s, 4)
        await s.clock.advance(30)
        status = await _checks(s, 5)
        _, _, text = await s.get("/metrics")
    assert status["reliability_score"] == 0.7
    assert 'fallback_provider_reliability_score{provider="a"} 0.7' in text.decode()


async def test_no_checks_no_score(tmp_path: Path) -> None:
    """Without a health check the score is null in /status and absent from /metrics."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    async with service(tmp_path, a, b) as s:
        _, _, body = await s.get("/status")
        _, _, text = await s.get("/metrics")
    view = json.loads(body)["providers"]["a"]
    assert (view["reliability_score"], view["reliability_checks"]) == (None, 0)
    assert "fallback_provider_reliability_score{" not in text.decode()


async def test_the_score_survives_a_restart(tmp_path: Path) -> None:
    """The checks are saved with the metrics: a restarted service reports the same score."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        config = make_config(tmp_path, a, b, health={"ping_interval_s": 30, "full_interval_s": 0,
                                                     "api_interval_s": 0, "probe_min_interval_s": 0})
        a.set_health(reset())
        async with Supervisor(config, clock=VirtualClock()) as sup:
            await sup.wait_for_state("a", "cooldown")  # the ping at start failed
            with anyio.fail_after(10):
                while sup.status()["providers"]["a"]["reliability_checks"] < 1:
                    await sup.refresh()
                    await anyio.sleep(0.02)
            before = sup.status()["providers"]["a"]
        quiet = make_config(tmp_path, a, b)  # the same state file, no health checks to add to it
        async with Supervisor(quiet, clock=VirtualClock()) as sup:
            await sup.refresh()
            after = sup.status()["providers"]["a"]
    assert (before["reliability_score"], before["reliability_checks"]) == (0.0, 1)
    assert (after["reliability_score"], after["reliability_checks"]) == (0.0, 1)
