"""The HTTP gateway, driven by the official ``openai`` SDK (and aiohttp for the rest) as real clients.

Each test runs FakeUpstreams, a Supervisor on a VirtualClock and the gateway
in the test's own event loop; scheduled health checks are off so that only
the test's requests reach the fakes.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from actors.gateway import GatewayError, serve
from actors.testing import FakeUpstream, cut_stream, error, garbage, hang, ok
from tests.helpers import TIMEOUT_S, read_stream, service, two

pytestmark = pytest.mark.anyio

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def test_answer_carries_provider_and_attempts(tmp_path: Path) -> None:
    """A normal answer has the provider's content and names who served it in one attempt."""
    a, _, svc = two(tmp_path)
    async with svc as s:
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        await client.close()
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from fake"
    assert raw.headers["x-fallback-provider"] == "a"
    assert raw.headers["x-fallback-attempts"] == "1"
    assert a.requests[0].body is not None
    assert a.requests[0].body["model"] == "a-model"


async def test_sync_client_works(tmp_path: Path) -> None:
    """The blocking SDK client gets an answer too."""
    _, _, svc = two(tmp_path)
    async with svc as s:

        def call() -> str | None:
            with openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as client:
                return client.chat.completions.create(model="chat", messages=HI).choices[0].message.content

        assert await anyio.to_thread.run_sync(call) == "Hello from fake"


async def test_primary_503_is_answered_by_the_fallback(tmp_path: Path) -> None:
    """A 503 from the primary is answered by the fallback in the second attempt."""
    a, b, svc = two(tmp_path)
    a.script(error(503))
    async with svc as s:
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        await client.close()
    assert raw.headers["x-fallback-provider"] == "b"
    assert raw.headers["x-fallback-attempts"] == "2"
    assert (a.completions, b.completions) == (1, 1)


async def test_refused_connections_fall_back(tmp_path: Path) -> None:
    """A primary that refuses connections is skipped for the fallback."""
    a, _, svc = two(tmp_path)
    async with svc as s:
        await a.refuse_connections()
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        await client.close()
    assert raw.headers["x-fallback-provider"] == "b"


async def test_hanging_primary_times_out_to_the_fallback(tmp_path: Path) -> None:
    """A primary that hangs past its timeout is abandoned for the fallback."""
    a, _, svc = two(tmp_path)
    a.script(hang())
    async with svc as s:
        client = s.client()
        got: list[Any] = []

        async def call() -> None:
            got.append(await client.chat.completions.with_raw_response.create(model="chat", messages=HI))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await a.wait_hanging()
                await s.clock.advance(TIMEOUT_S + 1)
        await client.close()
    assert got[0].headers["x-fallback-provider"] == "b"
    assert got[0].headers["x-fallback-attempts"] == "2"


async def test_all_down_is_503_naming_each_provider(tmp_path: Path) -> None:
    """When every provider fails the client gets 503 all_providers_failed listing each attempt."""
    a, b, svc = two(tmp_path)
    a.set_default(error(503))
    b.set_default(error(500))
    async with svc as s:
        client = s.client()
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
    exc = info.value
    assert exc.status_code == 503
    assert exc.code == "all_providers_failed"
    assert "a: " in exc.message
    assert "b: " in exc.message
    assert isinstance(exc.body, dict)
    assert [t["provider"] for t in exc.body["attempts"]][:2] == ["a", "b"]
    assert exc.response.headers["x-fallback-attempts"] == str(len(exc.body["attempts"]))
    assert "x-fallback-provider" not in exc.response.headers


async def test_upstream_rejection_is_returned_as_is(tmp_path: Path) -> None:
    """A 400 about a request field comes back as a 400 naming that provider, without a fallback."""
    a, b, svc = two(tmp_path)
    a.script(error(400, "temperature is silly", code="bad_temperature", param="temperature"))
    async with svc as s:
        client = s.client()
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
    assert "temperature is silly" in info.value.message
    assert info.value.response.headers["x-fallback-provider"] == "a"
    assert b.completions == 0


