"""What OpenTelemetry ([telemetry] otel = true) costs the request path. Prints numbers; asserts nothing.

    python bench/bench_otel.py [--requests 3000]

Needs the ``[otel]`` extra. Two Supervisors over the same 0-latency FakeUpstream, one with
``otel = false`` and one with ``otel = true`` (the SDK's TracerProvider with a BatchSpanProcessor
into an exporter that drops everything, and a MeterProvider with an in-memory reader: our cost and
the SDK's, not an exporter's I/O). Rounds alternate between them to cancel drift; the table shows
``Supervisor.chat()`` latency p50/p99 for each side by side, and the same for a request that falls
over once (a 503 then an answer: three spans). Last, per request and best of 5: the sink alone on
the request path (what a message costs there; the spans are made on the loop's next turn), and the
sink with the spans and histogram points made at once (the SDK's share). Every loop is bounded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from actors import Supervisor, parse_config
from actors.core.config import Config
from actors.core.messages import AttemptFailed, AttemptSucceeded, FallbackTriggered
from actors.runtime.telemetry import Telemetry
from actors.testing import FakeUpstream, error

HI = [{"role": "user", "content": "hi"}]


class Drop(SpanExporter):
    """Takes every batch and keeps nothing (the exporter's own I/O is not what is measured)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def config(state: str, otel: bool, *fakes: FakeUpstream) -> Config:
    return parse_config({
        "state": {"path": state},
        "telemetry": {"otel": otel},
        "routing": {"second_pass_backoff_s": 0},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
        "providers": [{"name": f.name, "base_url": f.base_url, "models": {"chat": "m"}, "priority": i + 1}
                      for i, f in enumerate(fakes)],
    }, env={})


async def latencies(sup: Supervisor, n: int, before: Any = None) -> list[float]:
    out = []
    for _ in range(n):
        if before is not None:
            before()
        t = time.perf_counter()
        await sup.chat(HI)
        out.append((time.perf_counter() - t) * 1e6)
    return out


async def side_by_side(n: int, tmp: str, fall_over: bool) -> tuple[list[float], list[float]]:
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        fakes = (a, b)
        off_cfg, on_cfg = config(f"{tmp}/off-{fall_over}.db", False, *fakes), \
            config(f"{tmp}/on-{fall_over}.db", True, *fakes)
        async with Supervisor(off_cfg) as off, Supervisor(on_cfg) as on:
            script = (lambda: a.script(error(503))) if fall_over else None
            await latencies(off, 100, script)
            await latencies(on, 100, script)
            offs, ons = [], []
            for _ in range(6):
                offs += await latencies(off, n // 6, script)
                ons += await latencies(on, n // 6, script)
                if fall_over:  # the 503s put a in cooldown: bring it back for the next round
                    await off.enable("a")
                    await on.enable("a")
    return offs, ons


def sink_cost(n: int, tmp: str) -> tuple[float, float]:
    """µs per request for the sink alone: one success; a 503, a fallback and a success."""
    cfg = parse_config({"state": {"path": f"{tmp}/x.db"}, "providers": [
        {"name": "a", "base_url": "http://127.0.0.1:9", "models": {"chat": "m"}},
        {"name": "b", "base_url": "http://127.0.0.1:9", "models": {"chat": "m"}}]}, env={})
    tele = Telemetry(cfg)
    now = time.time()
    for i in range(500):  # warm up
        tele.record(AttemptSucceeded(at=now, provider="a", model="chat", request_id=f"w{i}", latency_ms=1.0))
    ok = [AttemptSucceeded(at=now, provider="a", model="chat", request_id=f"r{i}", latency_ms=1.0)
          for i in range(n)]
    t = time.perf_counter()
    for m in ok:
        tele.record(m)
    one = (time.perf_counter() - t) / n * 1e6
    over: list[Any] = []
    for i in range(n):
        rid = f"f{i}"
        over += [AttemptFailed(at=now, provider="a", model="chat", request_id=rid, kind="http", status=503,
                               latency_ms=1.0),
                 FallbackTriggered(at=now, request_id=rid, from_provider="a", to_provider="b",
                                   category="service_unavailable"),
                 AttemptSucceeded(at=now, provider="b", model="chat", request_id=rid, latency_ms=1.0)]
    t = time.perf_counter()
    for m in over:
        tele.record(m)
    return one, (time.perf_counter() - t) / n * 1e6


def row(label: str, offs: list[float], ons: list[float]) -> None:
    p50off, p50on, p99off, p99on = pct(offs, 50), pct(ons, 50), pct(offs, 99), pct(ons, 99)
    print(f"{label:<28} {p50off:9.0f} {p50on:9.0f} {p50on - p50off:+8.0f}   "
          f"{p99off:9.0f} {p99on:9.0f} {p99on - p99off:+8.0f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    spans = TracerProvider()
    spans.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=65536))
    trace.set_tracer_provider(spans)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    await anyio.sleep(0)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"Supervisor.chat() latency, µs ({args.requests} requests a side, alternating rounds)")
        print(f"{'':<28} {'p50 off':>9} {'p50 on':>9} {'added':>8}   {'p99 off':>9} {'p99 on':>9} {'added':>8}")
        row("answered at once", *await side_by_side(args.requests, tmp, False))
        row("503, then the fallback", *await side_by_side(args.requests // 3, tmp, True))
        runs = []
        for _ in range(5):  # on the loop the spans are made on its next turn; best of 5 (a shared machine)
            runs.append(sink_cost(args.requests, tmp))
            await anyio.sleep(0.05)  # let the deferred spans go out between runs
        one, over = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"on the request path (the sink): {one:.1f} µs a request answered at once, "
              f"{over:.1f} µs one that fell over")


def spans_cost(n: int) -> None:
    """Off the loop the sink makes the spans at once: its cost plus the SDK's."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = [sink_cost(n, tmp) for _ in range(5)]
    one, over = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"sink + spans + histograms (SDK): {one:.1f} µs a request answered at once (2 spans), "
          f"{over:.1f} µs one that fell over (3 spans)")


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
    spans_cost(3000)
    trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]
