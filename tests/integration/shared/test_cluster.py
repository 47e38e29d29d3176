"""Several Supervisors sharing one real Redis (issue 15): what one learns, all honour.

Each instance has its own state file and routes on its own snapshot; the
peers' changes arrive by pub/sub in real time, so every wait is bounded.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import time
from pathlib import Path

import aiohttp
import anyio
import pytest

from actors import gateway
from actors.core.config import parse_config
from actors.core.errors import FallbackError
from actors.replay import replay
from actors.replay.eventlog import read_log
from actors.replay.export import export_events
from actors.replay.merge import merge_events
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error, ok
from tests.helpers import HI, free_port
from tests.integration.shared.conftest import Instances, cluster_config
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
OUT = ("cooldown", "unhealthy")


async def test_a_cooldown_set_by_one_instance_is_honoured_by_the_others(instances: Instances) -> None:
    """A's 503 cools the primary on B and C too: their next requests go to the backup untouched."""
    async with FakeUpstream("primary", default=error(503)) as primary, FakeUpstream("backup") as backup, \
            instances(3, primary, backup) as (a, b, c):
        assert (await a.chat(HI)).provider == "backup"
        for peer in (b, c):
            await peer.wait_for_state("primary", *OUT, within_s=3)
            assert peer.routing.providers[0].cooldown_until == a.routing.providers[0].cooldown_until
        before = primary.completions
        assert (await b.chat(HI)).provider == "backup"
        assert (await c.chat(HI)).provider == "backup"
        assert primary.completions == before


async def test_concurrent_cooldowns_end_at_the_longest_on_every_instance(instances: Instances) -> None:
    """Two instances cool the primary at once, for 600 s and for a 429's 30 s: both keep the 600 s."""
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            instances(2, primary, backup) as (a, b):
        primary.script(error(503), error(429, retry_after=30))
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.chat, HI)
            tg.start_soon(b.chat, HI)
        with anyio.fail_after(5):
            while True:
                ends = [s.routing.providers[0].cooldown_until or 0.0 for s in (a, b)]
                if ends[0] == ends[1]:
                    break
                await anyio.sleep(0.02)
        assert ends[0] - time.time() > 500


async def test_admin_commands_reach_every_instance(instances: Instances) -> None:
    """A disable on one instance takes the provider out on the other; an enable brings it back."""
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            instances(2, primary, backup) as (a, b):
        await a.disable("primary")
        await b.wait_for_state("primary", "disabled", within_s=3)
        await a.enable("primary")
        await b.wait_for_state("primary", "healthy", within_s=3)


async def test_failures_are_counted_once_across_the_cluster(instances: Instances) -> None:
    """failure_threshold = 3 with three instances seeing one failure each: the primary goes out on all."""
    odd = error(400, "upstream hiccup")  # the backup answers the same request: the primary's fault, counted
    async with FakeUpstream("primary", default=odd) as primary, FakeUpstream("backup") as backup, \
            instances(3, primary, backup, failure_threshold=3) as sups:
        for sup in sups:
            assert (await sup.chat(HI)).provider == "backup"
        for sup in sups:
            await sup.wait_for_state("primary", "unhealthy", "cooldown", within_s=3)


async def test_one_instance_probes_a_provider_at_a_time(instances: Instances) -> None:
    """At the cooldown's end both instances want a probe; one runs it, and its pass restores both."""
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            instances(2, primary, backup, cooldown_s={"service_unavailable": 1}) as (a, b):
        primary.script(error(503), ok(delay_s=0.5))  # the probe holds its lock a while
        assert (await a.chat(HI)).provider == "backup"
        await b.wait_for_state("primary", *OUT, within_s=3)
        for sup in (a, b):
            await sup.wait_for_state("primary", "healthy", within_s=8)
        assert primary.completions == 2  # the user's 503, then one probe for the cluster


async def test_redis_stopped_and_restarted_mid_traffic_fails_no_request(
        instances: Instances, redis_server: RedisServer) -> None:
    """Redis goes away under traffic: 0 failed requests; back, the cooldown learned alone reaches the peer."""
    failures: list[BaseException] = []
    served = 0
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            instances(2, primary, backup) as (a, b):

        async def traffic(sup: Supervisor, stop: anyio.Event) -> None:
            nonlocal served
            while not stop.is_set():
                try:
                    await sup.chat(HI)
                    served += 1
                except FallbackError as exc:
                    failures.append(exc)
                await anyio.sleep(0.01)

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic, a, stop)
            tg.start_soon(traffic, b, stop)
            await anyio.to_thread.run_sync(redis_server.stop)
            primary.script(error(503))  # one instance cools it while Redis is down: only it knows
            with anyio.fail_after(5):
                while not any(s.state_of("primary") in OUT for s in (a, b)):  # noqa: ASYNC110 (two instances)
                    await anyio.sleep(0.02)
            assert {a.status()["shared"]["state"], b.status()["shared"]["state"]} == {"unreachable"}
            await anyio.to_thread.run_sync(redis_server.start)
            for sup in (a, b):  # reconnected, and the reconcile pushed the lone cooldown to the peer
                await sup.wait_for_state("primary", *OUT, within_s=20)
            stop.set()
        assert failures == []
        assert served > 10
        assert a.status()["shared"]["state"] == "connected"