async def test_upstream_rejection_keeps_the_upstream_code(tmp_path: Path) -> None:
    """A provider's 400 reaches the client with the provider's error code."""
    a, _, svc = two(tmp_path)
    a.script(error(400, "temperature is silly", code="bad_temperature", param="temperature"))
    async with svc as s:
        client = s.client()
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
    assert info.value.code == "bad_temperature"


async def test_stream_reassembles_the_text(tmp_path: Path) -> None:
    """A streamed answer arrives in chunks that join into the full text."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI, stream=True)
        parts = []
        async with raw.parse() as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        await client.close()
    assert "".join(parts) == "Hello from fake"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-fallback-provider"] == "a"


async def test_stream_cut_after_first_chunk_raises_stream_interrupted(tmp_path: Path) -> None:
    """A stream cut mid-way that no provider can go on with ends in an error the SDK raises, never a
    silent truncation (here b's restart says something else)."""
    a, b, svc = two(tmp_path)
    a.script(cut_stream(2, text="abcdefgh", chunks=4))
    async with svc as s:
        client = s.client()
        parts: list[str] = []
        with pytest.raises(openai.APIError) as info:
            await read_stream(client, parts)
        await client.close()
    assert "".join(parts) == "abcd"
    assert info.value.code == "stream_interrupted"
    assert "stream from a failed" in info.value.message
    assert "says something else" in info.value.message
    assert b.completions == 1


async def test_stream_failing_before_first_chunk_falls_back(tmp_path: Path) -> None:
    """A stream that dies before its first chunk is served by the fallback, invisibly."""
    a, _, svc = two(tmp_path)
    a.script(cut_stream(0))
    async with svc as s:
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI, stream=True)
        parts = []
        async with raw.parse() as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        await client.close()
    assert "".join(parts) == "Hello from fake"
    assert raw.headers["x-fallback-provider"] == "b"
    assert raw.headers["x-fallback-attempts"] == "2"


async def test_stream_closed_early_by_the_client_leaves_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading a stream early leaves the service working and logs no error."""
    a, _, svc = two(tmp_path)
    a.script(ok("word " * 2000, chunks=500))
    async with svc as s:
        client = s.client()
        async with await client.chat.completions.create(model="chat", messages=HI, stream=True) as stream:
            async for _ in stream:
                break
        reply = await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
    assert reply.choices[0].message.content == "Hello from fake"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_admin_refuses_everything_without_a_token(tmp_path: Path) -> None:
    """With no admin token configured the admin endpoints answer 403 and say how to turn them on."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        status, _, body = await s.post("/admin/providers/a/disable", headers={"Authorization": "Bearer x"})
    assert status == 403
    assert "FALLBACK_ADMIN_TOKEN" in body["error"]["message"]


@pytest.mark.parametrize("header", [
    pytest.param({}, id="missing"),
    pytest.param({"Authorization": "Bearer wrong"}, id="wrong"),
    pytest.param({"Authorization": "Basic s3cret-admin"}, id="not-bearer"),
])
async def test_admin_rejects_a_bad_token(tmp_path: Path, header: dict[str, str]) -> None:
    """A missing or wrong admin token gets 401 and changes nothing."""
    _, _, svc = two(tmp_path, env={"FALLBACK_ADMIN_TOKEN": "s3cret-admin"})
    async with svc as s:
        status, _, body = await s.post("/admin/providers/a/disable", headers=header)
        assert s.supervisor.state_of("a") == "healthy"
    assert status == 401
    assert set(body["error"]) == {"message", "type", "code", "param"}


async def test_admin_probe_checks_now_and_restores_on_a_pass(tmp_path: Path) -> None:
    """POST .../probe runs the recovery check at once: a healed primary is back, and the answer says so."""
    a, _b, svc = two(tmp_path, env={"FALLBACK_ADMIN_TOKEN": "s3cret-admin"})
    auth = {"Authorization": "Bearer s3cret-admin"}
    a.script(error(503))
    async with svc as s:
        client = s.client()
        await client.chat.completions.create(model="chat", messages=HI)
        await anyio.wait_all_tasks_blocked()
        assert s.supervisor.state_of("a") == "cooldown"
        status, _, body = await s.post("/admin/providers/a/probe", headers=auth)
        reply = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        await client.close()
    assert status == 200
    assert (body["ok"], body["tier"], body["state"]) == (True, "api", "healthy")
    assert reply.headers["x-fallback-provider"] == "a"


