"""Export and replay of a log a live service wrote (issue: replay that holds). Prints numbers; asserts nothing.

    python bench/bench_live_log.py [--events 100000]

Starts ``run.py`` (real clock, real sockets, its own process) in front of two
FakeUpstreams with one-second cooldowns, and sends requests through it until
its event log holds ``--events`` events, while the primary fails in bursts
(503s), so the log has cooldowns, probes, recoveries and failbacks. Then it
times, each in its own process as a user would run them:

* ``run.py events export`` of the whole log, and ``run.py replay`` of it
  (reports whether it matches);
* ``run.py events export --since T`` for T in the middle of the log, and its replay.

Every loop is bounded by the event count and a time limit; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import free_port, wait_listening

from actors.testing import FakeUpstream, error, ok

ROOT = Path(__file__).resolve().parent.parent
RUN = str(ROOT / "run.py")
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def config(tmp: Path, primary: FakeUpstream, backup: FakeUpstream, port: int) -> Path:
    providers = "".join(f'\n[[providers]]\nname = "{n}"\nbase_url = "{f.base_url}"\npriority = {i}\n'
                        'timeout_s = 5\nmodels = { chat = "m" }\n'
                        for i, (n, f) in enumerate((("primary", primary), ("backup", backup)), start=1))
    path = tmp / "live.toml"
    path.write_text(f'[server]\nport = {port}\n[state]\npath = "{tmp}/live.db"\nevents_max_mb = 10000\n'
                    '[routing]\nmax_cooldown_s = 2\n[routing.cooldown_s]\nservice_unavailable = 1\n'
                    '[health]\nping_interval_s = 0\nfull_interval_s = 0\napi_interval_s = 0\n'
                    f'api_timeout_s = 2\nprobe_tier = "api"\n{providers}')
    return path


async def drive(url: str, primary: FakeUpstream, events: int, limit_s: float) -> tuple[int, float]:
    """Requests at concurrency 16 until ~``events`` are logged (or the time limit); the primary flaps."""
    sent, start = 0, time.perf_counter()
    target = events  # a success logs 1 event (a fallback ~5, but they are rare)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        async def worker() -> None:
            nonlocal sent
            while sent < target and time.perf_counter() - start < limit_s:
                sent += 1
                if sent % 5000 == 0:  # an outage of ~1.5 s every 5,000 requests
                    primary.set_default(error(503, "overloaded"))
                elif sent % 5000 == 1500:
                    primary.set_default(ok())
                async with http.post(url + "/v1/chat/completions", json=BODY) as resp:
                    await resp.read()
        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(worker)
        async with http.get(url + "/events?limit=1") as resp:  # flush the batched log
            await resp.read()
        async with http.get(url + "/status") as resp:
            status = await resp.json()
    del status
    return sent, time.perf_counter() - start


def timed(*args: str, cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    result = subprocess.run([sys.executable, RUN, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=900, check=False)
    return time.perf_counter() - t, result.stdout + result.stderr


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        async with FakeUpstream("primary") as primary, FakeUpstream("backup") as backup:
            port = free_port()
            cfg = config(tmp, primary, backup, port)
            proc = subprocess.Popen([sys.executable, RUN, "--config", str(cfg), "--log-level", "warning"],
                                    cwd=tmp)
            try:
                url = f"http://127.0.0.1:{port}"
                async with aiohttp.ClientSession() as http:
                    await wait_listening(http, url)
                started = time.time()
                sent, took = await drive(url, primary, events, limit_s=300)
                middle = started + took / 2
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        print(f"live log: {sent:,} requests in {took:.1f} s through run.py (primary down in bursts)")
        whole, part = tmp / "whole.jsonl", tmp / "since.jsonl"
        t_export, out = timed("events", "export", "--config", str(cfg), "-o", str(whole), cwd=tmp)
        lines = sum(1 for _ in whole.open()) - 1
        print(f"  export, whole log:   {lines:>9,} events in {t_export:6.2f} s ({out.strip().splitlines()[-1]})")
        t_replay, out = timed("replay", str(whole), "--limit", "5", cwd=tmp)
        verdict = "matches" if "matches:" in out else "DIVERGED" if "DIVERGED" in out else "?"
        print(f"  replay, whole log:   {lines:>9,} events in {t_replay:6.2f} s: {verdict}")
        t_since, out = timed("events", "export", "--config", str(cfg), "--since", f"{middle:.3f}",
                             "-o", str(part), cwd=tmp)
        part_lines = sum(1 for _ in part.open()) - 1
        print(f"  export --since mid:  {part_lines:>9,} lines in {t_since:6.2f} s (state at T + the rest)")
        t_part, out = timed("replay", str(part), "--limit", "5", cwd=tmp)
        verdict = "matches" if "matches:" in out else "DIVERGED" if "DIVERGED" in out else "?"
        print(f"  replay of excerpt:   {part_lines:>9,} lines in {t_part:6.2f} s: {verdict}")
        if verdict != "matches":
            print(out[-3000:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    anyio.run(main, parser.parse_args().events, backend_options={"use_uvloop": True})
