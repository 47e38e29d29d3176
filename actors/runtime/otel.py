"""The OpenTelemetry side of :mod:`actors.runtime.telemetry`: a finished request as spans and metrics.

Takes in: one :class:`~actors.runtime.request_trace.Finished` request at a time.
Puts out, through the OpenTelemetry API (the global tracer and meter providers unless given
others; the SDK behind them is the application's to configure), following the GenAI semantic
conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/):

- a span ``chat {gen_ai.request.model}`` (kind CLIENT) from the first attempt's start to the last
  one's end, with ``gen_ai.operation.name`` ``chat``, ``gen_ai.provider.name`` (the provider that
  answered, by its name here; ``fallback.provider.system`` holds the conventions' value for its
  API when its kind or host says it: ``openai``, ``anthropic``, ``azure.ai.openai``,
  ``gcp.vertex_ai``...), ``gen_ai.request.model`` (the logical model), ``gen_ai.response.model``
  (the upstream model that answered), ``gen_ai.response.time_to_first_chunk`` for a stream, and
  ``error.type`` (the failure's category) with an error status when nobody answered;
- under it, one span ``attempt {provider}`` per attempt: ``fallback.attempt.kind`` (``first``,
  ``retry``, ``fallback`` or ``continuation``), ``fallback.attempt.outcome`` (``success`` or
  ``failure``), ``fallback.attempt.category``, ``http.response.status_code``, ``error.type``;
- the histograms ``gen_ai.client.operation.duration`` and, for streams,
  ``gen_ai.client.operation.time_to_first_chunk`` (seconds, the conventions' bucket advice).

Owns: the tracer and the two instruments. Usage tokens are not recorded: no message carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from actors.core.config import Config
from actors.runtime.request_trace import Finished, provider_system

__all__ = ("DURATION_BUCKETS", "TTFC_BUCKETS", "Instruments")

_SCOPE = "provider-fallback"
#: The bucket boundaries the GenAI conventions advise for each histogram.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFC_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Instruments:
    """Turns each finished request into its spans and measurements (see the module doc)."""

    def __init__(self, *, upstream: Mapping[tuple[str, str], str], systems: Mapping[str, str],
                 tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None) -> None:
        self._upstream = upstream  # (provider, logical model) -> upstream model
        self._systems = systems  # provider -> the conventions' provider name, where known
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time from the request to its first chunk, for streams.",
            explicit_bucket_boundaries_advisory=TTFC_BUCKETS)

    @classmethod
    def for_config(cls, config: Config, *, tracer_provider: trace.TracerProvider | None = None,
                   meter_provider: metrics.MeterProvider | None = None) -> Instruments:
        return cls(upstream={(p.name, m): u for p in config.providers for m, u in p.models.items()},
                   systems={p.name: s for p in config.providers if (s := provider_system(p)) is not None},
                   tracer_provider=tracer_provider, meter_provider=meter_provider)

    def __call__(self, done: Finished) -> None:
        provider = done.provider
        common: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                                  "gen_ai.request.model": done.model}
        if (system := self._systems.get(provider)) is not None:
            common["fallback.provider.system"] = system
        if done.error_type is None and (upstream := self._upstream.get((provider, done.model))):
            common["gen_ai.response.model"] = upstream
        if done.error_type is not None:
            common["error.type"] = done.error_type
        attributes = {**common, "fallback.request_id": done.request_id, "fallback.stream": done.stream,
                      "fallback.attempts": len(done.attempts)}
        if done.ttft_s is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = done.ttft_s
        span = self._tracer.start_span(f"chat {done.model}", kind=SpanKind.CLIENT, attributes=attributes,
                                       start_time=_ns(done.start))
        if done.error_type is not None:
            span.set_status(Status(StatusCode.ERROR))
        parent = trace.set_span_in_context(span)
        for number, attempt in enumerate(done.attempts, 1) if span.is_recording() else ():  # sampled out
            child: dict[str, Any] = {
                "gen_ai.provider.name": attempt.provider, "fallback.attempt.kind": attempt.kind,
                "fallback.attempt.number": number,
                "fallback.attempt.outcome": "success" if attempt.ok else "failure",
            }
            if (model := self._upstream.get((attempt.provider, done.model))) is not None:
                child["gen_ai.request.model"] = model
            if attempt.last_resort:
                child["fallback.attempt.last_resort"] = True
            if attempt.category is not None:
                child["fallback.attempt.category"] = child["error.type"] = attempt.category
            if attempt.status is not None:
                child["http.response.status_code"] = attempt.status
            s = self._tracer.start_span(f"attempt {attempt.provider}", context=parent, attributes=child,
                                        start_time=_ns(attempt.start))
            if not attempt.ok:
                s.set_status(Status(StatusCode.ERROR))
            s.end(end_time=_ns(attempt.end))
        span.end(end_time=_ns(done.end))
        self._duration.record(max(0.0, done.end - done.start), common)
        if done.ttft_s is not None:
            self._ttfc.record(done.ttft_s, common)
