"""OpenTelemetry ([telemetry] otel): one GenAI span per request, a child per attempt, two histograms."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from actors.core.config import Config, parse_config
from actors.core.errors import (
    AllProvidersFailedError,
    ConfigError,
    StreamInterruptedError,
    UpstreamRejectedError,
)
from actors.core.messages import AttemptFailed, AttemptSucceeded
from actors.runtime.otel import Instruments
from actors.runtime.request_trace import Finished, provider_system
from actors.runtime.supervisor import Supervisor
from actors.runtime.telemetry import Telemetry
from actors.testing import FakeUpstream, cut_stream, error, ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio


class Otel:
    """An SDK tracer and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def attach(self, sup: Supervisor) -> Telemetry:
        telemetry = Telemetry(sup.config, Instruments.for_config(
            sup.config, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider))
        telemetry.attach(sup.bus)
        return telemetry

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        found: list[HistogramDataPoint] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(p for p in metric.data.data_points if isinstance(p, HistogramDataPoint))
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


def request_span(spans: list[ReadableSpan]) -> ReadableSpan:
    (root,) = [s for s in spans if s.parent is None]
    return root


def children(spans: list[ReadableSpan], root: ReadableSpan) -> list[dict[str, Any]]:
    kids = sorted((s for s in spans if s.parent is not None),
                  key=lambda s: int((s.attributes or {})["fallback.attempt.number"]))  # type: ignore[arg-type]
    assert all(s.parent.span_id == root.context.span_id for s in kids)  # type: ignore[union-attr]
    return [dict(s.attributes or {}) for s in kids]


async def test_a_request_that_fell_over_once_is_one_span_with_two_attempts(tmp_path: Path, otel: Otel) -> None:
    """A 503 then an answer: one `chat chat` span (who answered, which model), two attempt children."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        otel.attach(sup)
        a.script(error(503))
        reply = await sup.chat(HI, model="chat")
        assert reply.provider == "b"
    spans = otel.finished()
    root = request_span(spans)
    assert (root.name, root.kind, len(spans)) == ("chat chat", SpanKind.CLIENT, 3)
    attrs = dict(root.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert (attrs["gen_ai.provider.name"], attrs["gen_ai.request.model"], attrs["gen_ai.response.model"]) == \
        ("b", "chat", "b-model")
    assert "error.type" not in attrs
    first, second = children(spans, root)
    assert (first["gen_ai.provider.name"], first["fallback.attempt.kind"], first["fallback.attempt.outcome"],
            first["fallback.attempt.category"], first["http.response.status_code"]) == \
        ("a", "first", "failure", "service_unavailable", 503)
    assert (second["gen_ai.provider.name"], second["fallback.attempt.kind"],
            second["fallback.attempt.outcome"]) == ("b", "fallback", "success")
    assert "fallback.attempt.category" not in second
    assert root.start_time is not None
    assert root.end_time is not None
    assert root.start_time <= min(s.start_time or 0 for s in spans)
    assert root.end_time >= max(s.end_time or 0 for s in spans)
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point.count == 1
    assert dict(point.attributes or {})["gen_ai.provider.name"] == "b"
    assert otel.points("gen_ai.client.operation.time_to_first_chunk") == []  # not a stream


async def test_a_retry_of_the_same_provider_is_kind_retry(tmp_path: Path, otel: Otel) -> None:
    """A 500 is retried on the same provider once: the second attempt's kind is retry."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        otel.attach(sup)
        a.script(error(500))
        assert (await sup.chat(HI, model="chat")).provider == "a"
    spans = otel.finished()
    kinds = [(c["gen_ai.provider.name"], c["fallback.attempt.kind"]) for c in children(spans, request_span(spans))]
    assert kinds == [("a", "first"), ("a", "retry")]


