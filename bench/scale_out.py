"""Scale-out benchmark (issue 15). Prints numbers; asserts nothing.

    python bench/scale_out.py [--rounds 100] [--seconds 5] [--concurrency 24] [--only ...]

Three gateways (``run.py``, each its own process and state file) on one real
``redis-server`` (loopback, started here), fake providers in this process:

* ``death``: a primary that starts answering 503 under load spread over the
  three: how many user requests reach it after it died, with shared state
  and with three independent instances (no ``shared_url``);
* ``propagation``: a cooldown set on one instance, until the other two
  honour it, from the instances' own event logs (the failure's time on the
  one, the peer's change arriving on the others; one host, one wall clock),
  ``--rounds`` times;
* ``workers``: throughput of ``run.py --workers 2`` against one process;
* ``litellm``: the ``death`` scenario with three LiteLLM proxies on the same
  Redis (``router_settings: redis_host / redis_port``; one model group whose
  deployments have ``order`` 1, 2, ``num_retries = 0``, LiteLLM's defaults
  otherwise), needs the ``bench`` extra.

Loops are bounded in count and time; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from actors.core.messages import decode_message
from actors.edges.store import Store
from actors.testing import FakeUpstream, error, ok

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import free_port  # noqa: E402  (the bench runs from the checkout)

BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'
TOKEN = "bench-admin"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


class Redis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def write_config(directory: Path, name: str, port: int, primary: FakeUpstream, backup: FakeUpstream,
                 redis: str | None) -> Path:
    prefix = name.rstrip("0123456789")  # one cluster per scenario
    shared = f'shared_url = "{redis}"\nshared_prefix = "bench-{prefix}"\n' if redis else ""
    providers = "".join(f"""
[[providers]]
name = "{n}"
base_url = "{f.base_url}"
priority = {i}
timeout_s = 5
models = {{ chat = "fake-model" }}
""" for i, (n, f) in enumerate((("primary", primary), ("backup", backup)), start=1))
    path = directory / f"{name}.toml"
    path.write_text(f"""
[server]
port = {port}
shutdown_grace_s = 2

