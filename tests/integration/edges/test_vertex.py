"""The Vertex AI adapter against FakeVertex: google-auth's real service-account sign-in, the
OpenAI dialect on Vertex's paths, token refresh, and every documented error."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

pytest.importorskip("google.auth")

from actors.core.clock import SystemClock
from actors.core.config import ProviderConfig, parse_config
from actors.core.errors import ConfigError
from actors.edges.providers import make_adapter
from actors.edges.providers.base import UpstreamFailure, error_details
from actors.edges.providers.vertex import VertexAdapter
from actors.testing import FakeVertex, cut_stream, error, garbage, ok
from tests.helpers import HI, VERTEX_MODEL, vertex_provider

pytestmark = pytest.mark.anyio
BODY: dict[str, Any] = {"messages": HI}


class Clock:
    """A wall clock for the fake's token expiry that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    server = FakeVertex(now=Clock())
    async with server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield http


def provider(fake: FakeVertex, tmp_path: Path, **extra: Any) -> ProviderConfig:
    return parse_config({"providers": [vertex_provider(fake, tmp_path / "sa.json", **extra)]}, env={}).providers[0]


def adapter(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession, **extra: Any) -> VertexAdapter:
    made = make_adapter(provider(fake, tmp_path, **extra), session, SystemClock())
    assert isinstance(made, VertexAdapter)
    return made


async def failure(call: Any) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        await call
    return caught.value


# ---------------------------------------------------------------- answers


async def test_completion_signs_in_with_the_service_account(fake: FakeVertex, tmp_path: Path,
                                                            session: aiohttp.ClientSession) -> None:
    """A completion goes to the project's openapi path with a token google-auth fetched from the key's token_uri."""
    vertex = adapter(fake, tmp_path, session)
    raw = await vertex.complete(BODY, VERTEX_MODEL)
    assert b"Hello from fake" in raw
    sent = fake.requests[0]
    assert sent.path == "/v1/projects/test-project/locations/us-central1/endpoints/openapi/chat/completions"
    assert sent.headers["Authorization"].removeprefix("Bearer ") in fake.tokens
    assert sent.body is not None
    assert sent.body["model"] == VERTEX_MODEL
    assert fake.token_requests == 1


async def test_stream_is_openai_sse(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A streamed completion yields the OpenAI chunk payloads, signed in like the rest."""
    vertex = adapter(fake, tmp_path, session)
    async with vertex.stream(BODY, VERTEX_MODEL) as events:
        payloads = [p async for p in events]
    assert b"".join(payloads).count(b'"content"') >= 4
    assert fake.requests[0].stream


async def test_cut_stream_is_a_stream_cut(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A stream that breaks half-way is a stream_cut, as for every OpenAI-dialect provider."""
    fake.script(cut_stream(2))
    vertex = adapter(fake, tmp_path, session)
    with pytest.raises(UpstreamFailure) as caught:
        async with vertex.stream(BODY, VERTEX_MODEL) as events:
            async for _ in events:
                pass
    assert caught.value.kind == "stream_cut"


@pytest.mark.parametrize("as_list", [pytest.param(True, id="list"), pytest.param(False, id="object")])
@pytest.mark.parametrize(("status", "code"), [
    pytest.param(400, "INVALID_ARGUMENT", id="400"),
    pytest.param(401, "UNAUTHENTICATED", id="401"),
    pytest.param(403, "PERMISSION_DENIED", id="403"),
    pytest.param(404, "NOT_FOUND", id="404"),
    pytest.param(429, "RESOURCE_EXHAUSTED", id="429"),
    pytest.param(500, "INTERNAL", id="500"),
    pytest.param(503, "UNAVAILABLE", id="503"),
    pytest.param(504, "DEADLINE_EXCEEDED", id="504"),
])
async def test_documented_errors_keep_status_and_code(fake: FakeVertex, tmp_path: Path,
                                                      session: aiohttp.ClientSession, status: int, code: str,
                                                      as_list: bool) -> None:
    """Each of Vertex's error answers, as a list or a bare object, is an http failure with its status,
    Google's canonical code and Google's message."""
    fake.error_list = as_list
    fake.script(error(status))
    caught = await failure(adapter(fake, tmp_path, session).complete(BODY, VERTEX_MODEL))
    assert (caught.kind, caught.status, caught.code) == ("http", status, code)
    assert caught.message
    assert not caught.message.startswith(("[", "{"))


async def test_html_is_a_bad_response(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """An HTML page (a Google frontend's error page) is garbage, not a completion."""
    fake.script(garbage("html"))
    caught = await failure(adapter(fake, tmp_path, session).complete(BODY, VERTEX_MODEL))
    assert caught.kind == "bad_response"


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(b'[{"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}]',
                 ("Quota exceeded.", "RESOURCE_EXHAUSTED"), id="google-list"),
    pytest.param(b'{"error": {"code": 404, "message": "Not found.", "status": "NOT_FOUND"}}',
                 ("Not found.", "NOT_FOUND"), id="google-object"),
    pytest.param(b"[]", ("[]", None), id="empty-list"),
    pytest.param(b'{"error": {"message": "m", "type": "t", "code": "c"}}', ("m", "c"), id="openai"),
])
def test_error_details_reads_googles_shapes(body: bytes, expected: tuple[str, str | None]) -> None:
    """error_details takes the first error of Google's list form and its canonical status as the code."""
    assert error_details(body) == expected


