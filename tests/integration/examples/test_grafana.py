"""examples/grafana/provider-fallback.json: valid JSON, and every metric it queries is one /metrics shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.testing import FakeUpstream
from tests.helpers import service

pytestmark = pytest.mark.anyio
DASHBOARD = Path(__file__).resolve().parents[3] / "examples" / "grafana" / "provider-fallback.json"
_METRIC = re.compile(r"\bfallback_[a-z0-9_]+\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count"),
             "gauge": ("",)}


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


async def exposed(tmp_path: Path) -> set[str]:
    """Every sample name /metrics can show (each family's, by its type), from a service with no traffic."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        status, _, body = await s.get("/metrics")
    assert status == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def test_the_dashboard_is_valid_json_with_the_panels_it_promises() -> None:
    """It parses; it has a state timeline, fallbacks by reason, latency and TTFT, and the reliability gauge."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    kinds = {p["title"]: p["type"] for p in dashboard["panels"]}
    assert kinds["Provider state"] == "state-timeline"
    assert kinds["Reliability score"] == "gauge"
    assert {"Fallbacks by reason", "Latency quantiles", "Time to first token (streams)"} <= set(kinds)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    text = " ".join(queries(dashboard))
    for name in ("fallback_provider_reliability_score", "fallback_fallbacks_by_reason_total",
                 "fallback_provider_ttft_seconds_bucket", "fallback_provider_state"):
        assert name in text


async def test_every_metric_the_dashboard_queries_is_exposed(tmp_path: Path) -> None:
    """No panel queries a name /metrics does not have."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    wanted = {m for expr in queries(dashboard) for m in _METRIC.findall(expr)}
    assert wanted
    assert wanted - await exposed(tmp_path) == set()