async def test_admin_disable_moves_traffic_and_enable_brings_it_back(tmp_path: Path) -> None:
    """Disabling the primary sends traffic to the fallback until it is enabled again."""
    a, b, svc = two(tmp_path, env={"FALLBACK_ADMIN_TOKEN": "s3cret-admin"})
    auth = {"Authorization": "Bearer s3cret-admin"}
    async with svc as s:
        client = s.client()
        status, _, body = await s.post("/admin/providers/a/disable", headers=auth)
        assert (status, body) == (200, {"provider": "a", "state": "disabled"})
        first = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        status, _, body = await s.post("/admin/providers/a/enable", headers=auth)
        assert (status, body["state"]) == (200, "healthy")
        second = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        await client.close()
    assert first.headers["x-fallback-provider"] == "b"
    assert second.headers["x-fallback-provider"] == "a"
    assert (a.completions, b.completions) == (1, 1)


async def test_admin_unknown_provider_is_404(tmp_path: Path) -> None:
    """An admin command for a provider that is not configured gets 404."""
    _, _, svc = two(tmp_path, env={"FALLBACK_ADMIN_TOKEN": "s3cret-admin"})
    async with svc as s:
        status, _, body = await s.post("/admin/providers/zz/disable",
                                       headers={"Authorization": "Bearer s3cret-admin"})
    assert status == 404
    assert "zz" in body["error"]["message"]


async def test_malformed_json_is_400(tmp_path: Path) -> None:
    """A body that is not JSON gets an OpenAI-shaped 400 and reaches no provider."""
    a, _, svc = two(tmp_path)
    async with svc as s:
        status, headers, body = await s.post("/v1/chat/completions", data=b"{not json",
                                             headers={"Content-Type": "application/json"})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]
    assert headers["x-fallback-attempts"] == "0"
    assert a.completions == 0


