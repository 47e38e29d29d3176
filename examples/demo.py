"""``run.py demo``: a whole failover cycle on two local fake providers, no API key needed.

A primary and a backup FakeUpstream behind the real Supervisor and gateway, a
steady stream of requests through the gateway, and a scripted outage of the
primary (503s, then refused connections, then healthy again). Each request's
answer and each decision (fallback, cooldown, probe, failback) is printed as
it happens.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from typing import Any

import aiohttp
import anyio
import msgspec

from actors import gateway
from actors.cli import Command
from actors.cli.common import EXIT_OK, positive, run_async
from actors.core.config import Config, CooldownConfig, parse_config
from actors.core.messages import (
    FallbackTriggered,
    HealthChecked,
    Message,
    ProviderRecovered,
    ProviderStateChanged,
)
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error, ok

__all__ = ("DEMO", "demo_async")


def demo_config(primary_url: str, backup_url: str, state_path: str, seconds: float) -> Config:
    """Two fake providers and short timers, so a whole failover cycle fits in ``seconds``."""
    cooldown = min(3.0, max(0.5, round(seconds * 0.15, 1)))
    raw: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 2},
        "state": {"path": state_path},
        "routing": {"default_model": "chat", "request_deadline_s": 10, "max_cooldown_s": cooldown * 4,
                    "cooldown_s": {f.name: cooldown for f in msgspec.structs.fields(CooldownConfig)}},
        "health": {"ping_interval_s": 1, "ping_timeout_s": 1, "full_interval_s": 0, "api_interval_s": 0,
                   "api_timeout_s": 2, "probe_tier": "api"},
        "providers": [
            {"name": name, "base_url": url, "priority": priority, "timeout_s": 2, "health_path": "/models",
             "models": {"chat": "fake-model"}}
            for name, url, priority in (("primary", primary_url, 1), ("backup", backup_url, 2))
        ],
    }
    return parse_config(raw, env={}, source="<demo>")


class DemoPrinter:
    """Prints the demo's timeline: request answers and the engine's decisions."""

    def __init__(self) -> None:
        self.started, self.served, self.fallbacks, self.failbacks = time.time(), dict[str, int](), 0, 0

    def say(self, text: str, at: float | None = None) -> None:
        print(f"{(at or time.time()) - self.started:5.1f}s  {text}", flush=True)

    def on_event(self, message: Message) -> None:
        """A bus listener: one human line per decision."""
        match message:
            case ProviderStateChanged(new="cooldown" | "unhealthy", cooldown_until=float() as until):
                self.say(f"{message.provider}: {message.old} -> {message.new} ({message.reason}), "
                         f"cooling down {until - message.at:.1f} s", message.at)
            case ProviderStateChanged(new="probing"):
                self.say(f"{message.provider}: {message.old} -> probing (half-open: one probe)", message.at)
            case ProviderStateChanged():
                self.say(f"{message.provider}: {message.old} -> {message.new} ({message.reason})", message.at)
            case FallbackTriggered():
                self.fallbacks += 1
                self.say(f"fallback: {message.from_provider} -> {message.to_provider or 'nobody'} "
                         f"({message.category})", message.at)
            case HealthChecked(probe=True):
                result = "ok" if message.ok else f"failed ({message.kind}: {message.message[:60]})"
                self.say(f"probe of {message.provider}: {result}", message.at)
            case ProviderRecovered():
                self.failbacks += 1
                self.say(f"failback: {message.provider} recovered after {message.downtime_s:.1f} s; "
                         f"traffic returns to it", message.at)


async def script_outage(primary: FakeUpstream, seconds: float, start: float, out: DemoPrinter) -> None:
    """Primary answers, then 503s, then refuses connections, then heals (at 20%, 35%, 50%)."""
    await anyio.sleep_until(start + seconds * 0.2)
    primary.set_default(error(503))
    primary.set_health(error(503))
    out.say("--- primary starts answering 503 Service Unavailable")
    await anyio.sleep_until(start + seconds * 0.35)
    await primary.refuse_connections()
    out.say("--- primary goes down: connections refused")
    await anyio.sleep_until(start + seconds * 0.5)
    primary.set_default(ok("Hello from primary"))
    primary.set_health(None)
    await primary.accept_connections()
    out.say("--- primary is back up")


async def send_requests(url: str, seconds: float, rate: float, start: float, out: DemoPrinter) -> None:
    """``rate`` completions a second through the gateway for ``seconds``, printing who answered."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "Say hello"}]}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for i in range(max(1, int(seconds * rate))):
            if anyio.current_time() >= start + seconds:
                break
            try:
                async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                    data = await resp.json()
                    provider = resp.headers.get("x-fallback-provider", "?")
                    attempts = resp.headers.get("x-fallback-attempts", "?")
                if resp.status == 200:
                    out.served[provider] = out.served.get(provider, 0) + 1
                    out.say(f"request {i + 1:3d} answered by {provider} (attempts: {attempts})")
                else:
                    out.say(f"request {i + 1:3d} failed: HTTP {resp.status}: {data['error']['message']}")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                out.say(f"request {i + 1:3d} failed: {type(exc).__name__}: {exc}")
            await anyio.sleep_until(start + (i + 1) / rate)


async def demo_async(seconds: float, rate: float) -> None:
    """Fake upstreams, a supervisor and the gateway; traffic through a scripted outage."""
    out = DemoPrinter()
    async with FakeUpstream("primary", default=ok("Hello from primary")) as primary, \
            FakeUpstream("backup", default=ok("Hello from backup")) as backup:
        with tempfile.TemporaryDirectory(prefix="fallback-demo-") as tmp:
            config = demo_config(primary.base_url, backup.base_url, os.path.join(tmp, "demo.db"), seconds)
            cooldown = config.routing.cooldown_s.service_unavailable
            out.say(f"primary (priority 1) at {primary.base_url}, backup (priority 2) at {backup.base_url}; "
                    f"cooldowns {cooldown:g} s, health pings every 1 s")
            async with Supervisor(config) as supervisor:
                supervisor.bus.listen([ProviderStateChanged, FallbackTriggered, ProviderRecovered,
                                       HealthChecked], out.on_event)
                ready, stop, urls = anyio.Event(), anyio.Event(), list[str]()

                def on_ready(url: str) -> None:
                    urls.append(url)
                    ready.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(partial(gateway.serve, supervisor, host="127.0.0.1", port=0,
                                          on_ready=on_ready, stop=stop))
                    with anyio.fail_after(10):
                        await ready.wait()
                    out.say(f"gateway listening on {urls[0]}; sending {rate:g} requests/s")
                    start = anyio.current_time()
                    tg.start_soon(script_outage, primary, seconds, start, out)
                    await send_requests(urls[0], seconds, rate, start, out)
                    stop.set()
    served = ", ".join(f"{name} {n}" for name, n in sorted(out.served.items())) or "none"
    print(f"done: answered by {served}; {out.fallbacks} fallbacks, {out.failbacks} failbacks", flush=True)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=positive, default=20.0, help="how long to run (default 20)")
    parser.add_argument("--rate", type=positive, default=5.0, help="requests a second (default 5)")


def _run(args: argparse.Namespace) -> int:
    run_async(demo_async, args.seconds, args.rate)
    return EXIT_OK


#: ``run.py demo``: a failover cycle against fake providers; no API keys needed.
DEMO = Command(help="watch a failover cycle against fake providers", configure=_configure, run=_run)
