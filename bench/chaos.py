"""Chaos and failback, us against LiteLLM's proxy, side by side in one run. Prints numbers; asserts nothing.

    python bench/chaos.py [--requests 2800] [--concurrency 32] [--outage-s 60] [--only chaos|failback]
                          [--litellm-mode fallbacks|order] [--out FILE.json]

Needs the bench extra. Both systems run as services (``run.py serve``, ``litellm --config``, started
as bench/compare_systems.py does) before FakeUpstreams on 127.0.0.1 that all answer the same 60-word
text, so a whole answer is checkable whoever produced which part. bench/README.md says what each
scenario does and measures. Every loop is bounded in count and in time: chaos requests stop starting
after `--chaos-cap-s`, each request gives up after 90 s, failback stops `--wait-s` after the heal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import anyio
from compare_systems import (
    Service,
    litellm_router_settings,
    msgs,
    pool,
    start_litellm_proxy,
    start_ours,
    tag_of,
)

from actors.testing import FakeUpstream, Fault, cut_stream, error, garbage, ok, reset, stall_stream

TEXT = " ".join(f"w{i:02d}" for i in range(60))  # the one answer every fake gives: 60 words
CHUNKS = 12
TIMEOUT_S = 5.0  # per attempt, both sides: no answer, no first token, or a stream silent this long
CLIENT_TIMEOUT_S = 90.0
SERVED_BY = ("x-fallback-provider", "x-litellm-model-api-base")  # who answered, as each system says
FAKE_NAMES: dict[str, str] = {}  # base_url -> name of each fake now running, to read LiteLLM's header
SYSTEMS = ("ours", "litellm")
LITELLM_POLICY = {"num_retries": 2, "allowed_fails": 3, "cooldown_time": 30}  # the proxy docs' example
FAULTS: dict[str, Any] = {
    "500": lambda r: error(500), "502": lambda r: error(502), "503": lambda r: error(503),
    "429": lambda r: error(429, retry_after=r.choice((1, 2))),
    "reset": lambda r: reset(),
    "stream cut": lambda r: cut_stream(r.randint(1, CHUNKS - 1), text=TEXT, chunks=CHUNKS),
    "stream stall": lambda r: stall_stream(r.randint(1, CHUNKS - 1), text=TEXT, chunks=CHUNKS),
    "garbage": lambda r: garbage(r.choice(("html", "invalid_json", "truncated"))),
}
say = partial(print, flush=True)


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else None


def fmt(v: Any, unit: str = "") -> str:
    if v is None or isinstance(v, str):
        return v or "-"
    return (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if isinstance(v, float) else str(v)) + unit


# ---------------------------------------------------------------- the two systems


def start(system: str, tmp: str, providers: list[tuple[str, str]], mode: str) -> tuple[Service, str]:
    """Our service or LiteLLM's proxy in front of `providers` (priority order), and the model to ask for."""
    if system == "ours":  # defaults, but the same per-attempt timeouts as LiteLLM's
        svc = start_ours(tmp, providers, timeout_s=TIMEOUT_S, routing={"stream_idle_timeout_s": TIMEOUT_S},
                         provider_extra={"first_token_timeout_s": TIMEOUT_S})
        return svc, "chat"
    extra = {k: v for k, v in LITELLM_POLICY.items() if k != "num_retries"} | {"stream_timeout": TIMEOUT_S}
    ml, settings, model = litellm_router_settings(providers, mode=mode, num_retries=LITELLM_POLICY["num_retries"],
                                                  timeout_s=TIMEOUT_S, extra=extra)
    for deployment in ml:
        deployment["litellm_params"]["stream_timeout"] = TIMEOUT_S
    return start_litellm_proxy(tmp, ml, settings), model


def describe(mode: str) -> dict[str, str]:
    how = ("fallbacks=[{p1: [p2, p3]}], one model group per provider" if mode == "fallbacks"
           else "one model group, deployments with litellm_params.order 1, 2, 3")
    policy = ", ".join(f"{k}={v}" for k, v in LITELLM_POLICY.items())
    return {"ours": f"config defaults; timeout_s = first_token_timeout_s = stream_idle_timeout_s = {TIMEOUT_S:g}",
            "litellm": f"{how}; {policy}; timeout = stream_timeout = {TIMEOUT_S:g}"}