async def test_other_project_is_not_found(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A provider pointed at another project gets Vertex's 404 (model_not_found to the classifier)."""
    vertex = adapter(fake, tmp_path, session, project="someone-else")
    caught = await failure(vertex.complete(BODY, VERTEX_MODEL))
    assert (caught.status, caught.code) == (404, "NOT_FOUND")


# ---------------------------------------------------------------- tokens


async def test_token_is_reused_while_it_has_time(fake: FakeVertex, tmp_path: Path,
                                                 session: aiohttp.ClientSession) -> None:
    """Calls share one token while it has more than the refresh margin left."""
    vertex = adapter(fake, tmp_path, session)
    for _ in range(3):
        await vertex.complete(BODY, VERTEX_MODEL)
    assert fake.token_requests == 1
    assert len({r.headers["Authorization"] for r in fake.requests}) == 1


async def test_token_is_refreshed_before_it_expires(fake: FakeVertex, tmp_path: Path,
                                                    session: aiohttp.ClientSession) -> None:
    """A token with less than five minutes left is replaced before a call uses it, while still valid."""
    fake.expires_in = 240  # under the 300 s margin: every call refreshes
    vertex = adapter(fake, tmp_path, session)
    await vertex.complete(BODY, VERTEX_MODEL)
    await vertex.complete(BODY, VERTEX_MODEL)
    first, second = (r.headers["Authorization"].removeprefix("Bearer ") for r in fake.requests)
    assert first != second
    assert fake.token_requests == 2
    assert fake.now() < fake.tokens[first]  # the first was still good when it was replaced


async def test_concurrent_calls_share_one_refresh(fake: FakeVertex, tmp_path: Path,
                                                  session: aiohttp.ClientSession) -> None:
    """Calls that all need a token at once wait for one refresh (a lock), not one each."""
    vertex = adapter(fake, tmp_path, session)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(vertex.complete, BODY, VERTEX_MODEL)
    assert (fake.completions, fake.token_requests, vertex.token.refreshes) == (5, 1, 1)


async def test_a_refused_token_is_replaced_on_the_next_call(fake: FakeVertex, tmp_path: Path,
                                                            session: aiohttp.ClientSession) -> None:
    """A token Vertex refuses as expired (401 UNAUTHENTICATED) fails that call; the next signs in again."""
    vertex = adapter(fake, tmp_path, session)
    await vertex.complete(BODY, VERTEX_MODEL)
    fake.expire_tokens()
    caught = await failure(vertex.complete(BODY, VERTEX_MODEL))
    assert (caught.status, caught.code) == (401, "UNAUTHENTICATED")
    await vertex.complete(BODY, VERTEX_MODEL)
    assert fake.token_requests == 2


async def test_refused_grant_is_an_auth_failure_naming_the_file(fake: FakeVertex, tmp_path: Path,
                                                                session: aiohttp.ClientSession) -> None:
    """A token endpoint refusing the service account is a 401 that names the credentials file, no secret."""
    fake.token_refusal = "Invalid JWT Signature."
    vertex = adapter(fake, tmp_path, session)
    caught = await failure(vertex.complete(BODY, VERTEX_MODEL))
    assert (caught.kind, caught.status) == ("http", 401)
    assert str(tmp_path / "sa.json") in caught.message
    assert "Invalid JWT Signature" in caught.message
    assert "PRIVATE KEY" not in caught.message
    assert caught.__cause__ is None
    assert fake.completions == 0


async def test_missing_credentials_file_is_an_auth_failure(fake: FakeVertex, tmp_path: Path,
                                                           session: aiohttp.ClientSession) -> None:
    """A credentials_file that is not there is a 401 naming it, at the first call (not at load)."""
    vertex = adapter(fake, tmp_path, session, credentials_file=str(tmp_path / "nowhere.json"))
    caught = await failure(vertex.complete(BODY, VERTEX_MODEL))
    assert caught.status == 401
    assert "nowhere.json" in caught.message


async def test_application_default_credentials(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without credentials_file, google-auth's application default credentials sign in."""
    table = vertex_provider(fake, tmp_path / "adc.json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", table.pop("credentials_file"))
    config = parse_config({"providers": [table]}, env={}).providers[0]
    vertex = make_adapter(config, session, SystemClock())
    await vertex.complete(BODY, VERTEX_MODEL)
    assert fake.token_requests == 1


async def test_unreachable_token_endpoint_is_a_connection_error(fake: FakeVertex, tmp_path: Path,
                                                                session: aiohttp.ClientSession) -> None:
    """A token endpoint that refuses connections is a connect failure, not an auth one."""
    vertex = adapter(fake, tmp_path, session)
    await fake.refuse_connections()
    caught = await failure(vertex.complete(BODY, VERTEX_MODEL))
    assert caught.kind == "connect"
    assert "credentials_file" in caught.message


# ---------------------------------------------------------------- health checks


async def test_check_signs_in_and_lists(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """check refreshes the token and GETs the openapi model list with it."""
    await adapter(fake, tmp_path, session).check()
    assert (fake.token_requests, fake.health_requests) == (1, 1)


async def test_check_fails_on_credentials_that_do_not_work(fake: FakeVertex, tmp_path: Path,
                                                           session: aiohttp.ClientSession) -> None:
    """check fails with the sign-in's 401 when the credentials are refused."""
    fake.token_refusal = "account disabled"
    caught = await failure(adapter(fake, tmp_path, session).check())
    assert caught.status == 401


async def test_ping_needs_no_token(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """ping is any HTTP answer: Vertex's 401 to a call without a token still proves it is up."""
    await adapter(fake, tmp_path, session).ping()
    assert fake.token_requests == 0


async def test_five_hundred_on_ping_fails_it(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A 5xx on the ping path fails the ping."""
    vertex = adapter(fake, tmp_path, session)
    await vertex.complete(BODY, VERTEX_MODEL)  # signed in, so the health route answers its fault
    fake.set_health(error(503))
    caught = await failure(vertex.check())
    assert caught.status == 503
    fake.set_health(ok())


async def test_a_missing_extra_is_a_config_error(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without google-auth, building a vertex provider is a ConfigError naming the pip command."""
    config = provider(fake, tmp_path)
    monkeypatch.delitem(sys.modules, "actors.edges.providers.vertex")
    monkeypatch.setitem(sys.modules, "google.auth", None)
    with pytest.raises(ConfigError, match=r"pip install 'provider-fallback\[vertex\]'"):
        make_adapter(config, session, SystemClock())


async def test_no_token_or_key_in_any_failure(fake: FakeVertex, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Failure messages and error bodies never hold the access token or the service account's key."""
    vertex = adapter(fake, tmp_path, session)
    await vertex.complete(BODY, VERTEX_MODEL)
    token = next(iter(fake.tokens))
    fake.script(error(400, f"echo: {token}"), error(403, f"echo: Bearer {token}"))
    seen = [await failure(vertex.complete(BODY, VERTEX_MODEL)) for _ in range(2)]
    key = (tmp_path / "sa.json").read_text()
    for caught in seen:
        assert token not in caught.message
        assert token.encode() not in caught.body
        assert "PRIVATE KEY" not in caught.message
        assert key not in caught.message
