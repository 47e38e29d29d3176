"""The Snowflake Cortex adapter against FakeSnowflake: PATs, key-pair JWTs (signed, verified and
renewed on a clock the test moves), the OpenAI dialect on Cortex's paths, and Snowflake's errors."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytest.importorskip("jwt")

from actors.core.clock import VirtualClock
from actors.core.config import ProviderConfig, parse_config
from actors.core.errors import ConfigError
from actors.edges.providers import make_adapter
from actors.edges.providers.base import UpstreamFailure
from actors.edges.providers.snowflake import JWT_LIFETIME_S, SnowflakeAdapter, jwt_names
from actors.testing import FakeSnowflake, error
from tests.helpers import HI, SNOWFLAKE_MODEL, snowflake_provider

pytestmark = pytest.mark.anyio
BODY: dict[str, Any] = {"messages": HI}
PAT = "pat-very-secret-0123456789"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def fake(clock: VirtualClock) -> AsyncIterator[FakeSnowflake]:
    server = FakeSnowflake(pat=PAT, now=clock.now)
    async with server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield http


def provider(table: dict[str, Any], env: dict[str, str] | None = None) -> ProviderConfig:
    return parse_config({"providers": [table]}, env=env or {}).providers[0]


def keypair(fake: FakeSnowflake, tmp_path: Path, session: aiohttp.ClientSession, clock: VirtualClock,
            **extra: Any) -> SnowflakeAdapter:
    made = make_adapter(provider(snowflake_provider(fake, tmp_path / "rsa_key.p8", **extra)), session, clock)
    assert isinstance(made, SnowflakeAdapter)
    return made


def pat(fake: FakeSnowflake, session: aiohttp.ClientSession, clock: VirtualClock, value: str = PAT) -> SnowflakeAdapter:
    made = make_adapter(provider(snowflake_provider(fake), {"SNOWFLAKE_PAT": value}), session, clock)
    assert isinstance(made, SnowflakeAdapter)
    return made


async def failure(call: Any) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        await call
    return caught.value


# ---------------------------------------------------------------- programmatic access tokens


async def test_pat_is_a_bearer_token_with_its_type(fake: FakeSnowflake, session: aiohttp.ClientSession,
                                                   clock: VirtualClock) -> None:
    """A PAT goes as Bearer with the PROGRAMMATIC_ACCESS_TOKEN type, to the account's Cortex path."""
    raw = await pat(fake, session, clock).complete(BODY, SNOWFLAKE_MODEL)
    assert b"Hello from fake" in raw
    sent = fake.requests[0]
    assert sent.path == "/api/v2/cortex/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {PAT}"
    assert sent.headers["X-Snowflake-Authorization-Token-Type"] == "PROGRAMMATIC_ACCESS_TOKEN"


async def test_wrong_pat_is_a_401(fake: FakeSnowflake, session: aiohttp.ClientSession, clock: VirtualClock) -> None:
    """A PAT Snowflake does not know is a 401 in Snowflake's error shape, the PAT nowhere in it."""
    caught = await failure(pat(fake, session, clock, "pat-wrong-9876543210").complete(BODY, SNOWFLAKE_MODEL))
    assert (caught.kind, caught.status, caught.code) == ("http", 401, "390144")
    assert "pat-wrong-9876543210" not in caught.message


async def test_base_url_with_the_cortex_path_works_too(fake: FakeSnowflake, session: aiohttp.ClientSession,
                                                       clock: VirtualClock) -> None:
    """A base_url written as the OpenAI SDK examples write it (ending in /api/v2/cortex/v1) is the same."""
    table = {**snowflake_provider(fake), "base_url": fake.base_url + "/api/v2/cortex/v1"}
    adapter = make_adapter(provider(table, {"SNOWFLAKE_PAT": PAT}), session, clock)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    assert fake.requests[0].path == "/api/v2/cortex/v1/chat/completions"


# ---------------------------------------------------------------- key-pair JWTs


async def test_keypair_jwt_has_snowflakes_claims(fake: FakeSnowflake, tmp_path: Path,
                                                 session: aiohttp.ClientSession, clock: VirtualClock) -> None:
    """A key-pair JWT names ACCOUNT.USER (upper case) with the key's fingerprint, for at most an hour."""
    adapter = keypair(fake, tmp_path, session, clock)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    assert fake.requests[0].headers["X-Snowflake-Authorization-Token-Type"] == "KEYPAIR_JWT"
    (claims,) = fake.jwt_claims
    assert claims["sub"] == "MYORG-MYACCOUNT.FALLBACK_SVC"
    assert claims["iss"].startswith("MYORG-MYACCOUNT.FALLBACK_SVC.SHA256:")
    assert claims["iat"] == int(clock.now())
    assert claims["exp"] - claims["iat"] == JWT_LIFETIME_S <= 3600


