"""Replay and export speed (issue: replay). Prints numbers; asserts nothing.

    python bench/bench_replay.py [--events 300000] [--export 1000000]

1. **Replay**: builds a long incident log with the real actor classes (a
   day of traffic over three providers whose primary fails in bursts; probes
   answered by the same fault schedule), writes it as an exported log, then
   times ``read_log`` and ``replay`` (exact schedule) and checks it matches.
2. **Export**: writes ``--export`` events into a real SQLite state file through
   ``Store.append`` (the service's write path), then times
   ``export_events`` into a file, then runs ``run.py events export`` in its own process and reports its
   peak RSS: memory stays flat however long the log (pages of 20,000 rows).

Loops are bounded by the counts given; nothing touches the network.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.core.config import Config, parse_config
from actors.core.messages import (
    SCHEMA_VERSION,
    AttemptFailed,
    AttemptSucceeded,
    FallbackTriggered,
    HealthChecked,
    Message,
    ProbeRequested,
    SupervisorStarted,
    encode_message,
)
from actors.core.public_config import public_config
from actors.core.states import USABLE_STATES
from actors.edges.store.store import Store
from actors.replay import replay
from actors.replay.engine import DECISIONS, Engine
from actors.replay.eventlog import FORMAT, LogHeader, read_log
from actors.replay.export import export_events

START = 1_800_000_000.0
ROOT = Path(__file__).resolve().parent.parent


def vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def config() -> Config:
    return parse_config({"providers": [
        {"name": n, "base_url": f"http://127.0.0.1:{9000 + i}", "models": {"chat": "m"}, "priority": i + 1}
        for i, n in enumerate(("litellm", "kilocode", "openrouter"))]})


def build_log(path: Path, events: int, seed: int = 7) -> int:
    """Traffic through real actors (decisions placed right after their cause); return lines written."""
    rng = random.Random(seed)
    cfg = config()
    start = SupervisorStarted(at=START, providers=())
    engine = Engine(cfg, start, {})
    start = SupervisorStarted(at=START, providers=tuple(engine.views.values()))
    engine = Engine(cfg, start, {})
    outages = [(START + s, START + s + rng.uniform(60, 2400)) for s in sorted(rng.uniform(0, 86_400) for _ in range(40))]

    def down(at: float) -> bool:
        return any(a <= at < b for a, b in outages)

    written = 0
    with open(path, "wb") as out:
        header = LogHeader(format=FORMAT, schema_version=SCHEMA_VERSION, config=public_config(cfg),
                           configured=[p.name for p in cfg.providers])
        out.write(msgspec.json.encode(header) + b"\n")

        def emit(m: Message) -> None:
            nonlocal written
            out.write(encode_message(m) + b"\n")
            written += 1

        def cascade(batch: list[Message]) -> None:
            queue = deque(batch)
            while queue:
                m = queue.popleft()
                if type(m) in DECISIONS or isinstance(m, HealthChecked):
                    emit(m)  # as the live log would: when it is published
                queue.extend(engine.deliver(m))
                if isinstance(m, ProbeRequested):  # the probe's answer comes after its state change
                    queue.append(HealthChecked(at=m.at, provider=m.provider, tier="api", ok=not (
                        m.provider == "litellm" and down(m.at)), probe=True))

        emit(start)
        at, n = START, 0
        while written < events:
            at += rng.expovariate(3.0)  # ~3 requests a second for a day: ~260k requests
            while (deadline := engine.due(at)) is not None:
                cascade(engine.tick(deadline))
            engine.at(at)
            n += 1
            rid = f"req-{n}"
            for view in sorted(engine.views.values(), key=lambda v: v.priority):
                if view.state not in USABLE_STATES:
                    continue
                failing = (view.name == "litellm" and down(at)) or rng.random() < 0.02
                if not failing:
                    m: Message = AttemptSucceeded(at=at, provider=view.name, model="chat", request_id=rid,
                                                  latency_ms=round(rng.uniform(80, 900), 1))
                    emit(m)
                    cascade(engine.deliver(m))
                    break
                m = AttemptFailed(at=at, provider=view.name, model="chat", request_id=rid, kind="http",
                                  status=rng.choice((500, 503, 429)), message="scripted", retry_after_s=None)
                emit(m)
                cascade(engine.deliver(m))
                fb = FallbackTriggered(at=at, request_id=rid, from_provider=view.name, to_provider=None,
                                       category="server_error")
                emit(fb)
                cascade(engine.deliver(fb))
    return written


def bench_replay(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.jsonl"
        t = time.perf_counter()
        lines = build_log(path, events)
        built = time.perf_counter() - t
        size = path.stat().st_size / 1e6
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            log = read_log(path)
            t1 = time.perf_counter()
            result = replay(log)
            t2 = time.perf_counter()
            runs.append((t1 - t0, t2 - t1))
        assert result.matches, result.divergence and result.divergence.describe()
        best_read, best_replay = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"replay: {lines:,} events ({size:.0f} MB, {len(result.recorded):,} decisions) built in {built:.1f} s")
        print(f"  read_log   {best_read:6.2f} s  {lines / best_read:10,.0f} events/s")
        print(f"  replay     {best_replay:6.2f} s  {lines / best_replay:10,.0f} events/s (exact schedule)")
        print(f"  together   {best_read + best_replay:6.2f} s  {lines / (best_read + best_replay):10,.0f} events/s"
              f"  (best of 3; matches={result.matches})")


async def bench_export(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.db"
        store = await Store.open(state, retention_days=float("inf"))
        t = time.perf_counter()
        for n in range(events):
            store.append(AttemptSucceeded(at=START + n * 0.01, provider=("litellm", "kilocode")[n % 2],
                                          model="chat", request_id=f"req-{n}", latency_ms=120.5))
            if n % 20_000 == 19_999:
                await store.flush()
        await store.close()
        filled = time.perf_counter() - t
        out_path = Path(tmp) / "out.jsonl"
        t = time.perf_counter()
        with open(out_path, "wb") as out:
            count = await export_events(state, out)
        took = time.perf_counter() - t
        # The command line in its own process; its VmHWM (peak RSS) read from /proc while it runs.
        t = time.perf_counter()
        cmd = [sys.executable, str(ROOT / "run.py"), "events", "export", "--state", str(state), "-o", str(out_path)]
        child_rss = 0.0
        async with await anyio.open_process(cmd) as proc:
            with anyio.move_on_after(120):
                while proc.returncode is None:
                    child_rss = max(child_rss, vm_hwm_mb(proc.pid))
                    with anyio.move_on_after(0.05):
                        await proc.wait()
        cli = time.perf_counter() - t
        print(f"export: {count:,} events from a {state.stat().st_size / 1e6:.0f} MB state file "
              f"(filled in {filled:.1f} s)")
        print(f"  export_events()        {took:6.2f} s  {count / took:10,.0f} events/s -> "
              f"{out_path.stat().st_size / 1e6:.0f} MB")
        print(f"  run.py events export   {cli:6.2f} s  peak RSS {child_rss:.0f} MB (exit {proc.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000, help="events in the replayed log")
    parser.add_argument("--export", type=int, default=1_000_000, help="events in the exported state file")
    args = parser.parse_args()
    bench_replay(args.events)
    anyio.run(bench_export, args.export)


if __name__ == "__main__":
    main()
