"""Per-deployment scope: one provider serving several models keeps each model's health apart."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.core.clock import VirtualClock
from actors.core.config import Config, parse_config
from actors.replay import replay
from actors.replay.eventlog import read_log
from actors.replay.export import export_events
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error, ok
from tests.helpers import HI, SDK_HI, read_stream, service, settle

pytestmark = pytest.mark.anyio


def config(tmp_path: Path, a: FakeUpstream, b: FakeUpstream) -> Config:
    """``a`` serves chat (a-fast) and code (a-big); ``b`` serves both as the backup."""
    return parse_config({
        "state": {"path": str(tmp_path / "state.db")},
        "routing": {"second_pass_backoff_s": 0},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0,
                   "probe_min_interval_s": 0},
        "providers": [
            {"name": "a", "base_url": a.base_url, "models": {"chat": "a-fast", "code": "a-big"},
             "priority": 1},
            {"name": "b", "base_url": b.base_url, "models": {"chat": "b-fast", "code": "b-big"},
             "priority": 2},
        ],
    })


@asynccontextmanager
async def two_models(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, VirtualClock, FakeUpstream, FakeUpstream]]:
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        clock = VirtualClock()
        async with Supervisor(config(tmp_path, a, b), clock=clock) as sup:
            yield sup, clock, a, b


def deployment(sup: Supervisor, provider: str, model: str) -> dict[str, Any]:
    found: dict[str, Any] = sup.status()["providers"][provider]["deployments"][model]
    return found


@pytest.mark.parametrize("fault", [
    pytest.param(error(429, retry_after=120), id="429"),
    pytest.param(error(404, code="model_not_found"), id="404"),
    pytest.param(error(503), id="503-overloaded"),
])
async def test_a_model_scoped_fault_takes_out_that_model_only(tmp_path: Path, fault: Any) -> None:
    """A 429/404/503 for a-fast: chat goes to b, while code is still served by a, which stays healthy."""
    async with two_models(tmp_path) as (sup, _, a, _b):
        a.script(fault)
        assert (await sup.chat(HI, model="chat")).provider == "b"
        await settle()
        assert sup.state_of("a") == "healthy"
        assert deployment(sup, "a", "a-fast")["state"] == "cooldown"
        assert deployment(sup, "a", "a-big")["state"] == "healthy"
        assert (await sup.chat(HI, model="code")).provider == "a"
        assert (await sup.chat(HI, model="chat")).provider == "b"  # a-fast still out
        assert a.requests[-1].body is not None
        assert a.requests[-1].body["model"] == "a-big"


async def test_a_provider_wide_fault_takes_out_every_model(tmp_path: Path) -> None:
    """A 401 is the provider's: both of its models go to the backup."""
    async with two_models(tmp_path) as (sup, _, a, _b):
        a.script(error(401))
        assert (await sup.chat(HI, model="chat")).provider == "b"
        await settle()
        assert sup.state_of("a") == "cooldown"
        assert deployment(sup, "a", "a-fast")["state"] == "healthy"  # not the model's fault
        assert (await sup.chat(HI, model="code")).provider == "b"


async def test_the_recovery_probe_goes_to_the_model_that_failed(tmp_path: Path) -> None:
    """After its cooldown, a-fast is probed with a 1-token completion to a-fast; it passes, chat fails back."""
    async with two_models(tmp_path) as (sup, clock, a, _b):
        a.script(error(503))
        assert (await sup.chat(HI, model="chat")).provider == "b"
        await settle()
        until = sup.routing.deployments[0].cooldown_until
        assert until is not None
        a.set_default(ok())
        before = len(a.requests)
        await clock.advance(until - clock.now() + 1)
        await settle()
        probes = [r.body for r in a.requests[before:] if r.body is not None]
        assert [(p["model"], p.get("max_tokens")) for p in probes] == [("a-fast", 1)]
        assert deployment(sup, "a", "a-fast")["state"] == "healthy"
        assert (await sup.chat(HI, model="chat")).provider == "a"


async def test_deployment_state_survives_a_restart_and_replays(tmp_path: Path) -> None:
    """The model's cooldown is in the state file: a restarted service still routes chat away; the log replays."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        cfg = config(tmp_path, a, b)
        async with Supervisor(cfg, clock=VirtualClock()) as sup:
            a.script(error(429, retry_after=3600))
            assert (await sup.chat(HI, model="chat")).provider == "b"
            await settle()
        async with Supervisor(cfg, clock=VirtualClock()) as sup:
            assert deployment(sup, "a", "a-fast")["state"] == "cooldown"
            before = len(a.requests)
            assert (await sup.chat(HI, model="chat")).provider == "b"
            assert (await sup.chat(HI, model="code")).provider == "a"
            assert len(a.requests) == before + 1
        out = io.BytesIO()
        await export_events(cfg.state.path, out)
        log_path = tmp_path / "log.jsonl"
        log_path.write_bytes(out.getvalue())
        result = replay(read_log(log_path))
        assert result.matches


async def test_through_the_gateway_and_the_sdk_a_429_on_one_model_leaves_the_other(tmp_path: Path) -> None:
    """Streamed through the gateway with the openai SDK: chat's 429 falls over; code still goes to a."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    models = {"a": {"models": {"chat": "a-fast", "code": "a-big"}},
              "b": {"models": {"chat": "b-fast", "code": "b-big"}}}
    async with service(tmp_path, a, b, providers=models) as svc:
        a.script(error(429, retry_after=120))
        client = svc.client()
        try:
            parts: list[str] = []
            await read_stream(client, parts)
            assert "".join(parts) == "Hello from fake"
            assert b.completions == 1
            raw = await client.chat.completions.with_raw_response.create(model="code", messages=SDK_HI)
            assert raw.headers["x-fallback-provider"] == "a"
        finally:
            await client.close()
        _, _, body = await svc.get("/status")
        deployments = msgspec.json.decode(body)["providers"]["a"]["deployments"]
        assert (deployments["a-fast"]["state"], deployments["a-big"]["state"]) == ("cooldown", "healthy")
