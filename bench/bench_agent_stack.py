"""The agent stack (issue 13): LangChain's cost over the engine, and 429s paid past a rate limit.

    python bench/bench_agent_stack.py [--requests 1000] [--burst 100]

1. Added latency of ``FallbackChatModel.ainvoke`` against the same 0-latency FakeUpstream:
   over ``Supervisor.chat`` (built over a running supervisor: same loop, no hop; and built from a
   config: its own loop in a thread), and over a bare LangChain ``ChatOpenAI`` pointed straight
   at the fake (no failover at all). Sequential; p50 / p99 in microseconds.
2. A burst past a known limit: the primary allows 25 requests a minute (it says so in
   x-ratelimit-* headers, and answers 429 past it); a backup has no limit. ``--burst`` requests,
   10 at a time. Counted: 429s the primary answered (paid), requests it served, requests the
   backup served, requests that failed. Ours: reacting to 429s only; header-driven admission;
   a configured rpm = 25; both. Peer in the same run: LiteLLM's Router (1.106.2) with the same
   two deployments and fallback, without and with its own ``rpm`` (usage-based-routing-v2).
Every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from actors import Supervisor, parse_config
from actors.testing import FakeUpstream, RateLimit

HI = [{"role": "user", "content": "hi"}]
RPM = 25  # not a multiple of the 10-request waves: the limit falls inside one


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _config(state: str, fakes: list[FakeUpstream], *, rpm: int | None = None, headers: bool = True) -> Any:
    return parse_config({
        "state": {"path": state},
        "routing": {"rate_limit_headers": headers, "second_pass_backoff_s": 0},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
        "providers": [
            {"name": f.name, "base_url": f.base_url, "priority": i + 1,
             "models": {"chat": {"model": "m", "rpm": rpm} if rpm and i == 0 else "m"}}
            for i, f in enumerate(fakes)
        ],
    }, env={})


async def _timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    for _ in range(min(50, n)):  # warm-up
        await call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t) * 1e6)
    return out


async def latency(n: int) -> None:
    from langchain_openai import ChatOpenAI

    from actors.langchain import FallbackChatModel

    async with FakeUpstream("fake") as fake:
        with tempfile.TemporaryDirectory() as tmp:
            config = _config(os.path.join(tmp, "a.db"), [fake])
            async with Supervisor(config) as sup:
                over = FallbackChatModel(supervisor=sup, model="chat")
                rows = {"Supervisor.chat": await _timed(lambda: sup.chat(HI), n),
                        "FallbackChatModel(supervisor=).ainvoke": await _timed(lambda: over.ainvoke("hi"), n)}
            own = FallbackChatModel(config=_config(os.path.join(tmp, "b.db"), [fake]), model="chat")
            try:
                rows["FallbackChatModel(config=).ainvoke"] = await _timed(lambda: own.ainvoke("hi"), n)
            finally:
                await own.aclose()
        bare = ChatOpenAI(base_url=fake.base_url, api_key="x", model="m", max_retries=0)  # type: ignore[arg-type]
        rows["ChatOpenAI (bare, no failover)"] = await _timed(lambda: bare.ainvoke("hi"), n)
    base = statistics.median(rows["Supervisor.chat"])
    bare_p50 = statistics.median(rows["ChatOpenAI (bare, no failover)"])
    print(f"\n1. latency, {n} sequential calls to a 0-latency FakeUpstream (us)")
    print(f"   {'':42} {'p50':>8} {'p99':>8} {'p50 - Supervisor.chat':>22} {'p50 - bare ChatOpenAI':>22}")
    for name, values in rows.items():
        p50 = statistics.median(values)
        print(f"   {name:42} {p50:8.0f} {pct(values, 99):8.0f} {p50 - base:+22.0f} {p50 - bare_p50:+22.0f}")


async def _burst(call: Callable[[], Awaitable[Any]], total: int) -> tuple[int, int]:
    ok = failed = 0
    async def one(results: list[bool]) -> None:
        try:
            await call()
            results.append(True)
        except Exception:
            results.append(False)

    for start in range(0, total, 10):
        results: list[bool] = []
        async with anyio.create_task_group() as tg:
            for _ in range(min(10, total - start)):
                tg.start_soon(one, results)
        ok += results.count(True)
        failed += results.count(False)
    return ok, failed


async def ours(total: int, *, rpm: int | None, headers: bool) -> tuple[int, int, int, int]:
    limit = RateLimit(requests=RPM)
    async with FakeUpstream("primary", limit=limit) as primary, FakeUpstream("backup") as backup:
        with tempfile.TemporaryDirectory() as tmp:
            async with Supervisor(_config(os.path.join(tmp, "s.db"), [primary, backup], rpm=rpm,
                                          headers=headers)) as sup:
                _, failed = await _burst(lambda: sup.chat(HI), total)
        return limit.refused, limit.admitted, backup.completions, failed


async def litellm_router(total: int, *, rpm: bool) -> tuple[int, int, int, int] | str:
    try:
        import litellm
        from litellm import Router
    except ImportError:
        return "litellm not installed (pip install -e '.[bench]')"
    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    limit = RateLimit(requests=RPM)
    async with FakeUpstream("primary", limit=limit) as primary, FakeUpstream("backup") as backup:
        first: dict[str, Any] = {"model": "openai/m", "api_base": primary.base_url, "api_key": "x"}
        if rpm:
            first["rpm"] = RPM
        router = Router(model_list=[
            {"model_name": "chat", "litellm_params": first},
            {"model_name": "chat-backup", "litellm_params": {"model": "openai/m", "api_base": backup.base_url,
                                                             "api_key": "x"}},
        ], fallbacks=[{"chat": ["chat-backup"]}], num_retries=0,
            routing_strategy="usage-based-routing-v2" if rpm else "simple-shuffle")
        _, failed = await _burst(lambda: router.acompletion(model="chat", messages=HI), total)
        return limit.refused, limit.admitted, backup.completions, failed


async def main(args: argparse.Namespace) -> None:
    await latency(args.requests)
    print(f"\n2. a burst of {args.burst} requests (10 at a time) at a primary allowing {RPM}/min; "
          "a backup with no limit")
    print(f"   {'':58} {'429s paid':>9} {'primary':>8} {'backup':>7} {'failed':>7}")
    cases: list[tuple[str, Awaitable[Any]]] = [
        ("ours: react to 429 only (rate_limit_headers = false)", ours(args.burst, rpm=None, headers=False)),
        ("ours: header-driven admission (default)", ours(args.burst, rpm=None, headers=True)),
        (f"ours: configured rpm = {RPM}, headers off", ours(args.burst, rpm=RPM, headers=False)),
        (f"ours: configured rpm = {RPM} + headers", ours(args.burst, rpm=RPM, headers=True)),
        ("LiteLLM Router 1.106.2: fallbacks, no rpm", litellm_router(args.burst, rpm=False)),
        (f"LiteLLM Router 1.106.2: rpm = {RPM} (usage-based-routing-v2)", litellm_router(args.burst, rpm=True)),
    ]
    for name, case in cases:
        got = await case
        if isinstance(got, str):
            print(f"   {name:58} {got}")
        else:
            print(f"   {name:58} {got[0]:9d} {got[1]:8d} {got[2]:7d} {got[3]:7d}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