def log_summary(svc: Service) -> dict[str, Any]:
    text = Path(svc.tmp, "service.log").read_text(errors="replace")
    return {"lines": text.count("\n"), "tracebacks": text.count("Traceback"), "tail": text[-1200:]}


# ---------------------------------------------------------------- one request, judged whole or not


async def ask(session: aiohttp.ClientSession, svc: Service, model: str, tag: str, stream: bool) -> dict[str, Any]:
    """One completion; `failure` is None when the whole text arrived, else what went wrong."""
    body: dict[str, Any] = {"model": model, "messages": msgs(tag)} | ({"stream": True} if stream else {})
    t = time.perf_counter()
    served, failure, text = None, None, ""
    try:
        async with session.post(svc.completions, json=body, headers=svc.headers) as resp:
            served = next((resp.headers[h] for h in SERVED_BY if h in resp.headers), None)
            served = FAKE_NAMES.get(served or "", served)
            if resp.status != 200:
                raw = await resp.read()
                failure, text = f"HTTP {resp.status}{_error_code(raw)}", raw[:600].decode(errors="replace")
            elif stream:
                failure, text = await _judge_stream(resp)
            else:
                failure, text = _judge_json(await resp.read())
    except TimeoutError:
        failure = f"no answer in {CLIENT_TIMEOUT_S:g} s (client gave up)"
    except aiohttp.ClientPayloadError:
        failure = "connection broken mid-answer"
    except (aiohttp.ClientError, OSError) as exc:
        failure = f"connection error ({type(exc).__name__})"
    return {"tag": tag, "stream": stream, "ms": (time.perf_counter() - t) * 1e3, "by": served,
            "failure": failure, "t_end": time.perf_counter(), "text": text[:600] if failure else ""}


def _error_code(raw: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        err = json.loads(raw)["error"]
        code = err.get("code") or err.get("type")
        return f" {str(code)[:40]}" if code else ""
    return ""


def _judge_json(raw: bytes) -> tuple[str | None, str]:
    try:
        text = str(json.loads(raw)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return "200 with a body that is not a completion", raw[:600].decode(errors="replace")
    return None if text == TEXT else "200 with the wrong text", text


async def _judge_stream(resp: aiohttp.ClientResponse) -> tuple[str | None, str]:
    parts: list[str] = []
    finished = errored = False
    async for line in resp.content:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        event = None
        with contextlib.suppress(ValueError):
            event = json.loads(line[6:])
        if not isinstance(event, dict):
            continue
        if "error" in event:
            errored = True
            parts.append(f" [error: {str(event['error'])[:400]}]")
        for choice in event.get("choices") or []:
            parts.append((choice.get("delta") or {}).get("content") or "")
            finished |= bool(choice.get("finish_reason"))
    text = "".join(parts)
    if errored:
        whole = text.split(" [error: ")[0] == TEXT
        return "stream: error event" + (" (text was whole)" if whole else ""), text
    if not finished:
        return "stream: ended without a finish_reason", text
    return None if text == TEXT else f"stream: finished with {'no' if not text else 'the wrong'} text", text


def samples(results: list[dict[str, Any]], per_kind: int = 3) -> dict[str, list[str]]:
    """A few texts each kind of failure got, to see what a wrong answer looked like."""
    out: dict[str, list[str]] = {}
    for r in results:
        if r["failure"] and len(got := out.setdefault(r["failure"], [])) < per_kind:
            got.append(f"{r['tag']} by {r['by']}: {r['text']!r}")
    return out


async def fakes_named(stack: contextlib.AsyncExitStack, *names: str) -> list[FakeUpstream]:
    fakes = [await stack.enter_async_context(FakeUpstream(n, default=ok(TEXT, chunks=CHUNKS))) for n in names]
    FAKE_NAMES.update((f.base_url, f.name) for f in fakes)
    return fakes


async def warm_up(svc: Service, session: aiohttp.ClientSession, model: str) -> None:
    """Ready, then a few requests unmeasured: LiteLLM's first ones take seconds."""
    await svc.wait_ready(session)
    for i in range(4):
        await ask(session, svc, model, f"warm-{i}", stream=i % 2 == 1)


def client(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(16, 2 * concurrency)),
                                 timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S))


