"""What the fallback log directory ([logging] fallback_log_dir) costs the request path. Prints numbers.

    python bench/bench_log_dir.py [--requests 3000]

``Supervisor.chat()`` p50 / p99 against a 0-latency FakeUpstream, with the directory off ("") and
on, side by side in one run: answered at once (nothing to append), and after a 503 from the primary
(every request falls back: one line in fallback_events.jsonl each). The lines are written by a task
off the request path; this measures what is left on it. Every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

from actors import Supervisor, parse_config
from actors.testing import FakeUpstream, error

HI = [{"role": "user", "content": "hi"}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _config(tmp: str, fakes: list[FakeUpstream], log_dir: str, *, cooldown: float) -> Any:
    return parse_config({
        "state": {"path": os.path.join(tmp, "state.db")},
        "logging": {"fallback_log_dir": log_dir},
        # A 503 takes the primary out for 0 s and never makes it unhealthy: every request meets it.
        "routing": {"second_pass_backoff_s": 0, "failure_threshold": 10**9,
                    "cooldown_s": {"service_unavailable": cooldown}},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
        "providers": [{"name": f.name, "base_url": f.base_url, "models": {"chat": "m"}, "priority": i + 1}
                      for i, f in enumerate(fakes)],
    }, env={})


async def _run(n: int, *, log: bool, fall_back: bool) -> tuple[list[float], int]:
    async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup:
        if fall_back:
            primary.set_default(error(503))
        with tempfile.TemporaryDirectory() as tmp:
            log_dir = os.path.join(tmp, "logs") if log else ""
            async with Supervisor(_config(tmp, [primary, backup], log_dir, cooldown=0)) as sup:
                for _ in range(min(100, n)):
                    await sup.chat(HI)
                out = []
                for _ in range(n):
                    t = time.perf_counter()
                    await sup.chat(HI)
                    out.append((time.perf_counter() - t) * 1e6)
            lines = 0
            events = os.path.join(log_dir, "fallback_events.jsonl")
            if log and os.path.exists(events):  # no fallback, no file
                with open(events, "rb") as f:
                    lines = sum(1 for _ in f)
    return out, lines


async def main(n: int) -> None:
    print(f"Supervisor.chat(), {n} sequential requests per case (µs)")
    print(f"   {'':36} {'p50 off':>8} {'p50 on':>8} {'added':>7} {'p99 off':>8} {'p99 on':>8}  lines written")
    for name, fall_back in (("answered at once", False), ("503, then the fallback", True)):
        off, _ = await _run(n, log=False, fall_back=fall_back)
        on, lines = await _run(n, log=True, fall_back=fall_back)
        p_off, p_on = statistics.median(off), statistics.median(on)
        print(f"   {name:36} {p_off:8.0f} {p_on:8.0f} {p_on - p_off:+7.0f} {pct(off, 99):8.0f} {pct(on, 99):8.0f}"
              f"  {lines}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
