"""Rate-limit headroom shared by several Supervisors on one real Redis (issue 15).

Configured rpm / tpm are counted for the cluster (each instance's usage synced every
``shared_headroom_s``), and a budget one instance learns is empty is skipped by the others. Real
time and real clocks (the instances share wall-clock time, like the rest of the shared state), so
every wait is bounded.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, RateLimit
from tests.helpers import HI
from tests.integration.shared.conftest import Instances, cluster_config
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
SYNC_S = 0.1
GAP_S = 0.3  # between two requests: more than a sync to write and one to read


async def _alternate(sups: list[Supervisor], n: int) -> list[str]:
    served = []
    with anyio.fail_after(15):
        for i in range(n):
            served.append((await sups[i % len(sups)].chat(HI)).provider)
            await anyio.sleep(GAP_S)
    return served


async def test_a_configured_rpm_is_counted_across_the_cluster(instances: Instances) -> None:
    """rpm = 6 on a, 12 requests alternating between two instances: a gets its 6, b the rest, no 429."""
    limit = RateLimit(requests=6, style="none")
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            instances(2, a, b, extra={"a": {"rpm": 6}}, state={"shared_headroom_s": SYNC_S}) as sups:
        served = await _alternate(sups, 12)
        assert len(served) == 12
        assert a.completions <= 7  # 6, plus at most what one sync interval lets through
        assert served.count("b") >= 5
        assert limit.refused == 0
        peers = [s.status()["providers"]["a"]["headroom"][0].get("peers_last_minute") for s in sups]
        assert all(p is not None and p["requests"] >= 2 for p in peers)


async def test_without_sharing_each_instance_spends_the_whole_budget(tmp_path: Path,
                                                                     redis_server: RedisServer) -> None:
    """The same traffic on two separate prefixes (two clusters of one): both send to a, which refuses."""
    limit = RateLimit(requests=6, style="none")
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b:
        configs = [cluster_config(tmp_path, redis_server.url, i, a, b, extra={"a": {"rpm": 6}},
                                  state={"shared_headroom_s": SYNC_S, "shared_prefix": f"pf:alone{i}"})
                   for i in range(2)]
        async with Supervisor(configs[0]) as x, Supervisor(configs[1]) as y:
            served = await _alternate([x, y], 12)
        assert len(served) == 12
        assert a.completions > 6 and limit.refused > 0


async def test_an_empty_budget_one_instance_reads_is_skipped_by_the_other(instances: Instances) -> None:
    """A's answer says no requests left for 30 s: B skips a too, without sending it a request."""
    limit = RateLimit(requests=1, window_s=30)  # openai-style headers: remaining 0, reset 30s
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            instances(2, a, b) as (x, y):
        await anyio.sleep(0.3)  # both subscribed (a headroom message is not kept for a late reader)
        assert (await x.chat(HI)).provider == "a"
        with anyio.fail_after(3):
            while not y.status()["providers"]["a"]["headroom"]:  # noqa: ASYNC110 (a status to poll)
                await anyio.sleep(0.02)
        assert 20 < y.status()["providers"]["a"]["headroom"][0]["skipped_for_s"] <= 30
        assert (await y.chat(HI)).provider == "b"
        assert (a.completions, limit.refused) == (1, 0)
        assert x.status()["shared"]["headroom_sent"] == 1
        assert y.status()["shared"]["headroom_received"] == 1


async def test_with_redis_down_each_instance_keeps_to_its_share(instances: Instances,
                                                                redis_server: RedisServer) -> None:
    """Redis stops: both keep serving, no error, each on its own count of 6 // 2 instances seen: no 429."""
    limit = RateLimit(requests=6, style="none")
    async with FakeUpstream("a", limit=limit) as a, FakeUpstream("b") as b, \
            instances(2, a, b, extra={"a": {"rpm": 6}}, state={"shared_headroom_s": SYNC_S}) as (x, y):
        assert await _alternate([x, y], 2) == ["a", "a"]  # both seen spending from a
        await anyio.to_thread.run_sync(redis_server.stop)
        with anyio.fail_after(5):
            while any(s.status()["shared"]["state"] != "unreachable" for s in (x, y)):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await anyio.sleep(3 * SYNC_S)  # a sync has found Redis down
        with anyio.fail_after(10):
            served = [(await s.chat(HI)).provider for s in (x, y) for _ in range(4)]
        assert len(served) == 8 and set(served) <= {"a", "b"}
        assert a.completions <= 6 and limit.refused == 0