async def test_a_request_nobody_answered_has_its_error_type(tmp_path: Path, otel: Otel) -> None:
    """Every provider failed: the request span has error.type and an error status."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        otel.attach(sup)
        a.script(error(503))
        b.script(error(503))
        with pytest.raises(AllProvidersFailedError):
            await sup.chat(HI, model="chat")
    spans = otel.finished()
    root = request_span(spans)
    assert dict(root.attributes or {})["error.type"] == "service_unavailable"
    assert "gen_ai.response.model" not in dict(root.attributes or {})
    assert root.status.status_code is StatusCode.ERROR
    assert len(children(spans, root)) == 2
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert dict(point.attributes or {})["error.type"] == "service_unavailable"


async def test_a_callers_400_ends_the_request_span(tmp_path: Path, otel: Otel) -> None:
    """A 400 naming a field goes back to the caller: the span ends at once with invalid_request."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        telemetry = otel.attach(sup)
        a.script(error(400, "max_tokens: must be at most 4096", type="invalid_request_error"))
        with pytest.raises(UpstreamRejectedError):
            await sup.chat(HI, model="chat")
        assert telemetry.in_flight == 0
    root = request_span(otel.finished())
    assert dict(root.attributes or {})["error.type"] == "invalid_request"


async def test_a_streams_time_to_first_chunk_is_recorded(tmp_path: Path, otel: Otel) -> None:
    """A stream: the span carries its time to first chunk, and the TTFC histogram has one point."""
    async with running(tmp_path, "a") as (sup, _, _fakes):
        otel.attach(sup)
        async for _ in sup.stream(HI, model="chat"):
            pass
    root = request_span(otel.finished())
    ttft = dict(root.attributes or {})["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttft, float)
    assert ttft >= 0
    assert root.start_time is not None
    assert root.end_time is not None
    assert ttft <= (root.end_time - root.start_time) / 1e9 + 1e-6
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 1
    assert dict(point.attributes or {})["gen_ai.response.model"] == "a-model"


async def test_a_stream_continued_elsewhere_has_a_continuation_attempt(tmp_path: Path, otel: Otel) -> None:
    """A stream cut mid-answer goes on from the next provider: the second attempt is a continuation."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        otel.attach(sup)
        a.script(cut_stream(after=2, text="one two three four", chunks=4))
        b.script(ok("one two three four", chunks=4))
        async for _ in sup.stream(HI, model="chat"):
            pass
    spans = otel.finished()
    root = request_span(spans)
    kinds = [(c["gen_ai.provider.name"], c["fallback.attempt.kind"]) for c in children(spans, root)]
    assert kinds == [("a", "first"), ("b", "continuation")]
    assert dict(root.attributes or {})["gen_ai.provider.name"] == "b"
    assert len(otel.points("gen_ai.client.operation.time_to_first_chunk")) == 1


# ---------------------------------------------------------------- the switch: [telemetry] otel

_GLOBAL: Otel | None = None


def global_otel() -> Otel:
    """The process-wide providers (OpenTelemetry lets them be set once), emptied for each test."""
    global _GLOBAL
    if _GLOBAL is None:
        _GLOBAL = Otel()
        trace.set_tracer_provider(_GLOBAL.tracer_provider)
        metrics.set_meter_provider(_GLOBAL.meter_provider)
    _GLOBAL.spans.clear()
    return _GLOBAL


def with_otel(config: Config, on: bool) -> Config:
    return msgspec.structs.replace(config, telemetry=msgspec.structs.replace(config.telemetry, otel=on))


@pytest.mark.parametrize("on", [pytest.param(True, id="on"), pytest.param(False, id="off")])
async def test_the_switch_decides_whether_spans_are_made(tmp_path: Path, on: bool) -> None:
    """otel = true sends spans to the global providers; false (the default) creates nothing."""
    from tests.helpers import make_config

    g = global_otel()
    before = sum(p.count for p in g.points("gen_ai.client.operation.duration"))
    async with FakeUpstream("a") as a:
        async with Supervisor(with_otel(make_config(tmp_path, a), on)) as sup:
            await sup.chat(HI, model="chat")
            await settle()
    spans = g.finished()
    assert [s.name for s in spans if s.parent is None] == (["chat chat"] if on else [])
    after = sum(p.count for p in g.points("gen_ai.client.operation.duration"))
    assert after - before == (1 if on else 0)


def test_otel_on_without_the_extra_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """otel = true with OpenTelemetry missing: a ConfigError that names the key and the extra."""
    config = parse_config({"providers": [{"name": "a", "base_url": "http://127.0.0.1:9", "models": {"chat": "m"}}]},
                          env={})
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"telemetry\.otel.*provider-fallback\[otel\]"):
        Telemetry.open(with_otel(config, True))
    assert Telemetry.open(with_otel(config, False)) is None


def test_a_request_no_message_ends_is_closed_once_quiet_past_the_horizon() -> None:
    """A retry that was never answered nor told: the next message past the horizon closes it as _OTHER."""
    config = parse_config({"providers": [{"name": "a", "base_url": "http://127.0.0.1:9", "models": {"chat": "m"}}]},
                          env={})
    done: list[Finished] = []
    telemetry = Telemetry(config, done.append, horizon_s=60)
    telemetry.record(AttemptFailed(at=100.0, provider="a", model="chat", request_id="r1", kind="http", status=500,
                                   latency_ms=10.0))
    assert (telemetry.in_flight, done) == (1, [])
    telemetry.record(AttemptSucceeded(at=200.0, provider="a", model="chat", request_id="r2", latency_ms=5.0))
    assert [(d.request_id, d.error_type) for d in done] == [("r1", "_OTHER"), ("r2", None)]
    assert done[0].end == 100.0
    assert telemetry.in_flight == 0


async def test_no_secret_or_upstream_text_goes_into_a_span(tmp_path: Path, otel: Otel) -> None:
    """The provider's key and the upstream's error text appear in no span attribute."""
    key = "sk-telemetry-secret-123"
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        config = parse_config({
            "state": {"path": str(tmp_path / "state.db")},
            "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
            "providers": [{"name": f.name, "base_url": f.base_url, "models": {"chat": "m"}, "priority": i,
                           "api_key_env": "A_KEY"} for i, f in enumerate((a, b), 1)]}, env={"A_KEY": key})
        a.script(error(503, f"overloaded, key {key} rejected"))
        async with Supervisor(config) as sup:
            otel.attach(sup)
            await sup.chat(HI, model="chat")
    values = [str(v) for s in otel.finished() for v in (s.attributes or {}).values()]
    assert values
    assert not [v for v in values if key in v or "overloaded" in v]


async def test_a_continuation_that_says_something_else_ends_the_span_as_interrupted(tmp_path: Path,
                                                                                   otel: Otel) -> None:
    """A restart that diverges answers, but the caller gets StreamInterruptedError: so does the span."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        otel.attach(sup)
        a.script(cut_stream(2, text="abcdefgh", chunks=4))
        b.set_default(ok("something else entirely"))
        with pytest.raises(StreamInterruptedError):
            async for _ in sup.stream(HI, model="chat"):
                pass
    spans = otel.finished()
    root = request_span(spans)
    assert dict(root.attributes or {})["error.type"] == "stream_interrupted"
    kinds = [(c["gen_ai.provider.name"], c["fallback.attempt.kind"]) for c in children(spans, root)]
    assert kinds == [("a", "first"), ("b", "continuation")]


@pytest.mark.parametrize(("kind", "base_url", "system"), [
    pytest.param("anthropic", "https://api.anthropic.com", "anthropic", id="anthropic"),
    pytest.param("azure", "https://x.openai.azure.com", "azure.ai.openai", id="azure"),
    pytest.param("openai", "https://api.openai.com/v1", "openai", id="openai-itself"),
    pytest.param("openai", "https://api.groq.com/openai/v1", "groq", id="groq"),
    pytest.param("openai", "https://openrouter.ai/api/v1", None, id="unknown-compatible-host"),
    pytest.param("openai", "http://localhost:4000", None, id="a-local-proxy"),
])
def test_the_conventional_provider_name_comes_from_kind_or_host(kind: str, base_url: str,
                                                               system: str | None) -> None:
    """fallback.provider.system: the conventions' name where the kind or the API host says it."""
    config = parse_config({"providers": [{"name": "p", "kind": kind, "base_url": base_url, "models": {"chat": "m"}}]},
                          env={})
    assert provider_system(config.providers[0]) == system