@pytest.mark.parametrize(("payload", "param"), [
    pytest.param({"model": "chat"}, "messages", id="missing-messages"),
    pytest.param({"model": "chat", "messages": []}, "messages", id="empty-messages"),
    pytest.param({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", id="bad-role"),
    pytest.param({"messages": HI, "temperature": 9}, "temperature", id="bad-temperature"),
])
async def test_invalid_request_names_the_field(tmp_path: Path, payload: dict[str, Any], param: str) -> None:
    """A malformed request gets 400 with ``param`` naming the field."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        status, _, body = await s.post("/v1/chat/completions", json=payload)
    assert status == 400
    assert body["error"]["param"] == param


async def test_unexpected_error_is_a_logged_500_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug behind the gateway answers an OpenAI-shaped 500 and goes to the log, not to the client."""
    _, _, svc = two(tmp_path)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail")

    async with svc as s:
        monkeypatch.setattr(s.supervisor, "complete", broken)
        status, _, body = await s.post("/v1/chat/completions", json={"messages": HI})
    assert status == 500
    assert body["error"]["code"] == "internal_error"
    assert "internal detail" not in json.dumps(body)
    assert any(r.exc_info and "internal detail" in str(r.exc_info[1]) for r in caplog.records)


async def test_unknown_model_is_404(tmp_path: Path) -> None:
    """A model no provider serves gets 404 model_not_found."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        client = s.client()
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="nope", messages=HI)
        await client.close()
    assert info.value.code == "model_not_found"
    assert "nope" in info.value.message


async def test_body_too_large_is_413(tmp_path: Path) -> None:
    """A body over server.max_body_bytes gets 413 request_too_large."""
    a, _, svc = two(tmp_path, server={"max_body_bytes": 1000})
    async with svc as s:
        client = s.client()
        big: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x" * 2000}]
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="chat", messages=big)
        await client.close()
    assert info.value.status_code == 413
    assert info.value.code == "request_too_large"
    assert a.completions == 0


async def test_wrong_client_key_is_401(tmp_path: Path) -> None:
    """With client keys configured, a request without one of them gets 401 invalid_api_key."""
    a, _, svc = two(tmp_path, env={"FALLBACK_CLIENT_KEYS": "k-one, k-two"})
    async with svc as s:
        client = s.client("k-three")
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
        await client.close()
    assert info.value.code == "invalid_api_key"
    assert a.completions == 0


async def test_right_client_key_is_served(tmp_path: Path) -> None:
    """With client keys configured, any one of them is served, and health stays open."""
    _, _, svc = two(tmp_path, env={"FALLBACK_CLIENT_KEYS": "k-one, k-two"})
    async with svc as s:
        client = s.client("k-two")
        reply = await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
        status, _, _ = await s.get("/healthz")
    assert reply.choices[0].message.content == "Hello from fake"
    assert status == 200


async def test_models_lists_the_logical_models(tmp_path: Path) -> None:
    """/v1/models lists the logical model names in OpenAI's shape."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    async with service(tmp_path, a, b, providers={"b": {"models": {"chat": "m", "fast": "f"}}}) as s:
        client = s.client()
        models = [m async for m in client.models.list()]
        await client.close()
    assert [m.id for m in models] == ["chat", "fast"]
    assert {m.owned_by for m in models} == {"provider-fallback"}


async def test_healthz_answers_ok(tmp_path: Path) -> None:
    """/healthz answers 200 while the service runs."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        status, _, body = await s.get("/healthz")
    assert (status, body) == (200, b'{"status":"ok"}')


async def test_readyz_is_200_with_a_healthy_provider(tmp_path: Path) -> None:
    """/readyz answers 200 while a healthy provider serves the default model."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        status, _, _ = await s.get("/readyz")
    assert status == 200


async def test_readyz_is_503_when_every_provider_is_unconfigured(tmp_path: Path) -> None:
    """/readyz answers 503 when no provider has its key, and /status names the missing variables."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    keys = {"a": {"api_key_env": "A_TEST_KEY"}, "b": {"api_key_env": "B_TEST_KEY"}}
    async with service(tmp_path, a, b, providers=keys) as s:
        status, _, body = await s.get("/readyz")
        _, _, raw_status = await s.get("/status")
    assert status == 503
    assert b"A_TEST_KEY" in body
    assert b"B_TEST_KEY" in body
    providers = json.loads(raw_status)["providers"]
    assert providers["a"]["state"] == "unconfigured"
    assert "A_TEST_KEY" in providers["a"]["detail"]
    assert "B_TEST_KEY" in providers["b"]["detail"]


async def test_metrics_exposes_per_provider_series(tmp_path: Path) -> None:
    """/metrics is Prometheus text with per-provider counters, states and fallbacks."""
    a, _, svc = two(tmp_path)
    a.script(error(503))
    async with svc as s:
        client = s.client()
        await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
        await anyio.wait_all_tasks_blocked()
        status, headers, body = await s.get("/metrics")
    text = body.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert 'fallback_provider_requests_total{provider="a"} 1.0' in text
    assert 'fallback_provider_requests_success_total{provider="b"} 1.0' in text
    assert 'fallback_provider_failures_total{category="service_unavailable",provider="a"} 1.0' in text
    assert 'fallback_provider_state{provider="a",state="cooldown"} 1.0' in text
    assert 'fallback_provider_state{provider="a",state="healthy"} 0.0' in text
    assert 'fallback_fallbacks_total{from_provider="a",to_provider="b"} 1.0' in text
    assert 'fallback_provider_latency_seconds{provider="b",quantile="0.5"}' in text
    assert 'fallback_provider_cooldown_remaining_seconds{provider="a"} 600.0' in text


async def test_events_lists_what_just_happened(tmp_path: Path) -> None:
    """/events returns the events of a request just made, with a cursor to continue from."""
    a, _, svc = two(tmp_path)
    a.script(error(503))
    async with svc as s:
        client = s.client()
        await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
        await anyio.wait_all_tasks_blocked()
        status, _, body = await s.get("/events")
        page = json.loads(body)
        _, _, rest = await s.get(f"/events?after={page['next_after']}")
    assert status == 200
    types = [e["type"] for e in page["events"]]
    assert "attempt_failed" in types
    assert "fallback_triggered" in types
    fallback = next(e for e in page["events"] if e["type"] == "fallback_triggered")
    assert (fallback["data"]["from_provider"], fallback["data"]["to_provider"]) == ("a", "b")
    assert page["next_after"] == page["events"][-1]["id"]
    assert json.loads(rest)["events"] == []


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "limit=1001", "limit=ten"])
async def test_events_rejects_a_bad_cursor(tmp_path: Path, query: str) -> None:
    """A bad ``after`` or ``limit`` gets 400 naming the parameter."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        status, _, body = await s.get(f"/events?{query}")
    assert status == 400
    assert json.loads(body)["error"]["param"] == query.split("=")[0]


@pytest.mark.parametrize("kind", ["html", "invalid_json", "wrong_shape", "truncated", "empty"])
async def test_garbage_upstream_is_never_a_200(tmp_path: Path, kind: Any) -> None:
    """A 200 with a body no client can parse is treated as a failure and answered by the fallback."""
    a, _, svc = two(tmp_path)
    a.script(garbage(kind))
    async with svc as s:
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
        await client.close()
    assert raw.headers["x-fallback-provider"] == "b"
    assert raw.parse().choices[0].message.content == "Hello from fake"


async def test_garbage_everywhere_is_503(tmp_path: Path) -> None:
    """When every provider answers garbage the client gets a 503, not a broken 200."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    a.set_default(garbage("html"))
    b.set_default(garbage("wrong_shape"))
    async with service(tmp_path, a, b, routing={"request_deadline_s": 60}) as s:  # cooldowns outlast it
        status, _, body = await s.post("/v1/chat/completions", json={"messages": HI})
    assert status == 503
    assert body["error"]["code"] == "all_providers_failed"


async def test_secrets_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """API keys and the admin token appear in no view and no log line."""
    caplog.set_level(logging.DEBUG)
    secrets = {"A_TEST_KEY": "sk-aaa-very-secret", "B_TEST_KEY": "sk-bbb-very-secret",
               "FALLBACK_ADMIN_TOKEN": "admin-very-secret"}
    a = FakeUpstream("a", api_key="sk-aaa-very-secret")
    b = FakeUpstream("b", api_key="sk-wrong-expected")  # b rejects its key: a 401 to log
    keys = {"a": {"api_key_env": "A_TEST_KEY"}, "b": {"api_key_env": "B_TEST_KEY"}}
    a.script(error(503))
    async with service(tmp_path, a, b, env=secrets, providers=keys) as s:
        client = s.client()
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(model="chat", messages=HI)
        await client.close()
        await s.post("/admin/providers/a/disable", headers={"Authorization": "Bearer admin-very-secret"})
        await anyio.wait_all_tasks_blocked()
        views = [(await s.get(path))[2] for path in ("/status", "/metrics", "/events?limit=1000", "/readyz")]
    assert a.requests[0].headers["Authorization"] == "Bearer sk-aaa-very-secret"  # the key was used
    stored = b"".join([await anyio.Path(p).read_bytes() async for p in anyio.Path(tmp_path).glob("state.db*")])
    assert b"attempt_failed" in stored  # the event log was written, so the check below means something
    for secret in secrets.values():
        for view in views:
            assert secret.encode() not in view
        assert secret.encode() not in stored
        assert secret not in caplog.text


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """Serving on a port that is taken raises GatewayError saying how to choose another."""
    a = FakeUpstream("a")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with service(tmp_path, a) as s:
            with pytest.raises(GatewayError, match=f"127.0.0.1:{port}: address already in use"):
                await serve(s.supervisor, host="127.0.0.1", port=port)


async def test_stop_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    """After stop, new connections are refused but a request in flight still gets its answer."""
    a, _, svc = two(tmp_path)
    a.script(hang())
    async with svc as s:
        client = s.client()
        got: list[Any] = []

        async def call() -> None:
            got.append(await client.chat.completions.with_raw_response.create(model="chat", messages=HI))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await a.wait_hanging()
                s.stop.set()
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(aiohttp.ClientConnectionError):
                    await s.get("/healthz")
                await s.clock.advance(TIMEOUT_S + 1)
        await client.close()
    assert got[0].headers["x-fallback-provider"] == "b"
