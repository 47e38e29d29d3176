"""/metrics after scripted traffic, read with prometheus-client's own text parser."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from actors.testing import FakeUpstream, error
from tests.helpers import SDK_HI, Service, read_stream, service

pytestmark = pytest.mark.anyio


async def scrape(s: Service) -> dict[str, list[Sample]]:
    """Every sample /metrics shows, by sample name (a counter's ends in _total)."""
    await anyio.wait_all_tasks_blocked()
    await s.supervisor.refresh()
    status, _, body = await s.get("/metrics")
    assert status == 200
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    (found,) = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return found


async def test_fallbacks_are_counted_by_reason(tmp_path: Path) -> None:
    """A 503 on the primary: one fallback a -> b with reason service_unavailable."""
    a_fake, b_fake = FakeUpstream("a"), FakeUpstream("b")
    a_fake.script(error(503))
    async with service(tmp_path, a_fake, b_fake) as s:
        client = s.client()
        await client.chat.completions.create(model="chat", messages=SDK_HI)
        await client.close()
        samples = await scrape(s)
    assert value(samples, "fallback_fallbacks_by_reason_total", from_provider="a", to_provider="b",
                 reason="service_unavailable") == 1.0
    assert value(samples, "fallback_fallbacks_total", from_provider="a", to_provider="b") == 1.0


async def test_streams_fill_a_time_to_first_token_histogram_per_provider(tmp_path: Path) -> None:
    """Two streams answered by a: its TTFT histogram counts 2, cumulative buckets end at +Inf = 2."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        client = s.client()
        for _ in range(2):
            await read_stream(client, [])
        await client.chat.completions.create(model="chat", messages=SDK_HI)  # not a stream: not counted
        await client.close()
        samples = await scrape(s)
    assert value(samples, "fallback_provider_ttft_seconds_count", provider="a") == 2.0
    buckets = [x for x in samples["fallback_provider_ttft_seconds_bucket"] if x.labels["provider"] == "a"]
    assert buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == 2.0
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    assert value(samples, "fallback_provider_ttft_seconds_sum", provider="a") >= 0


async def test_deployment_state_and_cooldown_are_gauges(tmp_path: Path) -> None:
    """A long 429 on one of a's two models takes out that deployment only, with its cooldown left."""
    a = FakeUpstream("a")
    a.script(error(429, retry_after=120))
    models = {"chat": "a-model", "fast": "a-fast"}
    async with service(tmp_path, a, FakeUpstream("b"), providers={"a": {"models": models}}) as s:
        client = s.client()
        await client.chat.completions.create(model="chat", messages=SDK_HI)
        await client.close()
        samples = await scrape(s)
    assert value(samples, "fallback_deployment_state", provider="a", deployment="a-model", state="cooldown") == 1
    assert value(samples, "fallback_deployment_state", provider="a", deployment="a-model", state="healthy") == 0
    assert value(samples, "fallback_deployment_state", provider="a", deployment="a-fast", state="healthy") == 1
    assert value(samples, "fallback_deployment_cooldown_remaining_seconds", provider="a",
                 deployment="a-model") == pytest.approx(120, abs=1)
    assert value(samples, "fallback_deployment_cooldown_remaining_seconds", provider="a",
                 deployment="a-fast") == 0
    assert value(samples, "fallback_provider_state", provider="a", state="healthy") == 1


async def test_the_ttft_histogram_survives_a_restart(tmp_path: Path) -> None:
    """The histogram is kept in the state file: a restarted service goes on counting from it."""
    for expected in (1.0, 2.0):
        async with service(tmp_path, FakeUpstream("a")) as s:
            client = s.client()
            await read_stream(client, [])
            await client.close()
            samples = await scrape(s)
        assert value(samples, "fallback_provider_ttft_seconds_count", provider="a") == expected