[state]
path = "{directory / name}.db"
{shared}
[health]
ping_interval_s = 0
full_interval_s = 0
api_interval_s = 0
{providers}""")
    return path


class Service:
    def __init__(self, config: Path, port: int, *extra: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "FALLBACK_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        self.log = open(config.with_suffix(".log"), "wb")  # closed in stop()
        self.process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config),
                                         "--log-level", "warning", *extra], cwd=config.parent, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(300):
            try:
                async with http.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await anyio.sleep(0.05)
        raise RuntimeError(f"{self.url} did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


async def state(http: aiohttp.ClientSession, service: Service) -> str:
    async with http.get(service.url + "/status") as r:
        status: dict[str, Any] = await r.json()
        return str(status["providers"]["primary"]["state"])


async def wait_all(http: aiohttp.ClientSession, services: list[Service], states: set[str]) -> None:
    with anyio.move_on_after(20):
        while True:
            if all([await state(http, s) in states for s in services]):
                return
            await anyio.sleep(0.01)
    raise RuntimeError(f"not all {states}: {[await state(http, s) for s in services]}")


async def load(http: aiohttp.ClientSession, services: list[Any], seconds: float, concurrency: int,
               died: anyio.Event | None = None, on_half: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, int, float]:
    """Round-robin POSTs over ``services``; (answered, failed, requests/s)."""
    answered = failed = 0
    end = time.perf_counter() + seconds
    half = time.perf_counter() + seconds / 2

    async def client(i: int) -> None:
        nonlocal answered, failed
        n = i
        while time.perf_counter() < end:
            service = services[n % len(services)]
            n += 1
            try:
                async with http.post(service.url + "/v1/chat/completions", data=BODY,
                                     headers={"Content-Type": "application/json", **(headers or {})}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        answered += 1
                    else:
                        failed += 1
            except aiohttp.ClientError:
                failed += 1

    async def switch() -> None:
        await anyio.sleep(max(0.0, half - time.perf_counter()))
        if on_half is not None:
            on_half()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(switch)
        for i in range(concurrency):
            tg.start_soon(client, i)
    return answered, failed, (answered + failed) / (time.perf_counter() - start)


async def three(directory: Path, primary: FakeUpstream, backup: FakeUpstream, redis: str | None,
                tag: str) -> list[Service]:
    services = []
    for i in range(3):
        port = free_port()
        services.append(Service(write_config(directory, f"{tag}{i}", port, primary, backup, redis), port))
    return services


async def death(http: aiohttp.ClientSession, directory: Path, redis: Redis, seconds: float,
                concurrency: int) -> None:
    print("\n== a primary that dies under load, three instances, concurrency", concurrency)
    for shared in (True, False):
        async with FakeUpstream("primary", default=ok()) as primary, FakeUpstream("backup") as backup:
            tag = f"{'shared' if shared else 'alone'}-c{concurrency}-"
            services = await three(directory, primary, backup, redis.url if shared else None, tag)
            try:
                for s in services:
                    await s.ready(http)
                marks: dict[str, int] = {}

                def die(marks: dict[str, int] = marks, primary: FakeUpstream = primary) -> None:
                    marks["before"] = primary.completions
                    primary.set_default(error(503))

                await load(http, services, 2.0, concurrency)  # warm up
                answered, failed, rate = await load(http, services, seconds, concurrency, on_half=die)
                reached = primary.completions - marks["before"]
            finally:
                for s in services:
                    s.stop()
            fails = [(i, m) for i in range(3) for m in await _events(directory / f"{tag}{i}.db", "attempt_failed")
                     if m.provider == "primary"]
            first = min(m.at for _, m in fails)  # the first failure answered, anywhere in the cluster
            late = sum(1 for _, m in fails if m.at - m.latency_ms / 1000 > first)
            last = {i: m.at - m.latency_ms / 1000 for i, m in sorted(fails, key=lambda f: f[1].at)}
            spans = ", ".join(f"i{i} {1000 * (t - first):.0f} ms" for i, t in sorted(last.items()))
            print(f"  {'shared (redis)' if shared else 'independent   '}: {reached} user requests reached the "
                  f"dead primary; {reached - late} were in flight when it first failed, {late} sent after "
                  f"(answered {answered}, failed {failed}, {rate:.0f} req/s); last one sent by each instance "
                  f"after the first failure: {spans}")


async def _events(path: Path, kind: str = "provider_state_changed") -> list[Any]:
    store = await Store.open(str(path), readonly=True)
    try:
        out: list[Any] = []
        after = 0
        while page := await store.events(after=after, limit=20_000, types=[kind]):
            out.extend(decode_message(e.data) for e in page)
            after = page[-1].id
        return out
    finally:
        await store.close()


async def propagation(http: aiohttp.ClientSession, directory: Path, redis: Redis, rounds: int) -> None:
    print(f"\n== a cooldown set on one instance, until the others honour it ({rounds} rounds)")
    async with FakeUpstream("primary", default=ok()) as primary, FakeUpstream("backup") as backup:
        services = await three(directory, primary, backup, redis.url, "prop")
        try:
            for s in services:
                await s.ready(http)
            for n in range(rounds):
                origin = services[n % 3]
                primary.script(error(503))
                async with http.post(origin.url + "/v1/chat/completions", data=BODY,
                                     headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                await wait_all(http, services, {"cooldown"})
                async with http.post(origin.url + "/admin/providers/primary/enable",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    await r.read()
                await wait_all(http, services, {"healthy"})
        finally:
            for s in services:
                s.stop()
    logs = [await _events(directory / f"prop{i}.db") for i in range(3)]
    own = sorted((m.at, i) for i, log in enumerate(logs) for m in log
                 if m.new == "cooldown" and not m.peer and m.provider == "primary")
    delays: list[float] = []
    for at, i in own:
        for j, log in enumerate(logs):
            if j != i:
                seen = next((m.at for m in log if m.new == "cooldown" and m.peer and m.at >= at), None)
                if seen is not None:
                    delays.append((seen - at) * 1000)
    print(f"  {len(delays)} peer arrivals: p50 {pct(delays, 50):.2f} ms, p99 {pct(delays, 99):.2f} ms, "
          f"max {max(delays):.2f} ms  (goal p99 <= 50 ms)")


async def workers(http: aiohttp.ClientSession, directory: Path, redis: Redis, seconds: float,
                  concurrency: int) -> None:
    print(f"\n== throughput, one process against --workers 2 (concurrency {concurrency}, {seconds:g} s)")
    async with FakeUpstream("primary", default=ok()) as primary, FakeUpstream("backup") as backup:
        for count in (1, 2, 1, 2):
            port = free_port()
            config = write_config(directory, f"w{count}-{port}", port, primary, backup, redis.url)
            service = Service(config, port, *(("--workers", "2") if count == 2 else ()))
            try:
                await service.ready(http)
                await load(http, [service], 1.0, concurrency)  # warm up
                answered, failed, rate = await load(http, [service], seconds, concurrency)
                print(f"  {'--workers 2' if count == 2 else 'one process'}: {rate:.0f} req/s "
                      f"(answered {answered}, failed {failed})")
            finally:
                service.stop()


class Arrivals:
    """When each request reached a fake (polled every millisecond), and from which proxy (its key)."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.seen: list[tuple[float, str]] = []

    async def watch(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            for request in self.fake.requests[len(self.seen):]:
                self.seen.append((time.time(), request.headers.get("authorization", "")))
            await anyio.sleep(0.001)


async def litellm_death(http: aiohttp.ClientSession, directory: Path, redis: Redis, seconds: float,
                        concurrency: int) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from compare_systems import CLIENT_KEY, litellm_router_settings, start_litellm_proxy

    print(f"\n== LiteLLM's proxy on Redis: a primary that dies under load, three proxies, concurrency "
          f"{concurrency}")
    async with FakeUpstream("primary", default=ok()) as primary, FakeUpstream("backup") as backup:
        proxies = []
        for i in range(3):
            tmp = directory / f"litellm{i}-c{concurrency}"
            tmp.mkdir()
            model_list, settings, _ = litellm_router_settings(
                [("primary", primary.base_url), ("backup", backup.base_url)], mode="order", num_retries=0,
                timeout_s=5, extra={"redis_host": "127.0.0.1", "redis_port": redis.port})
            for deployment in model_list:
                deployment["litellm_params"]["api_key"] = f"proxy-{i}"  # who sent it, as the fake sees it
            proxies.append(start_litellm_proxy(str(tmp), model_list, settings))
        arrivals = Arrivals(primary)
        stop = anyio.Event()
        try:
            for proxy in proxies:
                await proxy.wait_ready(http)
            marks: dict[str, float] = {}

            def die() -> None:
                marks["before"] = primary.completions
                marks["at"] = time.time()
                primary.set_default(error(503))

            auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
            await load(http, proxies, 2.0, concurrency, headers=auth)  # warm up (a first call takes ~1.5 s)
            async with anyio.create_task_group() as tg:
                tg.start_soon(arrivals.watch, stop)
                answered, failed, rate = await load(http, proxies, seconds, concurrency, on_half=die,
                                                    headers=auth)
                stop.set()
        finally:
            for proxy in proxies:
                proxy.stop()
        after = [(t, who) for t, who in arrivals.seen if t >= marks["at"]]
        reached = primary.completions - int(marks["before"])
        last = {who: t for t, who in after}
        spans = ", ".join(f"{who.removeprefix('Bearer ')} {1000 * (t - after[0][0]):.0f} ms"
                          for who, t in sorted(last.items())) if after else "none"
        print(f"  litellm (redis): {reached} user requests reached the dead primary (answered {answered}, "
              f"failed {failed}, {rate:.0f} req/s); last one from each proxy after the first: {spans}")


async def main(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="pf-scale-"))
    redis = Redis(directory)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            if "death" in args.only:
                for concurrency in sorted({3, args.concurrency}):
                    await death(http, directory, redis, args.seconds, concurrency)
            if "propagation" in args.only:
                await propagation(http, directory, redis, args.rounds)
            if "litellm" in args.only:
                for concurrency in sorted({3, args.concurrency}):
                    await litellm_death(http, directory, redis, args.seconds, concurrency)
            if "workers" in args.only:
                await workers(http, directory, redis, args.seconds, args.concurrency)
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--only", nargs="+", default=["death", "propagation", "workers"],
                        choices=["death", "propagation", "workers", "litellm"])
    anyio.run(main, parser.parse_args())
