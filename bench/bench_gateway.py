"""Gateway benchmark (issue: service mode). Prints numbers; asserts nothing.

    python bench/bench_gateway.py [--requests 20000] [--concurrency 16]

Starts a 0-latency FakeUpstream in this process, the gateway (`run.py`) in
its own process pointed at it, and drives both with one aiohttp client at
the given concurrency, alternating direct and via-gateway rounds:
added latency p50/p99, throughput through the gateway, and the gateway's
RSS after 10k/50k/100k requests (with --rss). Loops are bounded in count
and time; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import anyio

from actors.testing import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def drive(session: aiohttp.ClientSession, url: str, n: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    per_worker = n // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            t = time.perf_counter()
            async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status} from {url}")
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    return latencies, time.perf_counter() - start


async def wait_listening(session: aiohttp.ClientSession, base: str) -> None:
    """Up to 10 s for a server in another process to answer /healthz."""
    for _ in range(200):
        try:
            async with session.get(base + "/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            await anyio.sleep(0.05)


async def compare(session: aiohttp.ClientSession, direct_url: str, via_url: str, n: int, concurrency: int,
                  title: str, middle: str) -> None:
    """Warm both up, then alternate four rounds direct / via ``middle``; print added latency and throughput."""
    await drive(session, direct_url, 1000, concurrency)
    await drive(session, via_url, 1000, concurrency)
    direct: list[float] = []
    via: list[float] = []
    via_time = 0.0
    for _ in range(4):
        d, _t = await drive(session, direct_url, n // 4, concurrency)
        v, t = await drive(session, via_url, n // 4, concurrency)
        direct += d
        via += v
        via_time += t
    print(f"{title}concurrency {concurrency}, {len(via)} requests each way (ms)")
    for q in (50, 99):
        print(f"  p{q}: direct {pct(direct, q):7.3f}  {middle} {pct(via, q):7.3f}  "
              f"added {pct(via, q) - pct(direct, q):7.3f}")
    print(f"  throughput through the {middle}: {len(via) / via_time:,.0f} requests/s "
          f"(client, upstream and {middle} share {os.cpu_count()} cores)")


async def main(n: int, concurrency: int, rss: bool) -> None:
    async with FakeUpstream("bench") as fake:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            cfg = Path(tmp) / "bench.toml"
            cfg.write_text(
                f'[server]\nport = {port}\n[state]\npath = "{tmp}/bench.db"\n'
                '[health]\nping_interval_s = 0\nfull_interval_s = 0\napi_interval_s = 0\n'
                f'[[providers]]\nname = "bench"\nbase_url = "{fake.base_url}"\nmodels = {{ chat = "m" }}\n'
            )
            proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(cfg),
                                     "--log-level", "warning"], cwd=tmp)
            try:
                gateway = f"http://127.0.0.1:{port}"
                connector = aiohttp.TCPConnector(limit=concurrency * 2)
                async with aiohttp.ClientSession(connector=connector) as session:
                    await wait_listening(session, gateway)
                    via_url = gateway + "/v1/chat/completions"
                    await compare(session, fake.base_url + "/chat/completions", via_url, n, concurrency,
                                  "", "gateway")
                    if rss:
                        done = n + 1000
                        for target in (10_000, 50_000, 100_000):
                            if target > done:
                                await drive(session, via_url, target - done, concurrency)
                                done = target
                            print(f"  gateway RSS after {done:>7,} requests: {rss_mb(proc.pid):6.1f} MB")
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="gateway vs direct")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rss", action="store_true", help="also report RSS at 10k/50k/100k requests")
    args = parser.parse_args()
    anyio.run(main, args.requests, args.concurrency, args.rss, backend_options={"use_uvloop": True})