# ---------------------------------------------------------------- 1. chaos


def chaos_script(rng: random.Random, n: int, rate: float) -> list[tuple[str, Fault]]:
    kinds = list(FAULTS)
    out = []
    for _ in range(n):
        kind = rng.choice(kinds) if rng.random() < rate else "ok"
        out.append((kind, ok(TEXT, chunks=CHUNKS) if kind == "ok" else FAULTS[kind](rng)))
    return out


async def chaos_run(system: str, args: argparse.Namespace) -> dict[str, Any]:
    n_script = 4 * args.requests + 500  # LiteLLM retries a provider up to 3 times per request
    async with contextlib.AsyncExitStack() as stack:
        fakes = await fakes_named(stack, "p1", "p2", "p3")
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        svc, model = start(system, tmp, [(f.name, f.base_url) for f in fakes], args.litellm_mode)
        stack.callback(svc.stop)
        session = await stack.enter_async_context(client(args.concurrency))
        await warm_up(svc, session, model)
        scripts, before = [], [f.completions for f in fakes]
        for k, fake in enumerate(fakes):  # the faults start after the warm-up
            scripts.append(chaos_script(random.Random(args.seed * 100 + k), n_script, args.fault_rate))
            fake.script(*(f for _, f in scripts[-1]))
        res, secs = await pool(lambda i: ask(session, svc, model, f"c{i}", stream=i % 2 == 1),
                               args.requests, args.concurrency, args.chaos_cap_s)
        attempts = {f.name: f.completions - b for f, b in zip(fakes, before, strict=True)}
        served = [Counter(kind for kind, _ in script[:attempts[f.name]]) for f, script in zip(fakes, scripts, strict=True)]
        exhausted = [name for name, n in attempts.items() if n > n_script]
        svc.stop()
        log = log_summary(svc)
    whole = [r for r in res if r["failure"] is None]
    share = {s: 100 * sum(1 for r in whole if r["stream"] == s) / max(1, sum(1 for r in res if r["stream"] == s))
             for s in (False, True)}
    faults_met = sum((c for c in served), Counter())
    return {
        "sent": len(res), "not_started_in_time": args.requests - len(res), "seconds": secs,
        "whole_pct": 100 * len(whole) / max(1, len(res)), "whole_pct_json": share[False],
        "whole_pct_stream": share[True],
        "p50_ms": pct([r["ms"] for r in res], 50), "p99_ms": pct([r["ms"] for r in res], 99),
        "whole_p50_ms": pct([r["ms"] for r in whole], 50), "whole_p99_ms": pct([r["ms"] for r in whole], 99),
        "failures": dict(Counter(r["failure"] for r in res if r["failure"]).most_common()),
        "failure_samples": samples(res),
        "upstream_attempts": attempts, "upstream_attempts_per_request": sum(attempts.values()) / max(1, len(res)),
        "upstream_faults_served": {k: v for k, v in faults_met.most_common() if k != "ok"},
        "upstream_fault_pct": 100 * (1 - faults_met["ok"] / max(1, faults_met.total())),
        "script_exhausted": exhausted, "service_log": log,
    }


# ---------------------------------------------------------------- 2. failback


