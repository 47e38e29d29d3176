"""FakeUpstream, driven by a real aiohttp client over 127.0.0.1."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest

from actors.testing import (
    FakeUpstream,
    context_length_exceeded,
    cut_stream,
    error,
    garbage,
    hang,
    ok,
    reset,
    stall_stream,
)

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY: dict[str, Any] = {**BODY, "stream": True}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("alpha") as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def chat_url(upstream: FakeUpstream) -> str:
    return f"{upstream.base_url}/chat/completions"


async def post(session: aiohttp.ClientSession, upstream: FakeUpstream,
               body: dict[str, Any] = BODY, **kwargs: Any) -> tuple[int, Any]:
    """POST a completion request; return the status and the parsed JSON body."""
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=body, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


async def read_events(resp: aiohttp.ClientResponse, into: list[str]) -> None:
    """Append the data of each SSE event to `into` (kept if the stream breaks)."""
    async for line in resp.content:
        if line.startswith(b"data: "):
            into.append(line[len(b"data: "):].decode().strip())


async def test_ok_returns_a_chat_completion(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """ok() answers with an OpenAI chat.completion that echoes the requested model."""
    status, data = await post(session, upstream)
    assert status == 200
    assert data["object"] == "chat.completion"
    assert data["model"] == "gpt-test"
    assert data["choices"] == [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "Hello from fake"}}]
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert isinstance(data["id"], str)
    assert isinstance(data["created"], int)


async def test_ok_without_usage_omits_it(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """ok(usage=False) answers without a usage object, like some providers."""
    upstream.script(ok("bare", usage=False))
    _, data = await post(session, upstream)
    assert "usage" not in data
    assert data["choices"][0]["message"]["content"] == "bare"


async def test_ok_streams_chunks_then_done(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A streaming request gets `chunks` SSE chunks that rebuild the text, a stop chunk, [DONE]."""
    upstream.script(ok("one two three four five", chunks=3))
    events: list[str] = []
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=STREAM_BODY) as resp:
            assert resp.content_type == "text/event-stream"
            await read_events(resp, events)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    content = [chunk["choices"][0]["delta"] for chunk in chunks[:3]]
    assert content[0]["role"] == "assistant"
    assert "".join(delta["content"] for delta in content) == "one two three four five"
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert len(chunks) == 4, "no usage chunk unless stream_options.include_usage"


async def test_stream_usage_chunk_when_asked(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """stream_options.include_usage adds a usage chunk with no choices before [DONE]."""
    body = {**STREAM_BODY, "stream_options": {"include_usage": True}}
    events: list[str] = []
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=body) as resp:
            await read_events(resp, events)
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert events[-1] == "[DONE]"


async def test_error_sends_openai_body_and_retry_after(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """error() answers its status with an OpenAI error object and a Retry-After header."""
    upstream.script(error(429, retry_after=30))
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=BODY) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "30"
            data = await resp.json()
    assert data["error"]["code"] == "rate_limit_exceeded"
    assert data["error"]["message"]
    assert data["error"]["param"] is None
    assert set(data["error"]) == {"message", "type", "code", "param"}


