# ruff: noqa: E402  (the clock starts before the imports; sys.path is set before compare_systems)
"""Us against LiteLLM, side by side, on the same fake providers. Prints numbers; asserts nothing.

    python bench/run.py [--quick] [--out bench/results/latest.json] [--only NAME ...]

Needs the bench extra (``pip install -e '.[bench]'``). Starts FakeUpstreams on
127.0.0.1 in this process, our library and LiteLLM's Router in this process,
and our service (run.py) and LiteLLM's proxy (``litellm --config``) each in
its own process. Each scenario runs both systems in the same run, in
alternating rounds; the table shows medians over rounds and the ratio
us/LiteLLM. Every loop is bounded in count and in time. See bench/README.md.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import anyio
import msgspec
from compare_systems import (
    UPSTREAM_KEY,
    describe_litellm,
    litellm_module,
    litellm_router,
    litellm_router_settings,
    msgs,
    our_raw_config,
    our_supervisor,
    pool,
    rss_mb,
    start_litellm_proxy,
    start_ours,
    tag_of,
)

from actors.testing import FakeUpstream, error, hang, ok, reset

HERE = Path(__file__).resolve().parent
RESULTS: dict[str, Any] = {}
ROWS: list[tuple[str, str, str, str, str]] = []  # scenario, measure, ours, litellm, ratio
Q = argparse.Namespace()  # sizes, set in main()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def med(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}"
    else:
        text = f"{v:,}" if isinstance(v, int) else str(v)
    return f"{text}{unit}"


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or a != a or b != b:
        return "-"
    if a < 0 or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def row(scenario: str, measure: str, ours: Any, theirs: Any, unit: str = "", show_ratio: bool = True) -> None:
    ROWS.append((scenario, measure, fmt(ours, unit), fmt(theirs, unit),
                 ratio(ours, theirs) if show_ratio else "-"))
    print(f"  {scenario:<28} {measure:<44} ours {fmt(ours, unit):>12}   litellm {fmt(theirs, unit):>12}",
          flush=True)


def best_of(runs: dict[str, Any], key: str, *, higher: bool = False) -> tuple[Any, str]:
    """The best LiteLLM figure for `key` across the variants in `runs`, and the variant's name."""
    got = [(v[key], k) for k, v in runs.items() if k.startswith("litellm") and isinstance(v.get(key), int | float)]
    if not got:
        return None, "-"
    value, name = (max if higher else min)(got)
    return value, name.removeprefix("litellm:")


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- clients

BODY = msgspec.json.encode({"model": "chat", "messages": msgs("hi")})
SBODY = msgspec.json.encode({"model": "chat", "messages": msgs("hi"), "stream": True})
DIRECT_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {UPSTREAM_KEY}"}


async def http_call(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes = BODY) -> float:
    t = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status} from {url}")
    return (time.perf_counter() - t) * 1e3


async def http_stream(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, float, int]:
    """(ms to the first content chunk, ms to the end, content chunks)."""
    t = time.perf_counter()
    first, n = float("nan"), 0
    async with session.post(url, data=SBODY, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status} from {url}")
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                if n == 0:
                    first = (time.perf_counter() - t) * 1e3
                n += 1
    return first, (time.perf_counter() - t) * 1e3, n


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await call()
    return (time.perf_counter() - t) * 1e3