async def failback_run(system: str, svc: Service, model: str, primary: FakeUpstream, secondary: FakeUpstream,
                       session: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    warm_s, gap = 5.0, 1 / args.rate
    t0 = time.perf_counter()
    heal_t: float | None = None
    marks: dict[str, int] = {}  # index into primary.requests at the outage and at the heal
    back_s: float | None = None
    arrivals: list[tuple[float, str]] = []  # (seconds since start, provider) per user request, as the fakes saw them
    results: list[dict[str, Any]] = []
    seen = {primary.name: 0, secondary.name: 0}
    stop = anyio.Event()

    async def one(i: int) -> None:
        r = await ask(session, svc, model, f"fb-{i}", stream=False)
        r["t_start"] = r["t_end"] - r["ms"] / 1e3 - t0
        r["t_end"] -= t0
        results.append(r)

    async def trickle(tg: anyio.abc.TaskGroup) -> None:
        limit = math.ceil(args.rate * (warm_s + args.outage_s + args.wait_s)) + 1
        for i in range(limit):
            if stop.is_set():
                return
            tg.start_soon(one, i)
            with anyio.move_on_after(max(0.0, t0 + (i + 1) * gap - time.perf_counter())):
                await stop.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(trickle, tg)
        deadline = t0 + warm_s + args.outage_s + args.wait_s
        while (now := time.perf_counter()) < deadline:  # bounded in time; a tick every 50 ms
            t = now - t0
            if "outage" not in marks and t >= warm_s:
                primary.set_default(error(503))
                primary.set_health(error(503))
                marks["outage"] = len(primary.requests)
            elif "heal" not in marks and t >= warm_s + args.outage_s:
                primary.set_default(ok(TEXT, chunks=CHUNKS))
                primary.set_health(None)
                marks["heal"], heal_t = len(primary.requests), t
            for fake in (primary, secondary):
                for idx in range(seen[fake.name], len(fake.requests)):
                    if str(tag_of(fake.requests[idx].body)).startswith("fb-"):
                        arrivals.append((t, fake.name))
                        if fake is primary and heal_t is not None and back_s is None and idx >= marks["heal"]:
                            back_s = t - heal_t
                seen[fake.name] = len(fake.requests)
            if back_s is not None and heal_t is not None and t >= heal_t + back_s + 3:
                break  # 3 s more to see that it stays back
            await anyio.sleep(0.05)
        stop.set()
    assert heal_t is not None
    out_tags = [tag_of(r.body) for r in primary.requests[marks["outage"]:marks["heal"]]]
    after = sorted((r for r in results if r["t_end"] >= heal_t and r["by"] == primary.name), key=lambda r: r["t_end"])
    during = [r for r in results if warm_s <= r["t_start"] < heal_t]
    return {
        "back_on_primary_s": back_s, "back_shown": f"not back within {args.wait_s:g} s" if back_s is None else back_s,
        "back_by_header_s": after[0]["t_end"] - heal_t if after else None,
        "user_requests_meeting_broken_primary": len({t for t in out_tags if str(t).startswith("fb-")}),
        "user_attempts_on_broken_primary": sum(1 for t in out_tags if str(t).startswith("fb-")),
        "non_user_requests_to_primary_in_outage": sum(1 for t in out_tags if not str(t).startswith("fb-")),
        "requests": len(results), "failed": sum(1 for r in results if r["failure"]),
        "failures": dict(Counter(r["failure"] for r in results if r["failure"])),
        "outage_p50_ms": pct([r["ms"] for r in during], 50), "outage_p99_ms": pct([r["ms"] for r in during], 99),
        "arrivals_per_s": _per_second(arrivals), "heal_at_s": heal_t, "service_log": log_summary(svc),
    }


def _per_second(arrivals: list[tuple[float, str]]) -> dict[str, list[int]]:
    """User requests each fake received in each second since the start: the counts over time."""
    end = int(max((t for t, _ in arrivals), default=0)) + 1
    out: dict[str, list[int]] = {}
    for t, name in arrivals:
        out.setdefault(name, [0] * end)[int(t)] += 1
    return out


async def failback_both(args: argparse.Namespace) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        setups = {}
        session = await stack.enter_async_context(client(32))
        for system in SYSTEMS:
            fakes = await fakes_named(stack, "primary", "secondary")
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            svc, model = start(system, tmp, [(f.name, f.base_url) for f in fakes], args.litellm_mode)
            stack.callback(svc.stop)
            setups[system] = (svc, model, *fakes)
        for svc, model, *_ in setups.values():
            await warm_up(svc, session, model)
        out: dict[str, Any] = {}

        async def run(system: str) -> None:
            out[system] = await failback_run(system, *setups[system], session, args)
        async with anyio.create_task_group() as tg:
            for system in setups:
                tg.start_soon(run, system)
    return out


# ---------------------------------------------------------------- main


CHAOS_ROWS = (("answered in full, % of sent", "whole_pct", " %"), ("... non-streamed", "whole_pct_json", " %"),
              ("... streamed", "whole_pct_stream", " %"), ("latency p50, all requests", "p50_ms", " ms"),
              ("latency p99, all requests", "p99_ms", " ms"), ("latency p99, whole answers", "whole_p99_ms", " ms"),
              ("wall time", "seconds", " s"), ("upstream attempts per request", "upstream_attempts_per_request", ""),
              ("faults among the upstreams' answers, %", "upstream_fault_pct", " %"))
FAILBACK_ROWS = (("seconds from heal to a user request on the primary", "back_shown", " s"),
                 ("... by the response header", "back_by_header_s", " s"),
                 ("user requests that met the broken primary", "user_requests_meeting_broken_primary", ""),
                 ("... attempts they made there", "user_attempts_on_broken_primary", ""),
                 ("other requests to the primary in the outage", "non_user_requests_to_primary_in_outage", ""),
                 ("failed user requests", "failed", ""), ("latency p99 during the outage", "outage_p99_ms", " ms"))


def table(results: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for part, title, spec in (
            ("chaos", f"chaos: {args.requests:,} requests, concurrency {args.concurrency}, half streamed", CHAOS_ROWS),
            ("failback", f"failback: primary 503 for {args.outage_s:g} s, {args.rate:g} requests/s", FAILBACK_ROWS)):
        if part in results:
            rows.append((title, "", ""))
            rows += [(f"  {label}", *(fmt(results[part][s].get(key), unit) for s in SYSTEMS)) for label, key, unit in spec]
    return rows


async def amain(args: argparse.Namespace) -> None:
    results: dict[str, Any] = {"settings": describe(args.litellm_mode), "args": vars(args)}
    if args.only in (None, "chaos"):
        results["chaos"] = {}
        for system in SYSTEMS:
            say(f"chaos: {system} ...")
            results["chaos"][system] = r = await chaos_run(system, args)
            say(f"  {r['whole_pct']:.1f} % whole of {r['sent']:,} in {r['seconds']:.0f} s; failures: {r['failures']}")
    if args.only in (None, "failback"):
        say(f"failback: both systems at once, about {5 + args.outage_s:g} s + up to {args.wait_s:g} s ...")
        results["failback"] = await failback_both(args)
    rows = table(results, args)
    widths = [max(len(r[i]) for r in [("", *SYSTEMS), *rows]) for i in range(3)]
    say()
    for r in [("", *SYSTEMS), *rows]:
        say("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for part in ("chaos", "failback"):
        for system in results.get(part, {}):
            r = results[part][system]
            say(f"{part}, {system}: failures by kind {r['failures'] or '{}'}; "
                f"service log: {r['service_log']['lines']} lines, {r['service_log']['tracebacks']} tracebacks")
            if part == "chaos" and r["script_exhausted"]:
                say(f"  (fault script ran out on {r['script_exhausted']}: later answers were all ok)")
    say(f"settings: ours: {results['settings']['ours']}\n          litellm: {results['settings']['litellm']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
        say(f"raw figures: {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description="chaos and failback, us against LiteLLM's proxy")
    p.add_argument("--requests", type=int, default=2800)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--fault-rate", type=float, default=0.3, help="share of each provider's answers that fail")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--chaos-cap-s", type=float, default=300, help="stop starting chaos requests after this long")
    p.add_argument("--outage-s", type=float, default=60)
    p.add_argument("--rate", type=float, default=5, help="failback requests per second")
    p.add_argument("--wait-s", type=float, default=120, help="longest wait for failback after the heal")
    p.add_argument("--litellm-mode", choices=("fallbacks", "order"), default="fallbacks")
    p.add_argument("--only", choices=("chaos", "failback"))
    p.add_argument("--out", help="write the raw figures here as JSON")
    args = p.parse_args()
    args.rate = min(max(args.rate, 0.1), 50)  # a trickle, not a load test
    anyio.run(amain, args, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