@pytest.mark.parametrize(("account", "user", "expected"), [
    pytest.param("myorg-myaccount", "svc", ("MYORG-MYACCOUNT", "SVC"), id="org-account"),
    pytest.param("xy12345.us-east-1", "Svc", ("XY12345", "SVC"), id="locator-with-region"),
])
def test_jwt_names(account: str, user: str, expected: tuple[str, str]) -> None:
    """The claims' account is upper case, a locator without its region."""
    assert jwt_names(account, user) == expected


async def test_jwt_is_reused_then_renewed_before_it_expires(fake: FakeSnowflake, tmp_path: Path,
                                                            session: aiohttp.ClientSession,
                                                            clock: VirtualClock) -> None:
    """One JWT serves calls until it has less than five minutes left; then a new one is signed."""
    adapter = keypair(fake, tmp_path, session, clock)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    await clock.advance(JWT_LIFETIME_S - 301)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    assert adapter.jwt is not None
    assert adapter.jwt.signed == 1
    await clock.advance(2)  # 299 s left: renewed, though the old one would still pass
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    assert adapter.jwt.signed == 2
    assert len({r.headers["Authorization"] for r in fake.requests}) == 2


async def test_expired_jwt_is_refused(fake: FakeSnowflake, tmp_path: Path, session: aiohttp.ClientSession,
                                      clock: VirtualClock) -> None:
    """The fake refuses a JWT past its exp; the adapter's next call signs a new one."""
    adapter = keypair(fake, tmp_path, session, clock)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    fake.now = lambda: clock.now() + JWT_LIFETIME_S  # the server's clock runs an hour ahead
    caught = await failure(adapter.complete(BODY, SNOWFLAKE_MODEL))
    assert caught.status == 401
    fake.now = clock.now
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    assert adapter.jwt is not None
    assert adapter.jwt.signed == 2


async def test_unregistered_key_is_refused(fake: FakeSnowflake, tmp_path: Path, session: aiohttp.ClientSession,
                                           clock: VirtualClock) -> None:
    """A JWT signed with a key Snowflake does not have for the user is a 401."""
    table = snowflake_provider(fake, tmp_path / "rsa_key.p8")
    fake.key_pair("fallback_svc", tmp_path / "rotated.p8")  # the user's key is now another one
    caught = await failure(make_adapter(provider(table), session, clock).complete(BODY, SNOWFLAKE_MODEL))
    assert caught.status == 401


async def test_encrypted_key_with_its_passphrase(fake: FakeSnowflake, tmp_path: Path,
                                                 session: aiohttp.ClientSession, clock: VirtualClock) -> None:
    """An encrypted key opens with the passphrase from the variable private_key_passphrase_env names."""
    table = snowflake_provider(fake, tmp_path / "unused.p8", private_key_passphrase_env="SF_KEY_PASSPHRASE")
    table["private_key_file"] = str(fake.key_pair("fallback_svc", tmp_path / "enc.p8", passphrase="open sesame"))
    adapter = make_adapter(provider(table, {"SF_KEY_PASSPHRASE": "open sesame"}), session, clock)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    assert len(fake.jwt_claims) == 1


@pytest.mark.parametrize(("env", "expected"), [
    pytest.param({}, "SF_KEY_PASSPHRASE is not set", id="passphrase-unset"),
    pytest.param({"SF_KEY_PASSPHRASE": "wrong"}, "wrong passphrase", id="wrong-passphrase"),
])
async def test_key_that_cannot_be_opened_is_an_auth_failure(fake: FakeSnowflake, tmp_path: Path,
                                                            session: aiohttp.ClientSession, clock: VirtualClock,
                                                            env: dict[str, str], expected: str) -> None:
    """A key it cannot open is a 401 naming the file or the variable, never the key or passphrase."""
    table = snowflake_provider(fake, tmp_path / "unused.p8", private_key_passphrase_env="SF_KEY_PASSPHRASE")
    table["private_key_file"] = str(fake.key_pair("fallback_svc", tmp_path / "enc.p8", passphrase="open sesame"))
    caught = await failure(make_adapter(provider(table, env), session, clock).complete(BODY, SNOWFLAKE_MODEL))
    assert (caught.status, fake.completions) == (401, 0)
    assert expected in caught.message
    assert "enc.p8" in caught.message
    assert "open sesame" not in caught.message
    assert "PRIVATE KEY" not in caught.message