async def latencies(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> tuple[list[float], float]:
    return await pool(lambda _i: timed(call), n, concurrency, Q.cap_s)


def rotate(items: list[Any], r: int) -> list[Any]:
    k = r % len(items)
    return items[k:] + items[:k]


# ---------------------------------------------------------------- 1. added latency, library


async def added_latency_rounds(systems: dict[str, Callable[[], Awaitable[Any]]], n: int, concurrency: int,
                               rounds: int) -> dict[str, Any]:
    """Per round: each system (direct included) in rotating order; per-round percentiles."""
    per: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p95": [], "p99": [], "rps": []} for k in systems}
    for call in systems.values():  # warm-up
        await latencies(call, max(20, n // 10), concurrency)
    for r in range(rounds):
        for name in rotate(list(systems), r):
            lat, secs = await latencies(systems[name], n, concurrency)
            for q in (50, 95, 99):
                per[name][f"p{q}"].append(pct(lat, q))
            per[name]["rps"].append(len(lat) / secs)
    out: dict[str, Any] = {"rounds": per, "requests_per_round": n, "concurrency": concurrency}
    for name in systems:
        if name == "direct":
            continue
        out[name] = {q: med([s - d for s, d in zip(per[name][q], per["direct"][q], strict=True)])
                     for q in ("p50", "p95", "p99")}
        out[name]["rps"] = med(per[name]["rps"])
    out["direct"] = {q: med(per["direct"][q]) for q in ("p50", "p95", "p99")}
    return out


async def scenario_library_latency() -> None:
    say("\n== added latency, library: Supervisor.chat vs Router.acompletion (ms over a direct aiohttp POST)")
    async with FakeUpstream("lat") as fake, aiohttp.ClientSession() as session:
        with tempfile.TemporaryDirectory() as tmp:
            raw = our_raw_config([("lat", fake.base_url)], state_path=f"{tmp}/s.db")
            ml, settings, model = litellm_router_settings([("lat", fake.base_url)], mode="order", num_retries=None)
            router = litellm_router(ml, settings)
            direct_url = fake.base_url + "/chat/completions"
            async with our_supervisor(raw) as sup:
                systems = {
                    "direct": lambda: http_call(session, direct_url, DIRECT_HEADERS),
                    "ours": lambda: sup.chat(msgs("hi")),
                    "litellm": lambda: router.acompletion(model=model, messages=msgs("hi")),
                }
                res = {}
                for conc, n in ((1, Q.lat_seq), (16, Q.lat_conc)):
                    r = await added_latency_rounds(systems, n, conc, Q.rounds)
                    res[f"c{conc}"] = r
                    label = "sequential" if conc == 1 else f"concurrency {conc}"
                    for q in ("p50", "p95", "p99"):
                        row("library latency", f"added {q}, {label} (direct {fmt(r['direct'][q])} ms)",
                            r["ours"][q], r["litellm"][q], " ms")
                    row("library latency", f"requests/s, {label}", r["ours"]["rps"], r["litellm"]["rps"])
            RESULTS["library_latency"] = {**res, "litellm_settings": describe_litellm("order", None)}


# ---------------------------------------------------------------- 2-4. service vs proxy


async def scenario_services() -> None:
    say("\n== service vs proxy: our run.py vs `litellm --config` (each in its own process)")
    async with FakeUpstream("svc") as fake:
        with tempfile.TemporaryDirectory() as t1, tempfile.TemporaryDirectory() as t2:
            provs = [("svc", fake.base_url)]
            ml, settings, _ = litellm_router_settings(provs, mode="order", num_retries=None)
            services = {"ours": start_ours(t1, provs), "litellm": start_litellm_proxy(t2, ml, settings)}
            connector = aiohttp.TCPConnector(limit=256)
            try:
                async with aiohttp.ClientSession(connector=connector) as session:
                    for s in services.values():
                        await s.wait_ready(session)
                    RESULTS["startup_s"] = {k: s.startup_s for k, s in services.items()}
                    say(f"  started: ours {services['ours'].startup_s:.1f} s, "
                        f"litellm proxy {services['litellm'].startup_s:.1f} s")
                    await _service_runs(session, services, fake)
            finally:
                for k, s in services.items():
                    s.stop()
                    log = Path(s.tmp, "service.log").read_text(errors="replace")
                    RESULTS.setdefault("service_logs", {})[k] = {
                        "tracebacks": log.count("Traceback"), "lines": log.count("\n"),
                        "tail": log[-1500:] if "Traceback" in log else ""}


async def _service_runs(session: aiohttp.ClientSession, services: dict[str, Any], fake: FakeUpstream) -> None:
    direct_url = fake.base_url + "/chat/completions"
    calls = {"direct": lambda: http_call(session, direct_url, DIRECT_HEADERS)}
    for k, s in services.items():
        calls[k] = (lambda s=s: http_call(session, s.completions, s.headers))
    served = dict.fromkeys(services, 0)
    res: dict[str, Any] = {}
    for conc, n in ((1, Q.svc_seq), (16, Q.svc_c16), (64, Q.svc_c64)):
        r = await added_latency_rounds(calls, n, conc, Q.rounds)
        res[f"c{conc}"] = r
        for k in services:
            served[k] += n * (Q.rounds + 0) + max(20, n // 10)
        label = "sequential" if conc == 1 else f"concurrency {conc}"
        if conc in (1, 16):
            for q in ("p50", "p95", "p99"):
                row("service latency", f"added {q}, {label} (direct {fmt(r['direct'][q])} ms)",
                    r["ours"][q], r["litellm"][q], " ms")
        if conc > 1:
            row("service throughput", f"requests/s at concurrency {conc}", r["ours"]["rps"], r["litellm"]["rps"])
    RESULTS["service_latency_throughput"] = {**res, "litellm_settings": describe_litellm("order", None)}

    # streaming through the services: the fake's default answer, 4 chunks
    per: dict[str, dict[str, list[float]]] = {k: {"first": [], "total": []} for k in ("direct", *services)}
    urls = {"direct": (direct_url, DIRECT_HEADERS), **{k: (s.completions, s.headers) for k, s in services.items()}}
    for r in range(Q.rounds):
        for k in rotate(list(urls), r):
            res_s, _ = await pool(lambda _i, k=k: http_stream(session, *urls[k]), Q.stream_n, 1, Q.cap_s)
            per[k]["first"].append(med([x[0] for x in res_s]))
            per[k]["total"].append(med([x[1] for x in res_s]))
    st = {k: {m: med(v) for m, v in d.items()} for k, d in per.items()}
    RESULTS["service_stream_4_chunks"] = {"medians_ms": st, "rounds": per}
    row("service streaming, 4 chunks", f"time to first chunk (direct {fmt(st['direct']['first'])} ms)",
        st["ours"]["first"], st["litellm"]["first"], " ms")
    row("service streaming, 4 chunks", f"total time (direct {fmt(st['direct']['total'])} ms)",
        st["ours"]["total"], st["litellm"]["total"], " ms")

    # memory: drive each to the targets, alternating in slices, RSS at each target
    mem: dict[str, dict[str, float]] = {k: {} for k in services}
    done = dict(served)
    spent = dict.fromkeys(services, 0.0)  # each system's own driving time, against its memory-phase budget
    for k in services:
        mem[k][str(done[k])] = rss_mb(services[k].pid)
    for target in Q.rss_targets:
        for k in services:
            s = services[k]
            while done[k] < target and spent[k] < Q.rss_cap_s:
                n = min(2000, target - done[k])
                got, secs = await pool(lambda _i, s=s: http_call(session, s.completions, s.headers), n, 64,
                                       max(0.1, Q.rss_cap_s - spent[k]))
                done[k] += len(got)
                spent[k] += secs
            if done[k] >= target:
                mem[k][str(target)] = rss_mb(s.pid)
        row("memory (RSS, MB)", f"after {target:,} requests", mem["ours"].get(str(target)),
            mem["litellm"].get(str(target)), " MB")
    for k in services:
        if done[k] < Q.rss_targets[-1]:
            mem[k][str(done[k])] = rss_mb(services[k].pid)
            say(f"  {k}: reached {done[k]:,} requests in the {Q.rss_cap_s:g} s memory budget; "
                f"RSS {mem[k][str(done[k])]:.0f} MB")
    RESULTS["memory_rss_mb"] = {"after_requests": mem, "targets": Q.rss_targets,
                                "note": "RSS of the process and its children; counts include earlier scenarios"}


# ---------------------------------------------------------------- 5. streaming, library


async def _lib_stream_ours(sup: Any) -> tuple[float, float, int]:
    t = time.perf_counter()
    first, n = float("nan"), 0
    async for chunk in sup.stream(msgs("hi")):
        choices = chunk.get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content"):
            if n == 0:
                first = (time.perf_counter() - t) * 1e3
            n += 1
    return first, (time.perf_counter() - t) * 1e3, n


async def _lib_stream_litellm(router: Any, model: str) -> tuple[float, float, int]:
    t = time.perf_counter()
    first, n = float("nan"), 0
    resp = await router.acompletion(model=model, messages=msgs("hi"), stream=True)
    async for chunk in resp:
        if chunk.choices and chunk.choices[0].delta.content:
            if n == 0:
                first = (time.perf_counter() - t) * 1e3
            n += 1
    return first, (time.perf_counter() - t) * 1e3, n


async def scenario_library_stream() -> None:
    say("\n== streaming, library: time to first chunk and total (ms, median of per-round medians)")
    out: dict[str, Any] = {}
    for chunks in (4, 64):
        async with FakeUpstream(f"s{chunks}", default=ok("word " * 64, chunks=chunks)) as fake, \
                aiohttp.ClientSession() as session:
            with tempfile.TemporaryDirectory() as tmp:
                provs = [(fake.name, fake.base_url)]
                raw = our_raw_config(provs, state_path=f"{tmp}/s.db")
                ml, settings, model = litellm_router_settings(provs, mode="order", num_retries=None)
                router = litellm_router(ml, settings)
                async with our_supervisor(raw) as sup:
                    url = fake.base_url + "/chat/completions"
                    systems = {"direct": partial(http_stream, session, url, DIRECT_HEADERS),
                               "ours": partial(_lib_stream_ours, sup),
                               "litellm": partial(_lib_stream_litellm, router, model)}
                    per: dict[str, dict[str, list[float]]] = {k: {"first": [], "total": [], "chunks": []}
                                                              for k in systems}
                    for k in systems:
                        await pool(lambda _i, f=systems[k]: f(), 10, 1, Q.cap_s)
                    for r in range(Q.rounds):
                        for k in rotate(list(systems), r):
                            res, _ = await pool(lambda _i, f=systems[k]: f(), Q.stream_n, 1, Q.cap_s)
                            per[k]["first"].append(med([x[0] for x in res]))
                            per[k]["total"].append(med([x[1] for x in res]))
                            per[k]["chunks"].append(med([x[2] for x in res]))
                    m = {k: {q: med(v) for q, v in d.items()} for k, d in per.items()}
                    out[f"{chunks}_chunks"] = {"medians": m, "rounds": per}
                    row(f"library streaming, {chunks} chunks",
                        f"time to first chunk (direct {fmt(m['direct']['first'])} ms)",
                        m["ours"]["first"], m["litellm"]["first"], " ms")
                    row(f"library streaming, {chunks} chunks", f"total time (direct {fmt(m['direct']['total'])} ms)",
                        m["ours"]["total"], m["litellm"]["total"], " ms")
    RESULTS["library_streaming"] = out


# ---------------------------------------------------------------- 6. failover

LITELLM_VARIANTS = [("fallbacks", None), ("fallbacks", 0), ("order", None), ("order", 0)]
FAULTS = ["503", "refused", "hang", "429"]
RETRY_AFTER_S = 2


async def _apply_fault(primary: FakeUpstream, fault: str) -> None:
    match fault:
        case "503":
            primary.set_default(error(503))
            primary.set_health(error(503))
        case "refused":
            await primary.refuse_connections()
        case "hang":
            primary.set_default(hang())
            primary.set_health(hang())
        case "429":
            primary.set_default(error(429, retry_after=RETRY_AFTER_S))
            primary.set_health(error(429, retry_after=RETRY_AFTER_S))


class Client:
    """One system in this process: call(tag) -> (answered, who served)."""

    def __init__(self, name: str, call: Callable[[str], Awaitable[str]], cm: Any = None) -> None:
        self.name, self._call, self.cm = name, call, cm

    async def call(self, tag: str) -> tuple[bool, str]:
        try:
            text = await self._call(tag)
        except Exception as exc:  # every failure counts; the system's own error type differs
            return False, type(exc).__name__
        return True, text.removeprefix("from ")


@contextlib.asynccontextmanager
async def make_client(system: str, providers: list[tuple[str, str]], tmp: str, *, timeout_s: float,
                      routing: dict[str, Any] | None = None, litellm_extra: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    if system == "ours":
        raw = our_raw_config(providers, state_path=f"{tmp}/{random.random()}.db", timeout_s=timeout_s,
                             routing=routing)
        async with our_supervisor(raw) as sup:
            async def call(tag: str) -> str:
                return (await sup.chat(msgs(tag))).text
            yield Client("ours", call)
    else:
        _, mode, retries = system.split(":")
        n_retries = None if retries == "default" else int(retries)
        ml, settings, model = litellm_router_settings(providers, mode=mode, num_retries=n_retries,
                                                      timeout_s=timeout_s, extra=litellm_extra)
        router = litellm_router(ml, settings)

        async def lcall(tag: str) -> str:
            resp = await router.acompletion(model=model, messages=msgs(tag))
            return str(resp.choices[0].message.content)
        yield Client(system, lcall)


def systems_list() -> list[str]:
    """Ours, then the LiteLLM variants (quick: the fallbacks list with default retries, and order with 0)."""
    variants = LITELLM_VARIANTS if not Q.quick else [("fallbacks", None), ("order", 0)]
    return ["ours"] + [f"litellm:{m}:{'default' if r is None else r}" for m, r in variants]


def variant_notes() -> dict[str, str]:
    return {s: describe_litellm(s.split(":")[1], None if s.endswith("default") else 0) for s in systems_list()[1:]}


async def failover_run(system: str, fault: str) -> dict[str, Any]:
    async with FakeUpstream("primary", default=ok("from primary")) as primary, \
            FakeUpstream("backup", default=ok("from backup")) as backup:
        with tempfile.TemporaryDirectory() as tmp:
            await _apply_fault(primary, fault)
            provs = [("primary", primary.base_url), ("backup", backup.base_url)]
            async with make_client(system, provs, tmp, timeout_s=1.0) as client:
                async def one(i: int) -> tuple[bool, str, float]:
                    t = time.perf_counter()
                    okk, who = await client.call(f"req-{i}")
                    return okk, who, (time.perf_counter() - t) * 1e3
                res, secs = await pool(one, Q.fo_n, Q.fo_conc, Q.fo_cap_s)
            tags = {tag_of(r.body) for r in primary.requests}
            user_hits = len({t for t in tags if t and t.startswith("req-")})
            okt = [r[2] for r in res if r[0]]
            return {"sent": len(res), "answered": len(okt), "failed": len(res) - len(okt),
                    "p50_ms": pct(okt, 50), "p99_ms": pct(okt, 99), "seconds": secs,
                    "user_requests_reaching_primary": None if fault == "refused" else user_hits,
                    "primary_share_pct": None if fault == "refused" else 100 * user_hits / max(1, len(res)),
                    "primary_completions_total": None if fault == "refused" else primary.completions,
                    "served_by": {w: sum(1 for r in res if r[1] == w) for w in {r[1] for r in res}}}


async def scenario_failover() -> None:
    say(f"\n== failover, library, primary + backup, timeouts 1 s both sides; {Q.fo_n} requests at "
        f"concurrency {Q.fo_conc} (at most {Q.fo_cap_s:g} s of starts per run)")
    out: dict[str, Any] = {}
    for fault in FAULTS:
        out[fault] = {}
        for system in rotate(systems_list(), FAULTS.index(fault)):
            out[fault][system] = r = await failover_run(system, fault)
            say(f"  {fault:<8} {system:<26} answered {r['answered']}/{r['sent']} in {r['seconds']:.1f} s  p50 {fmt(r['p50_ms'])} ms  "
                f"p99 {fmt(r['p99_ms'])} ms  user requests reaching primary "
                f"{fmt(r['user_requests_reaching_primary'])}  (primary saw {fmt(r['primary_completions_total'])})")
        runs = out[fault]
        for key, label, unit, ratio_ok in (
                ("p50_ms", "time to an answer, p50", " ms", True), ("p99_ms", "time to an answer, p99", " ms", True),
                ("primary_share_pct", "user requests that reached the primary, % of sent", " %", False),
                ("failed", "failed requests", "", False)):
            value, name = best_of(runs, key)
            row(f"failover: primary {fault}", f"{label} [best LiteLLM: {name}]", runs["ours"][key], value, unit,
                show_ratio=ratio_ok)
    RESULTS["failover"] = {"runs": out, "requests": Q.fo_n, "concurrency": Q.fo_conc, "timeout_s": 1.0,
                           "retry_after_s": RETRY_AFTER_S, "litellm_variants": variant_notes(),
                           "ours": "defaults (config.toml policy), priorities 1/2, timeout_s=1"}


# ---------------------------------------------------------------- 7. failback

COOLDOWN_S = 2.0


async def failback_run(system: str) -> dict[str, Any]:
    routing = {"cooldown_growth": 1.0, "cooldown_s": dict.fromkeys(
        ("connection_error", "rate_limit", "server_error", "timeout", "service_unavailable", "bad_response"),
        COOLDOWN_S)}
    extra = {"cooldown_time": COOLDOWN_S, "allowed_fails": 0}
    async with FakeUpstream("primary", default=error(503)) as primary, \
            FakeUpstream("backup", default=ok("from backup")) as backup:
        primary.set_health(error(503))
        with tempfile.TemporaryDirectory() as tmp:
            provs = [("primary", primary.base_url), ("backup", backup.base_url)]
            async with make_client(system, provs, tmp, timeout_s=1.0, routing=routing,
                                   litellm_extra=extra) as client:
                start = time.perf_counter()
                heal_at = start + Q.fb_broken_s
                stop_at = heal_at + Q.fb_cap_s
                healed = False
                log: list[dict[str, Any]] = []
                i = 0
                back_at = None
                while time.perf_counter() < stop_at and i < 100_000:
                    now = time.perf_counter()
                    if not healed and now >= heal_at:
                        primary.set_default(ok("from primary"))
                        primary.set_health(None)
                        healed = True
                    seen = primary.completions
                    okk, who = await client.call(f"req-{i}")
                    hit = any(tag_of(r.body) == f"req-{i}" for r in primary.requests[seen:])
                    log.append({"t": now - start, "ok": okk, "by": who, "hit_primary": hit, "broken": not healed})
                    if healed and okk and who == "primary":
                        back_at = now
                        break
                    i += 1
                    await anyio.sleep(Q.fb_gap_s)
            hits = [e for e in log if e["broken"] and e["hit_primary"]]
            first = hits[0]["t"] if hits else None
            probes = [e for e in hits if first is not None and e["t"] >= first + COOLDOWN_S]
            return {"failback_s": None if back_at is None else back_at - heal_at,
                    "user_requests_hitting_broken_primary": len(hits),
                    "user_requests_used_as_probes": len(probes),
                    "failed": sum(1 for e in log if not e["ok"]), "requests": len(log),
                    "primary_completions_total": primary.completions,
                    "health_requests_to_primary": primary.health_requests}


async def scenario_failback() -> None:
    say(f"\n== failback, library: primary 503 for {Q.fb_broken_s:g} s then healed; one request every "
        f"{Q.fb_gap_s * 1000:g} ms; cooldown {COOLDOWN_S:g} s both sides; {Q.fb_rounds} round(s), medians")
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in systems_list()}
    for i in range(Q.fb_rounds):
        for system in rotate(systems_list(), i):
            rounds[system].append(r := await failback_run(system))
            say(f"  {system:<26} back on primary after {fmt(r['failback_s'])} s; user requests on the broken "
                f"primary {r['user_requests_hitting_broken_primary']} (as probes after a cooldown: "
                f"{r['user_requests_used_as_probes']}); failed {r['failed']}/{r['requests']}")
    out: dict[str, Any] = {}
    for system, rs in rounds.items():
        back = [r["failback_s"] for r in rs if r["failback_s"] is not None]
        out[system] = {"failback_s": med(back) if len(back) == len(rs) else None,
                       "user_requests_used_as_probes": med([r["user_requests_used_as_probes"] for r in rs]),
                       "user_requests_hitting_broken_primary": med([r["user_requests_hitting_broken_primary"]
                                                                    for r in rs]),
                       "failed": sum(r["failed"] for r in rs), "rounds": rs}
    value, name = best_of(out, "failback_s")
    row("failback", f"seconds until traffic is back on primary [best LiteLLM: {name}]", out["ours"]["failback_s"],
        value, " s")
    value, name = best_of(out, "user_requests_used_as_probes")
    row("failback", f"user requests used as probes [best LiteLLM: {name}]",
        out["ours"]["user_requests_used_as_probes"], value, show_ratio=False)
    RESULTS["failback"] = {"runs": out, "broken_s": Q.fb_broken_s, "gap_s": Q.fb_gap_s,
                           "ours": f"all cooldown_s = {COOLDOWN_S:g}, cooldown_growth = 1.0, probe_tier api",
                           "litellm": f"cooldown_time={COOLDOWN_S:g}, allowed_fails=0"}


# ---------------------------------------------------------------- 8. chaos

CHAOS_CONCURRENCY = 64
CHAOS_FAULTS = [lambda: error(503), lambda: error(500), lambda: error(429, retry_after=1), reset, hang]


async def chaos_run(system: str, seed: int, routing: dict[str, Any] | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    names = ["p1", "p2", "p3"]
    async with contextlib.AsyncExitStack() as stack:
        fakes = [await stack.enter_async_context(FakeUpstream(n, default=ok(f"from {n}"))) for n in names]
        for f in fakes:
            f.script(*[ok(f"from {f.name}") if rng.random() >= 0.3 else rng.choice(CHAOS_FAULTS)()
                       for _ in range(Q.chaos_n * 4)])
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        client = await stack.enter_async_context(make_client(
            system, [(f.name, f.base_url) for f in fakes], tmp, timeout_s=1.0, routing=routing))

        hard = time.perf_counter() + Q.chaos_cap_s + Q.chaos_grace_s

        async def one(i: int) -> tuple[int, bool, str, float]:
            t = time.perf_counter()
            with anyio.move_on_after(max(0.0, hard - t)):
                okk, who = await client.call(f"req-{i}")
                return i, okk, who, (time.perf_counter() - t) * 1e3
            return i, False, "unfinished", float("nan")
        res, secs = await pool(one, Q.chaos_n, CHAOS_CONCURRENCY, Q.chaos_cap_s)
        reached = [{tag_of(r.body) for r in f.requests} for f in fakes]
        failed = [i for i, okk, who, _ in res if not okk and who != "unfinished"]
        unfinished = sum(1 for r in res if r[2] == "unfinished")
        untried = [i for i in failed if not all(f"req-{i}" in s for s in reached)]
        answered = [r[3] for r in res if r[1]]
        return {"sent": len(res), "answered": len(answered), "failed": len(failed), "unfinished": unfinished,
                "failed_with_a_provider_untried": len(untried), "seconds": secs,
                "answered_per_s": len(answered) / secs, "p50_ms": pct(answered, 50), "p99_ms": pct(answered, 99),
                "failed_pct": 100 * (len(failed) + unfinished) / max(1, len(res)),
                "attempts": sum(f.completions for f in fakes)}


async def scenario_chaos() -> None:
    say(f"\n== chaos, library: 3 providers each failing 30% (503/500/429 Retry-After 1/reset/hang), "
        f"up to {Q.chaos_n:,} requests at concurrency {CHAOS_CONCURRENCY}, timeouts 1 s, "
        f"at most {Q.chaos_cap_s:g} s of starts + {Q.chaos_grace_s:g} s to finish")
    short = {"cooldown_s": dict.fromkeys(("connection_error", "rate_limit", "server_error", "timeout",
                                          "service_unavailable", "bad_response"), 5.0)}
    variants = [("ours", None, "ours"), ("ours", short, "ours (all cooldowns 5 s)"),
                ("litellm:fallbacks:default", None, "litellm:fallbacks:default"),
                ("litellm:order:default", None, "litellm:order:default")]
    out: dict[str, Any] = {}
    for system, routing, label in rotate(variants, 1):
        out[label] = r = await chaos_run(system, 1000, routing)
        say(f"  {label:<26} answered {r['answered']:,}/{r['sent']:,} ({r['answered_per_s']:.0f}/s, p50 "
            f"{fmt(r['p50_ms'])} ms, p99 {fmt(r['p99_ms'])} ms), failed {r['failed']:,} (of them with a provider "
            f"never tried: {r['failed_with_a_provider_untried']:,}), unfinished {r['unfinished']} "
            f"in {r['seconds']:.1f} s")
    for ours_label in ("ours", "ours (all cooldowns 5 s)"):
        tag = "" if ours_label == "ours" else ", ours with all cooldowns 5 s"
        for key, label, unit, higher, ratio_ok in (
                ("answered_per_s", "answered/s", "", True, True),
                ("failed_pct", "failed or unfinished, % of sent", " %", False, False),
                ("failed_with_a_provider_untried", "failed although a provider was never tried", "", False, False),
                ("p99_ms", "time to an answer, p99", " ms", False, True)):
            value, name = best_of(out, key, higher=higher)
            row("chaos (3 x 30% faults)", f"{label}{tag} [best LiteLLM: {name}]", out[ours_label][key], value,
                unit, show_ratio=ratio_ok)
    RESULTS["chaos"] = {"runs": out, "requests": Q.chaos_n, "same fault sequence (seed 1000) for every system": True,
                        "fault_mix": "70% ok; 30% one of 503, 500, 429 Retry-After 1, connection reset, hang"}


# ---------------------------------------------------------------- main

SCENARIOS = {
    "library_latency": scenario_library_latency,
    "library_stream": scenario_library_stream,
    "services": scenario_services,
    "failover": scenario_failover,
    "failback": scenario_failback,
    "chaos": scenario_chaos,
}


def sizes(quick: bool) -> argparse.Namespace:
    if quick:
        return argparse.Namespace(quick=True, rounds=3, cap_s=20.0, lat_seq=100, lat_conc=320, svc_seq=50,
                                  svc_c16=200, svc_c64=200, stream_n=20, rss_targets=[1_000, 2_000, 3_000],
                                  rss_cap_s=25.0, fo_n=40, fo_conc=4, fo_cap_s=3.0, fb_broken_s=4.0,
                                  fb_cap_s=6.0, fb_rounds=1, fb_gap_s=0.05, chaos_n=400, chaos_cap_s=6.0, chaos_grace_s=4.0)
    return argparse.Namespace(quick=False, rounds=5, cap_s=60.0, lat_seq=400, lat_conc=1600, svc_seq=300,
                              svc_c16=800, svc_c64=1000, stream_n=100, rss_targets=[10_000, 50_000, 100_000],
                              rss_cap_s=240.0, fo_n=200, fo_conc=8, fo_cap_s=8.0, fb_broken_s=6.0,
                              fb_cap_s=15.0, fb_rounds=3, fb_gap_s=0.05, chaos_n=10_000, chaos_cap_s=75.0,
                              chaos_grace_s=10.0)


def print_table() -> str:
    head = ("scenario", "measure", "ours", "litellm", "ours/litellm")
    widths = [max(len(r[i]) for r in [head, *ROWS]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in ROWS]
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    litellm = litellm_module()
    RESULTS["meta"] = {"quick": args.quick, "python": platform.python_version(), "cpus": os.cpu_count(),
                       "litellm_version": getattr(litellm, "__version__", None) or _dist_version("litellm"),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sizes": vars(Q)}
    start = time.perf_counter()
    for name, fn in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        await fn()
        RESULTS.setdefault("scenario_seconds", {})[name] = round(time.perf_counter() - t, 1)
    RESULTS["meta"]["scenarios_s"] = round(time.perf_counter() - start, 1)
    RESULTS["meta"]["wall_s"] = round(time.perf_counter() - T0, 1)
    RESULTS["table"] = [dict(zip(("scenario", "measure", "ours", "litellm", "ratio"), r, strict=True)) for r in ROWS]
    say(f"\n== summary ({'quick' if args.quick else 'full'} run, {RESULTS['meta']['wall_s']:.0f} s, "
        f"litellm {RESULTS['meta']['litellm_version']}; latency/time: lower is better, requests/s: higher)")
    say(print_table())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=1, default=str))
    say(f"raw figures: {out}")


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description="us vs LiteLLM on the same fake providers")
    parser.add_argument("--quick", action="store_true", help="small counts; under 3 minutes")
    parser.add_argument("--out", help="JSON file for the raw figures (default bench/results/latest[-quick].json)")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args()
    args.out = args.out or str(HERE / "results" / ("latest-quick.json" if args.quick else "latest.json"))
    vars(Q).update(vars(sizes(args.quick)))
    anyio.run(amain, args, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