async def test_changes_after_redis_restarted_empty_still_reach_peers(
        instances: Instances, redis_server: RedisServer) -> None:
    """A Redis restarted without its data counts versions from 0 again: the peers still take new changes."""
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            instances(2, primary, backup) as (a, b):
        for _ in range(3):  # versions go up on the first Redis
            await a.disable("primary")
            await b.wait_for_state("primary", "disabled", within_s=3)
            await a.enable("primary")
            await b.wait_for_state("primary", "healthy", within_s=3)
        await anyio.to_thread.run_sync(redis_server.restart)
        with anyio.fail_after(20):
            while any(s.status()["shared"]["state"] != "connected" for s in (a, b)):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        primary.script(error(503))
        assert (await a.chat(HI)).provider == "backup"
        await b.wait_for_state("primary", *OUT, within_s=10)


async def _readyz(sup: Supervisor) -> int:
    """The gateway's /readyz over ``sup`` (on a free port, stopped after)."""
    urls: list[str] = []
    stop = anyio.Event()
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        tg.start_soon(functools.partial(gateway.serve, sup, host="127.0.0.1", port=0, on_ready=urls.append,
                                        stop=stop))
        with anyio.fail_after(5):
            while not urls:  # noqa: ASYNC110 (on_ready is a plain callback)
                await anyio.sleep(0.01)
            async with http.get(urls[0] + "/readyz") as resp:
                status = resp.status
        stop.set()
    return status


async def test_redis_absent_at_start_serves_and_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No Redis at all: the service starts, serves on local state, stays ready, and says so once."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.WARNING, logger="actors.shared")
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup:
        config = cluster_config(tmp_path, url, 0, primary, backup)
        async with Supervisor(config) as sup:
            for _ in range(5):
                assert (await sup.chat(HI)).provider == "primary"
            shared = sup.status()["shared"]
            assert await _readyz(sup) == 200
    assert (shared["state"], shared["url"]) == ("unreachable", url.removeprefix("redis://").removesuffix("/0"))
    assert len([r for r in caplog.records if "serving on local state" in r.getMessage()]) == 1


@pytest.mark.parametrize("given", [pytest.param("s3cret-pw", id="right"), pytest.param("wr0ng-pw", id="wrong")])
async def test_the_redis_password_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture, given: str) -> None:
    """With Redis's password in the environment, right or wrong: never in /status, the logs or the events."""
    server = RedisServer(tmp_path, password="s3cret-pw")
    server.start()
    caplog.set_level(logging.DEBUG)
    try:
        async with FakeUpstream("primary", default=error(503)) as primary, FakeUpstream("backup") as backup:
            config = parse_config({
                "state": {"path": str(tmp_path / "pw.db"), "shared_url": server.url,
                          "shared_password_env": "PF_REDIS_PW"},
                "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
                "providers": [{"name": f.name, "base_url": f.base_url, "models": {"chat": "m"},
                               "priority": i + 1} for i, f in enumerate((primary, backup))],
            }, env={"PF_REDIS_PW": given})
            async with Supervisor(config) as sup:
                await sup.chat(HI)
                shown = json.dumps(sup.status())
                assert sup.status()["shared"]["state"] == ("connected" if given == "s3cret-pw" else "unreachable")
        out = io.BytesIO()
        await export_events(config.state.path, out)
    finally:
        server.stop()
    for text in (shown, caplog.text, out.getvalue().decode()):
        assert given not in text
        assert "s3cret-pw" not in text


async def test_one_instances_log_replays_alone(instances: Instances, tmp_path: Path) -> None:
    """What B learned from A is in B's log as input: B's log replays with no Redis, to B's states."""
    async with FakeUpstream("primary", default=error(503)) as primary, FakeUpstream("backup") as backup:
        async with instances(2, primary, backup) as (a, b):
            await a.chat(HI)
            await b.wait_for_state("primary", *OUT, within_s=3)
        out = io.BytesIO()
        await export_events(tmp_path / "i1.db", out)
    log = read_log(out.getvalue().splitlines())
    assert any(type(m).__name__ == "PeerStateChanged" for m in log.messages)
    result = replay(log)
    assert result.matches, result.divergence and result.divergence.describe()
    assert result.final_state["primary"] in OUT


async def test_several_logs_merge_into_one_time_ordered_excerpt(instances: Instances, tmp_path: Path) -> None:
    """``events export --state a --state b``: every line of both logs, by time, each naming its source."""
    async with FakeUpstream("primary", default=error(503)) as primary, FakeUpstream("backup") as backup:
        async with instances(2, primary, backup) as (a, b):
            await a.chat(HI)
            await b.wait_for_state("primary", *OUT, within_s=3)
        out = io.BytesIO()
        paths = [str(tmp_path / "i0.db"), str(tmp_path / "i1.db")]
        count = await merge_events(paths, out)
    header, *lines = (json.loads(line) for line in out.getvalue().splitlines())
    assert header["filters"]["merged"] == paths
    assert "for reading" in header["filters"]["note"]
    assert len(lines) == count
    assert {line["source"] for line in lines} == set(paths)
    for path in paths:  # each log keeps its own order (a decision is dated by its cause)
        own = io.BytesIO()
        await export_events(path, own)
        assert [json.loads(line) for line in own.getvalue().splitlines()[1:]] == [
            {k: v for k, v in line.items() if k != "source"} for line in lines if line["source"] == path]
    kinds = [(line["type"], line["source"]) for line in lines]
    assert kinds.index(("provider_state_changed", paths[0])) < kinds.index(("peer_state_changed", paths[1]))


def test_the_config_check_accepts_the_failure_window() -> None:
    """``shared_failure_window_s`` is a positive number of seconds."""
    provider = {"name": "p", "base_url": "http://127.0.0.1:1", "models": {"chat": "m"}}
    config = parse_config({"state": {"shared_failure_window_s": 30}, "providers": [provider]}, env={})
    assert config.state.shared_failure_window_s == 30
