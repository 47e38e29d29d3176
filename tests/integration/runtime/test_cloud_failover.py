"""The failover matrix for the vertex and snowflake kinds, through a real Supervisor on a virtual
clock: each as the primary failing every way it can (the request is answered by a FakeUpstream
backup), and each as the fallback answering for a failing OpenAI-kind primary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("google.auth")
pytest.importorskip("jwt")

from actors.core.clock import VirtualClock
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeSnowflake, FakeUpstream, FakeVertex, cut_stream, error, garbage, hang
from tests.helpers import HI, openai_provider, providers_config, settle, snowflake_provider, vertex_provider

pytestmark = pytest.mark.anyio
KINDS = [pytest.param("vertex", id="vertex"), pytest.param("snowflake", id="snowflake")]
Fake = FakeVertex | FakeSnowflake


@asynccontextmanager
async def pair(tmp_path: Path, kind: str, *, first: bool) -> AsyncIterator[
        tuple[Supervisor, VirtualClock, Fake, FakeUpstream]]:
    """A Supervisor over a ``kind`` fake and a FakeUpstream ``plain``, the new kind ``first`` or second."""
    clock = VirtualClock()
    cloud: Fake = FakeVertex("cloud") if kind == "vertex" else FakeSnowflake("cloud", now=clock.now)
    async with cloud, FakeUpstream("plain") as plain:
        table = (vertex_provider(cloud, tmp_path / "sa.json") if isinstance(cloud, FakeVertex)
                 else snowflake_provider(cloud, tmp_path / "rsa_key.p8"))
        order = (table, openai_provider(plain)) if first else (openai_provider(plain), table)
        async with Supervisor(providers_config(tmp_path, *order), clock=clock) as sup:
            yield sup, clock, cloud, plain


async def refuse(fake: FakeUpstream) -> None:
    await fake.refuse_connections()


def scripted(*faults: Any) -> Callable[[FakeUpstream], Awaitable[None]]:
    async def apply(fake: FakeUpstream) -> None:
        fake.script(*faults)
    return apply


#: (what the failing provider does, the category its attempt is classified as)
MATRIX = [
    pytest.param(scripted(error(401)), "auth_failure", id="401"),
    pytest.param(scripted(error(403)), "auth_failure", id="403"),
    pytest.param(scripted(error(429)), "rate_limit", id="429"),
    pytest.param(scripted(error(500), error(500)), "server_error", id="500-twice"),
    pytest.param(scripted(error(503)), "service_unavailable", id="503"),
    pytest.param(scripted(error(504)), "timeout", id="504"),
    pytest.param(scripted(garbage("html")), "bad_response", id="garbage-html"),
    pytest.param(scripted(garbage("invalid_json")), "bad_response", id="garbage-json"),
    pytest.param(refuse, "connection_error", id="connection-refused"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fail", "category"), MATRIX)
async def test_a_failing_primary_is_answered_by_the_backup(
        tmp_path: Path, kind: str, fail: Callable[[FakeUpstream], Awaitable[None]], category: str) -> None:
    """The new kind as primary, failing: the request is answered by the FakeUpstream backup."""
    async with pair(tmp_path, kind, first=True) as (sup, _, cloud, _plain):
        await fail(cloud)
        reply = await sup.chat(HI)
        assert reply.provider == "plain"
        assert reply.text == "Hello from fake"
        assert reply.attempt_log[0].provider == "cloud"
        assert reply.attempt_log[0].category == category
        await settle()
        assert sup.state_of("cloud") == "cooldown"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_hanging_primary_times_out_to_the_backup(tmp_path: Path, kind: str) -> None:
    """The new kind as primary, silent past timeout_s: the backup answers."""
    async with pair(tmp_path, kind, first=True) as (sup, clock, cloud, _plain):
        cloud.script(hang())
        replies = []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                replies.append(await sup.chat(HI))
            tg.start_soon(call)
            with anyio.fail_after(10):
                await cloud.wait_hanging()
            await clock.advance(31)
        assert replies[0].provider == "plain"
        assert replies[0].attempt_log[0].category == "timeout"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_cut_mid_way_is_finished_by_the_backup(tmp_path: Path, kind: str) -> None:
    """The new kind's stream breaks after the caller has text: the backup finishes the one answer."""
    async with pair(tmp_path, kind, first=True) as (sup, _, cloud, plain):
        cloud.script(cut_stream(2, text="Hello from fake", chunks=4))
        chunks = [c async for c in sup.stream(HI)]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        assert text == "Hello from fake"
        parts = [c for c in chunks if "x_fallback" in c][-1]["x_fallback"]["parts"]
        assert [p["provider"] for p in parts] == ["cloud", "plain"]
        assert plain.completions == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_the_new_kind_answers_streams_as_primary(tmp_path: Path, kind: str) -> None:
    """A healthy new-kind primary streams the whole answer itself, signed in."""
    async with pair(tmp_path, kind, first=True) as (sup, _, cloud, plain):
        chunks = [c async for c in sup.stream(HI)]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        assert (text, cloud.completions, plain.completions) == ("Hello from fake", 1, 0)


FALLBACK = [
    pytest.param(scripted(error(503)), id="503"),
    pytest.param(scripted(error(401)), id="401"),
    pytest.param(scripted(error(429, retry_after=60)), id="429"),
    pytest.param(refuse, id="connection-refused"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fail", FALLBACK)
async def test_the_new_kind_answers_for_a_failing_openai_primary(
        tmp_path: Path, kind: str, fail: Callable[[FakeUpstream], Awaitable[None]]) -> None:
    """The new kind as the fallback: it signs in and answers when the OpenAI-kind primary fails."""
    async with pair(tmp_path, kind, first=False) as (sup, _, cloud, plain):
        await fail(plain)
        reply = await sup.chat(HI)
        assert (reply.provider, reply.text) == ("cloud", "Hello from fake")
        assert cloud.requests[-1].headers["Authorization"].startswith("Bearer ")
