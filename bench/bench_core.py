"""Core benchmarks (issue: the actor core). Prints numbers; asserts nothing.

    python bench/bench_core.py [--requests 5000]

1. Added latency of Supervisor.chat() over a raw aiohttp POST to the same
   0-latency FakeUpstream, sequential (p50/p99 of the difference of medians
   per percentile).
2. Primary refusing connections, fallback healthy: time to answer vs the
   fallback's own latency (p50).
3. Events into the event log: 10,000 events/s offered for 3 s while the
   request path runs; request latency with and without that load.
Every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import aiohttp
import anyio
import msgspec

from actors import Supervisor, parse_config
from actors.core.messages import AttemptSucceeded
from actors.testing import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def config(state: str, *fakes: FakeUpstream) -> object:
    return parse_config(
        {
            "state": {"path": state},
            "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
            "providers": [
                {"name": f.name, "base_url": f.base_url, "models": {"chat": "m"}, "priority": i + 1}
                for i, f in enumerate(fakes)
            ],
        },
        env={},
    )


async def raw_latencies(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    body = msgspec.json.encode({"model": "m", "messages": HI})
    out = []
    for _ in range(n):
        t = time.perf_counter()
        async with session.post(url + "/chat/completions", data=body,
                                headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
        out.append((time.perf_counter() - t) * 1e6)
    return out


async def sup_latencies(sup: Supervisor, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await sup.chat(HI)
        out.append((time.perf_counter() - t) * 1e6)
    return out


async def added_latency(n: int, tmp: str) -> None:
    async with FakeUpstream("a") as a, aiohttp.ClientSession() as session:
        async with Supervisor(config(f"{tmp}/lat.db", a), session=session) as sup:  # type: ignore[arg-type]
            await raw_latencies(session, a.base_url, 200)
            await sup_latencies(sup, 200)
            raws, sups = [], []
            for _ in range(5):  # alternate to cancel drift
                raws += await raw_latencies(session, a.base_url, n // 5)
                sups += await sup_latencies(sup, n // 5)
    print(f"[1] sequential, {n} requests each (µs)")
    for q in (50, 99):
        r, s = pct(raws, q), pct(sups, q)
        print(f"    p{q}: raw {r:8.1f}  supervisor {s:8.1f}  added {s - r:7.1f}")


async def refused_primary(n: int, tmp: str) -> None:
    async with FakeUpstream("dead") as dead, FakeUpstream("live") as live, aiohttp.ClientSession() as session:
        await dead.refuse_connections()
        cfg = parse_config(
            {
                "state": {"path": f"{tmp}/refused.db"},
                # No cooldown and no threshold: the refusing primary stays in routing,
                # so every request meets the refusal first and falls back.
                "routing": {"failure_threshold": 1_000_000, "cooldown_s": {"connection_error": 0}},
                "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
                "providers": [
                    {"name": "dead", "base_url": dead.base_url, "models": {"chat": "m"}, "priority": 1},
                    {"name": "live", "base_url": live.base_url, "models": {"chat": "m"}, "priority": 2},
                ],
            },
            env={},
        )
        async with Supervisor(cfg, session=session) as sup:
            await sup_latencies(sup, 100)
            fallback_only, times = [], []
            for _ in range(5):
                fallback_only += await raw_latencies(session, live.base_url, n // 5)
                for _ in range(n // 5):
                    t = time.perf_counter()
                    reply = await sup.chat(HI)
                    times.append((time.perf_counter() - t) * 1e6)
                    assert (reply.provider, reply.attempts) == ("live", 2)
    print(f"[2] primary refusing connections, {n} requests that each meet the refusal (µs)")
    print(f"    p50: fallback alone {pct(fallback_only, 50):8.1f}  via supervisor {pct(times, 50):8.1f}  "
          f"added {pct(times, 50) - pct(fallback_only, 50):7.1f} (a refused connect alone costs ~300)")


async def event_load(n: int, tmp: str) -> None:
    async with FakeUpstream("a") as a, aiohttp.ClientSession() as session:
        async with Supervisor(config(f"{tmp}/events.db", a), session=session) as sup:  # type: ignore[arg-type]
            quiet = await sup_latencies(sup, n)
            assert sup.store is not None
            before = await sup.store.count_events()
            offered = 0
            loaded: list[float] = []

            async def flood() -> None:
                nonlocal offered
                start = time.perf_counter()
                for tick in range(300):  # 3 s, 100 per 10 ms = 10,000/s
                    for _ in range(100):
                        sup.bus.tell(AttemptSucceeded(at=time.time(), provider="bench", model="m",
                                                      request_id="x", latency_ms=0.1))
                        offered += 1
                    await anyio.sleep(max(0.0, start + (tick + 1) * 0.01 - time.perf_counter()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(flood)
                loaded = await sup_latencies(sup, n)
            await sup.store.flush()
            stored = await sup.store.count_events() - before
    print(f"[3] event log under 10,000 events/s ({offered} offered, {stored} stored incl. requests)")
    print(f"    request p50: quiet {pct(quiet, 50):8.1f} µs  under load {pct(loaded, 50):8.1f} µs; "
          f"p99 quiet {pct(quiet, 99):8.1f}  loaded {pct(loaded, 99):8.1f}")


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await added_latency(n, tmp)
        await refused_primary(min(n, 300), tmp)
        await event_load(min(n, 2000), tmp)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    print(f"python {statistics.__name__ and ''}bench_core: {args.requests} requests")
    anyio.run(main, args.requests, backend_options={"use_uvloop": True})
