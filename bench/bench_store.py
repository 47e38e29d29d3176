"""Event-log write path: what Store.append costs a caller, and how fast the flusher commits.

    python bench/bench_store.py                # 200,000 events, flat out
    python bench/bench_store.py --rate 10000   # paced at 10,000 events/s

Prints the append cost per call (from timing each batch of appends), the commit
throughput (events from the first append until all are committed, per second),
how many commits the flusher made, and the longest event-loop stall seen by a
1 ms ticker: the flusher must not block the callers' loop.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.lowlevel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.core.messages import AttemptSucceeded
from actors.edges.store.store import Store


async def bench(total: int, batch: int, rate: float) -> None:
    messages = [
        AttemptSucceeded(
            at=time.time(), provider=f"p{n % 3}", model="chat", request_id=f"r{n}", latency_ms=120.0
        )
        for n in range(total)
    ]
    commits = 0
    stall = 0.0

    async def count_commits() -> None:
        nonlocal commits
        while True:
            await store.wait_for_commit()
            commits += 1

    async def watch_loop() -> None:
        nonlocal stall
        while True:
            before = time.perf_counter()
            await anyio.sleep(0.001)
            stall = max(stall, time.perf_counter() - before - 0.001)

    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.db", retention_days=math.inf)
        per_call_us: list[float] = []
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            tg.start_soon(count_commits)
            tg.start_soon(watch_loop)
            start = time.perf_counter()
            for n, first in enumerate(range(0, total, batch)):
                t0 = time.perf_counter_ns()
                for message in messages[first : first + batch]:
                    store.append(message)
                per_call_us.append((time.perf_counter_ns() - t0) / 1000 / batch)
                if rate:
                    await anyio.sleep(max(0.0, start + (n + 1) * batch / rate - time.perf_counter()))
                else:
                    await anyio.lowlevel.checkpoint()  # let the flusher and the ticker run
            appended = time.perf_counter()
            await store.flush()
            committed = time.perf_counter()
            tg.cancel_scope.cancel()
        stored = await store.count_events()
        await store.close()
        size = sum([(await p.stat()).st_size async for p in anyio.Path(tmp).iterdir()])

    per_call_us.sort()
    mode = f"paced at {rate:,.0f}/s" if rate else "flat out"
    print(f"{total:,} AttemptSucceeded appended in batches of {batch} ({mode}); {stored:,} stored")
    print(
        f"append cost per call: mean {statistics.fmean(per_call_us):.3f} us,"
        f" p50 {per_call_us[len(per_call_us) // 2]:.3f} us,"
        f" p99 {per_call_us[int(len(per_call_us) * 0.99)]:.3f} us, max {per_call_us[-1]:.3f} us"
    )
    print(f"appending took {appended - start:.3f} s; all committed after {committed - start:.3f} s")
    print(f"commit throughput: {total / (committed - start):,.0f} events/s in {commits} commits")
    print(f"longest event-loop stall: {stall * 1000:.1f} ms; files on disk: {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as possible")
    args = parser.parse_args()
    anyio.run(bench, args.events, args.batch, args.rate)


if __name__ == "__main__":
    main()
