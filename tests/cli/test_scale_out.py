"""Scale out for real (issue 15): ``run.py --workers 2`` on one port, and a prober killed with -9.

Child processes on the real clock, a real redis-server on loopback; every
wait is bounded.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import pytest

from actors.testing import FakeUpstream, error, hang
from tests.helpers import (
    Output,
    cli,
    free_port,
    post_completion,
    providers_toml,
    run_async,
    status_when,
    wait_ready,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def _config(path: Path, primary: FakeUpstream, backup: FakeUpstream, port: int, *, redis: str = "",
            state: str = "state.db", api_timeout_s: float = 2) -> Path:
    shared = f'shared_url = "{redis}"\nshared_reconcile_s = 1\n' if redis else ""
    providers = providers_toml(primary, backup)
    path.write_text(f"""
[server]
port = {port}
shutdown_grace_s = 2

[state]
path = "{path.parent / state}"
{shared}
[routing.cooldown_s]
service_unavailable = 1

[health]
ping_interval_s = 0
full_interval_s = 0
api_interval_s = 0
probe_min_interval_s = 0
api_timeout_s = {api_timeout_s}
{providers}""")
    return path


def test_workers_without_shared_state_refuse_naming_the_key(tmp_path: Path) -> None:
    """``--workers 2`` with no ``[state] shared_url``: exit 2, one line naming the key."""
    config = tmp_path / "config.toml"
    config.write_text('[[providers]]\nname = "p"\nbase_url = "http://127.0.0.1:1"\nmodels = { chat = "m" }\n')
    result = cli(tmp_path, "--workers", "2", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "state.shared_url" in result.stderr, result.stderr


async def test_two_workers_serve_one_port_and_share_state(tmp_path: Path, redis_server: RedisServer) -> None:
    redis = redis_server
    """Both workers answer on one port, each with its own state file; a cooldown one sets, both honour."""
    port = free_port()
    output = Output()
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=10)) as http:
        config = _config(tmp_path / "config.toml", primary, backup, port, redis=redis.url)
        url = f"http://127.0.0.1:{port}"
        async with run_async(tmp_path, output, "--workers", "2", "--config", str(config)) as process:
            await output.wait_for("worker 2/2")
            await output.wait_for("worker 1/2")
            await wait_ready(http, url, process, output)
            seen: set[str] = set()
            with anyio.fail_after(10):
                while len(seen) < 2:  # each new connection goes to either worker
                    async with http.get(f"{url}/status") as resp:
                        seen.add((await resp.json())["shared"]["instance"])
            primary.script(error(503))
            assert await post_completion(http, url) == "backup"
            for _ in range(2):  # whichever worker answers, it has the primary out
                await status_when(http, url, "primary", "cooldown")
            process.send_signal(signal.SIGTERM)
        assert process.returncode == 0, str(output)
    logs = [str(tmp_path / "state.w1.db"), str(tmp_path / "state.w2.db")]
    result = cli(tmp_path, "events", "export", "--config", str(config), "--state", logs[0], "--state", logs[1])
    assert result.returncode == 0, result.stderr
    header, *lines = (json.loads(line) for line in result.stdout.splitlines())
    assert header["filters"]["merged"] == logs
    assert {line["source"] for line in lines} == set(logs)
    assert lines[0]["at"] <= lines[-1]["at"]


async def _events(http: aiohttp.ClientSession, url: str, kind: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/events", params={"type": kind}) as resp:
        body: dict[str, Any] = await resp.json()
        events: list[dict[str, Any]] = body["events"]
        return events


async def test_a_prober_killed_with_9_hands_the_probe_over(tmp_path: Path, redis_server: RedisServer) -> None:
    redis = redis_server
    """The instance holding the probe dies mid-probe: after the lock's TTL the other probes and restores."""
    output_a, output_b = Output(), Output()
    ports = free_port(), free_port()
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=10)) as http:
        configs = [_config(tmp_path / f"{n}.toml", primary, backup, p, redis=redis.url, state=f"{n}.db",
                           api_timeout_s=4) for n, p in zip("ab", ports, strict=True)]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        async with run_async(tmp_path, output_a, "--config", str(configs[0])) as a, \
                run_async(tmp_path, output_b, "--config", str(configs[1])) as b:
            for process, url, output in ((a, urls[0], output_a), (b, urls[1], output_b)):
                await wait_ready(http, url, process, output)
            primary.script(error(503), hang())  # the user's 503, then a probe that never answers
            assert await post_completion(http, urls[0]) == "backup"
            with anyio.fail_after(10):
                await primary.wait_hanging()
                while True:  # the one that skipped the probe is not its holder
                    skipped = [bool(await _events(http, url, "probe_skipped")) for url in urls]
                    if any(skipped):
                        break
                    await anyio.sleep(0.1)
            holder, (other, other_url) = (b, (a, urls[0])) if skipped[0] else (a, (b, urls[1]))
            holder.kill()  # SIGKILL: its lock is released only by its TTL
            await holder.wait()
            primary.release()
            with anyio.fail_after(20):
                while True:
                    async with http.get(f"{other_url}/status") as resp:
                        if (await resp.json())["providers"]["primary"]["state"] == "healthy":
                            break
                    await anyio.sleep(0.1)
            other.send_signal(signal.SIGTERM)