async def test_error_retry_after_string_is_sent_verbatim(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A string Retry-After (an HTTP date) is sent as given."""
    date = "Wed, 21 Oct 2037 07:28:00 GMT"
    upstream.script(error(503, retry_after=date))
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=BODY) as resp:
            assert resp.headers["Retry-After"] == date


@pytest.mark.parametrize(
    ("status", "type_", "code"),
    [
        pytest.param(400, "invalid_request_error", None, id="400"),
        pytest.param(401, "invalid_request_error", "invalid_api_key", id="401"),
        pytest.param(404, "invalid_request_error", "model_not_found", id="404"),
        pytest.param(429, "requests", "rate_limit_exceeded", id="429"),
        pytest.param(500, "server_error", None, id="500"),
        pytest.param(503, "server_error", "overloaded", id="503"),
        pytest.param(418, "invalid_request_error", None, id="418-unlisted"),
    ],
)
async def test_error_defaults_per_status(
    upstream: FakeUpstream, session: aiohttp.ClientSession,
    status: int, type_: str, code: str | None,
) -> None:
    """Each status gets the error type and code OpenAI uses for it, and a message."""
    upstream.script(error(status))
    got_status, data = await post(session, upstream)
    assert got_status == status
    assert (data["error"]["type"], data["error"]["code"]) == (type_, code)
    assert data["error"]["message"]


async def test_error_overrides_defaults(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """Explicit message, code and type replace the defaults."""
    upstream.script(error(429, "quota gone", code="insufficient_quota", type="insufficient_quota"))
    _, data = await post(session, upstream)
    assert data["error"] == {"message": "quota gone", "type": "insufficient_quota",
                             "code": "insufficient_quota", "param": None}


async def test_context_length_exceeded(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """context_length_exceeded() is a 400 with OpenAI's code and param."""
    upstream.script(context_length_exceeded())
    status, data = await post(session, upstream)
    assert status == 400
    assert data["error"]["code"] == "context_length_exceeded"
    assert data["error"]["param"] == "messages"
    assert "maximum context length" in data["error"]["message"]


async def test_script_runs_in_order_then_default(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """Scripted answers are used once each, in order; then the default answers."""
    upstream.script(error(500), error(502))
    upstream.script(error(503))
    statuses = [(await post(session, upstream))[0] for _ in range(5)]
    assert statuses == [500, 502, 503, 200, 200]


async def test_set_default_changes_the_fallback_answer(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """set_default() answers every request once the script is empty."""
    upstream.set_default(error(503))
    upstream.script(ok())
    statuses = [(await post(session, upstream))[0] for _ in range(3)]
    assert statuses == [200, 503, 503]


async def test_default_given_to_constructor(session: aiohttp.ClientSession) -> None:
    """The constructor's default answers when nothing is scripted."""
    async with FakeUpstream(default=error(401)) as fake:
        assert (await post(session, fake))[0] == 401


async def test_hang_answers_nothing_until_released(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """hang() keeps the request open until release(), then drops the connection."""
    upstream.script(hang())

    async def call() -> None:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(chat_url(upstream), json=BODY) as resp:
                await resp.read()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await upstream.wait_hanging()
            assert upstream.completions == 1
            upstream.release()
    assert (await post(session, upstream))[0] == 200


async def test_hang_trips_client_read_timeout(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A hung request ends in the client's own read timeout."""
    upstream.script(hang())
    timeout = aiohttp.ClientTimeout(sock_read=0.05)
    with anyio.fail_after(5), pytest.raises(aiohttp.ServerTimeoutError):
        async with session.post(chat_url(upstream), json=BODY, timeout=timeout) as resp:
            await resp.read()


async def test_close_wakes_hangs_and_long_delays(session: aiohttp.ClientSession) -> None:
    """close() ends hangs and ok(delay_s=...) waits at once instead of waiting them out."""
    outcomes: list[type[BaseException] | int] = []

    async def call(fake: FakeUpstream) -> None:
        try:
            async with session.post(chat_url(fake), json=BODY) as resp:
                outcomes.append(resp.status)
        except aiohttp.ClientConnectionError as exc:
            outcomes.append(type(exc))

    async with FakeUpstream() as fake:
        fake.script(hang(), ok(delay_s=3600))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, fake)
                await fake.wait_hanging()
                tg.start_soon(call, fake)
                while fake.completions < 2:  # the delayed request has no event to wait on
                    await anyio.lowlevel.checkpoint()
                await fake.close()
    assert sorted(map(str, outcomes)) == sorted(map(str, [aiohttp.ServerDisconnectedError, 200]))


async def test_reset_drops_the_connection_without_a_response(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """reset() makes the client fail with a connection error, not an HTTP status."""
    upstream.script(reset())
    with anyio.fail_after(5), pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(chat_url(upstream), json=BODY) as resp:
            await resp.read()
    assert (await post(session, upstream))[0] == 200


async def test_cut_stream_breaks_before_done(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """cut_stream(n) sends n content chunks, then the body breaks without [DONE]."""
    upstream.script(cut_stream(2, text="AABBCCDD", chunks=4))
    events: list[str] = []
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=STREAM_BODY) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_events(resp, events)
    assert "[DONE]" not in events
    deltas = [json.loads(event)["choices"][0]["delta"]["content"] for event in events]
    assert deltas == ["AA", "BB"]


async def test_stall_stream_goes_silent_until_released(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """stall_stream(n) sends n chunks, waits until release(), then breaks without [DONE]."""
    upstream.script(stall_stream(1))
    events: list[str] = []

    async def call() -> None:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(chat_url(upstream), json=STREAM_BODY) as resp:
                await read_events(resp, events)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await upstream.wait_hanging()
            upstream.release()
    assert len(events) == 1
    assert "[DONE]" not in events


@pytest.mark.parametrize(
    ("kind", "content_type", "raw"),
    [
        pytest.param("invalid_json", "application/json", b'{"choices": [', id="invalid_json"),
        pytest.param("wrong_shape", "application/json", b'{"result": "ok"}', id="wrong_shape"),
        pytest.param("empty", "application/json", b"", id="empty"),
    ],
)
async def test_garbage_bodies(
    upstream: FakeUpstream, session: aiohttp.ClientSession,
    kind: Any, content_type: str, raw: bytes,
) -> None:
    """garbage(kind) answers 200 with exactly that unusable body."""
    upstream.script(garbage(kind))
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=BODY) as resp:
            assert resp.status == 200
            assert resp.content_type == content_type
            assert await resp.read() == raw


async def test_garbage_html_page(upstream: FakeUpstream, session: aiohttp.ClientSession) -> None:
    """garbage("html", status=502) answers an HTML error page like a proxy would."""
    upstream.script(garbage("html", status=502))
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=BODY) as resp:
            assert resp.status == 502
            assert resp.content_type == "text/html"
            assert (await resp.text()).startswith("<html>")


async def test_garbage_truncated_body(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """garbage("truncated") promises a Content-Length it does not deliver."""
    upstream.script(garbage("truncated"))
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=BODY) as resp:
            assert resp.content_length is not None
            with pytest.raises(aiohttp.ClientPayloadError, match="content length"):
                await resp.read()


async def test_refuse_then_accept_on_the_same_port(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """refuse_connections() refuses even a client with a pooled connection; accept restores."""
    assert (await post(session, upstream))[0] == 200  # leaves a keep-alive connection pooled
    port = upstream.port
    await upstream.refuse_connections()
    with anyio.fail_after(5), pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.post(chat_url(upstream), json=BODY):
            pass
    assert isinstance(caught.value.os_error, ConnectionRefusedError)
    await upstream.accept_connections()
    assert upstream.port == port
    assert (await post(session, upstream))[0] == 200


async def test_refused_port_stays_reserved(upstream: FakeUpstream) -> None:
    """While refusing, nobody else can bind the port."""
    await upstream.refuse_connections()
    with socket.socket() as other, pytest.raises(OSError, match="in use") as caught:
        other.bind(("127.0.0.1", upstream.port))
    assert caught.value.errno == errno.EADDRINUSE


async def test_refuse_drops_a_hanging_request(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A request in flight when the server stops listening loses its connection."""
    upstream.script(hang())

    async def call() -> None:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(chat_url(upstream), json=BODY) as resp:
                await resp.read()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await upstream.wait_hanging()
            await upstream.refuse_connections()


async def test_api_key_is_enforced(session: aiohttp.ClientSession) -> None:
    """With api_key set, a wrong key gets 401 invalid_api_key and does not use the script."""
    async with FakeUpstream(api_key="sk-right") as fake:
        fake.script(error(503))
        status, data = await post(session, fake, headers={"Authorization": "Bearer sk-wrong"})
        assert (status, data["error"]["code"]) == (401, "invalid_api_key")
        assert (await post(session, fake))[0] == 401
        status, _ = await post(session, fake, headers={"Authorization": "Bearer sk-right"})
        assert status == 503
        assert fake.completions == 3


async def test_requests_are_recorded(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """Each completion request is recorded with its path, headers, parsed body and stream flag."""
    await post(session, upstream, headers={"Authorization": "Bearer k"})
    with anyio.fail_after(5):
        async with session.post(chat_url(upstream), json=STREAM_BODY) as resp:
            await resp.read()
        async with session.post(chat_url(upstream), data=b"not json") as resp:
            await resp.read()
    first, second, third = upstream.requests
    assert first.path == "/v1/chat/completions"
    assert first.body == BODY
    assert first.headers["authorization"] == "Bearer k"
    assert not first.stream
    assert second.stream
    assert third.body is None
    assert upstream.completions == 3
    assert upstream.health_requests == 0


async def test_chat_completions_without_v1_prefix(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """POST /chat/completions (a base URL without /v1) is served the same way."""
    url = f"http://127.0.0.1:{upstream.port}/chat/completions"
    with anyio.fail_after(5):
        async with session.post(url, json=BODY) as resp:
            assert resp.status == 200
    assert upstream.requests[0].path == "/chat/completions"


@pytest.mark.parametrize(
    "path", ["/v1/models", "/health", "/health/liveliness", "/v1/health"]
)
async def test_health_routes_answer_200_when_healthy(
    upstream: FakeUpstream, session: aiohttp.ClientSession, path: str
) -> None:
    """Every health route answers 200 by default and is counted."""
    with anyio.fail_after(5):
        async with session.get(f"http://127.0.0.1:{upstream.port}{path}") as resp:
            assert resp.status == 200
    assert upstream.health_requests == 1
    assert upstream.completions == 0


async def test_models_route_lists_models(session: aiohttp.ClientSession) -> None:
    """GET /v1/models answers OpenAI's list shape, owned by the fake's name."""
    async with FakeUpstream("beta", models=["m1", "m2"]) as fake:
        with anyio.fail_after(5):
            async with session.get(f"{fake.base_url}/models") as resp:
                data = await resp.json()
    assert data["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in data["data"]] == [
        ("m1", "model", "beta"), ("m2", "model", "beta")]


async def test_set_health_error_then_healthy(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """set_health(error(...)) makes health routes fail; set_health(None) heals them."""
    url = f"http://127.0.0.1:{upstream.port}/health"
    upstream.set_health(error(503))
    with anyio.fail_after(5):
        async with session.get(url) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["code"] == "overloaded"
        upstream.set_health(None)
        async with session.get(url) as resp:
            assert resp.status == 200
    assert (await post(session, upstream))[0] == 200, "health faults leave completions alone"


async def test_set_health_reset(upstream: FakeUpstream, session: aiohttp.ClientSession) -> None:
    """set_health(reset()) makes health checks fail with a connection error."""
    upstream.set_health(reset())
    with anyio.fail_after(5), pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(f"{upstream.base_url}/models") as resp:
            await resp.read()


async def test_set_health_hang(upstream: FakeUpstream, session: aiohttp.ClientSession) -> None:
    """set_health(hang()) leaves health checks unanswered until release()."""
    upstream.set_health(hang())

    async def call() -> None:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.get(f"{upstream.base_url}/health") as resp:
                await resp.read()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await upstream.wait_hanging()
            upstream.release()
            # aiohttp's client retries an idempotent request once after a
            # disconnect (RFC 9112 section 9.3.1), so the GET comes back.
            await upstream.wait_hanging()
            upstream.release()
    assert upstream.health_requests == 2


async def test_health_routes_check_the_api_key(session: aiohttp.ClientSession) -> None:
    """With api_key set, health routes also need the key."""
    async with FakeUpstream(api_key="sk-right") as fake:
        with anyio.fail_after(5):
            async with session.get(f"{fake.base_url}/models") as resp:
                assert resp.status == 401
            headers = {"Authorization": "Bearer sk-right"}
            async with session.get(f"{fake.base_url}/models", headers=headers) as resp:
                assert resp.status == 200


async def test_port_before_start_raises() -> None:
    """base_url and port are only known once the server has started."""
    with pytest.raises(RuntimeError):
        _ = FakeUpstream().base_url


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ok(chunks=0), id="ok-chunks-0"),
        pytest.param(lambda: cut_stream(3, chunks=2), id="cut-after-past-end"),
        pytest.param(lambda: stall_stream(-1), id="stall-negative"),
    ],
)
def test_impossible_faults_are_rejected(make: Any) -> None:
    """Faults that could not be served raise ValueError when built."""
    with pytest.raises(ValueError, match="chunks"):
        make()