async def test_missing_key_file_is_an_auth_failure(fake: FakeSnowflake, tmp_path: Path,
                                                   session: aiohttp.ClientSession, clock: VirtualClock) -> None:
    """A private_key_file that is not there is a 401 naming it."""
    table = {**snowflake_provider(fake, tmp_path / "k.p8"), "private_key_file": str(tmp_path / "gone.p8")}
    caught = await failure(make_adapter(provider(table), session, clock).complete(BODY, SNOWFLAKE_MODEL))
    assert caught.status == 401
    assert "gone.p8" in caught.message


# ---------------------------------------------------------------- errors, checks


@pytest.mark.parametrize(("status", "retry_after", "expected_wait"), [
    pytest.param(400, None, None, id="400"),
    pytest.param(402, None, None, id="402-budget"),
    pytest.param(403, None, None, id="403"),
    pytest.param(404, None, None, id="404"),
    pytest.param(429, None, None, id="429"),
    pytest.param(429, 7, 7.0, id="429-retry-after"),
    pytest.param(500, None, None, id="500"),
    pytest.param(503, None, None, id="503"),
    pytest.param(504, None, None, id="504"),
])
async def test_snowflake_errors_keep_status_and_message(fake: FakeSnowflake, session: aiohttp.ClientSession,
                                                        clock: VirtualClock, status: int, retry_after: int | None,
                                                        expected_wait: float | None) -> None:
    """Snowflake's {"message", "code", "request_id"} errors are http failures with the status and message."""
    fake.script(error(status, retry_after=retry_after))
    caught = await failure(pat(fake, session, clock).complete(BODY, SNOWFLAKE_MODEL))
    assert (caught.kind, caught.status, caught.retry_after_s) == ("http", status, expected_wait)
    assert caught.message
    assert not caught.message.startswith("{")


async def test_check_lists_models_with_the_credentials(fake: FakeSnowflake, tmp_path: Path,
                                                       session: aiohttp.ClientSession, clock: VirtualClock) -> None:
    """check is an authenticated GET /api/v2/cortex/models."""
    await keypair(fake, tmp_path, session, clock).check()
    assert fake.health_requests == 1
    assert len(fake.jwt_claims) == 1


async def test_check_fails_on_a_bad_pat(fake: FakeSnowflake, session: aiohttp.ClientSession,
                                        clock: VirtualClock) -> None:
    """check fails with Snowflake's 401 for a PAT it refuses."""
    caught = await failure(pat(fake, session, clock, "pat-revoked-000000").check())
    assert caught.status == 401


async def test_ping_needs_no_credentials(fake: FakeSnowflake, tmp_path: Path, session: aiohttp.ClientSession,
                                         clock: VirtualClock) -> None:
    """ping is any HTTP answer under the Cortex path, signed in or not."""
    adapter = keypair(fake, tmp_path, session, clock)
    await adapter.ping()
    assert adapter.jwt is not None
    assert adapter.jwt.signed == 0


async def test_a_missing_extra_is_a_config_error(fake: FakeSnowflake, tmp_path: Path, session: aiohttp.ClientSession,
                                                 clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyJWT, building a snowflake provider is a ConfigError naming the pip command."""
    config = provider(snowflake_provider(fake, tmp_path / "k.p8"))
    monkeypatch.delitem(sys.modules, "actors.edges.providers.snowflake")
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ConfigError, match=r"pip install 'provider-fallback\[snowflake\]'"):
        make_adapter(config, session, clock)


async def test_no_jwt_in_any_failure(fake: FakeSnowflake, tmp_path: Path, session: aiohttp.ClientSession,
                                     clock: VirtualClock) -> None:
    """An upstream echoing the JWT back never gets it into the failure's message or body."""
    adapter = keypair(fake, tmp_path, session, clock)
    await adapter.complete(BODY, SNOWFLAKE_MODEL)
    token = fake.requests[0].headers["Authorization"].removeprefix("Bearer ")
    fake.script(error(400, f"bad request from {token}"))
    caught = await failure(adapter.complete(BODY, SNOWFLAKE_MODEL))
    assert token not in caught.message
    assert token.encode() not in caught.body
