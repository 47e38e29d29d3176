"""The vertex and snowflake kinds' secrets (access tokens, JWTs, key files, the key passphrase)
appear in no view of the gateway, no stored event and no log line, even when an upstream echoes them."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

pytest.importorskip("google.auth")
pytest.importorskip("jwt")

from actors.testing import FakeSnowflake, FakeUpstream, FakeVertex, error
from tests.helpers import COMPLETION, service

pytestmark = pytest.mark.anyio
PASSPHRASE = "passphrase-very-secret"


async def test_cloud_credentials_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tokens, JWTs, private keys and the passphrase are in no /status, /metrics, /events, log or state file."""
    caplog.set_level(logging.DEBUG)
    vertex, snowflake, plain = FakeVertex("vertex"), FakeSnowflake("snowflake"), FakeUpstream("plain")
    sa_file = tmp_path / "sa.json"  # read at the first sign-in: written once the fake has its port
    key_file = snowflake.key_pair("svc", tmp_path / "rsa_key.p8", passphrase=PASSPHRASE)
    providers = {
        "vertex": {"kind": "vertex", "project": vertex.project, "location": vertex.location,
                   "credentials_file": str(sa_file)},
        "snowflake": {"kind": "snowflake", "user": "svc", "account": snowflake.account,
                      "private_key_file": str(key_file), "private_key_passphrase_env": "SF_PASSPHRASE"},
    }
    vertex.script(error(503))  # signed in, then overloaded: snowflake answers, signed in too
    async with service(tmp_path, vertex, snowflake, plain, env={"SF_PASSPHRASE": PASSPHRASE},
                       providers=providers) as s:
        vertex.service_account_file(sa_file)
        snowflake.now = s.clock.now  # JWTs are dated by the service's (virtual) clock
        status, headers, _ = await s.post("/v1/chat/completions", json=COMPLETION)
        assert (status, headers["x-fallback-provider"]) == (200, "snowflake")
        token = next(iter(vertex.tokens))
        jwt = snowflake.requests[0].headers["Authorization"].removeprefix("Bearer ")
        vertex.script(error(403, f"denied for Bearer {token}"))
        snowflake.script(error(401, f"JWT token is invalid: {jwt}"))
        status, headers, _ = await s.post("/v1/chat/completions", json=COMPLETION)
        assert (status, headers["x-fallback-provider"]) == (200, "plain")
        await anyio.wait_all_tasks_blocked()
        views = [(await s.get(path))[2] for path in ("/status", "/metrics", "/events?limit=1000")]
    stored = b"".join([await anyio.Path(p).read_bytes() async for p in anyio.Path(tmp_path).glob("state.db*")])
    assert b"attempt_failed" in stored
    key_lines = [line for text in (sa_file.read_text(), key_file.read_text())
                 for line in text.replace("\\n", "\n").splitlines() if len(line) > 40 and "-----" not in line]
    assert key_lines
    for secret in (token, jwt, PASSPHRASE, *key_lines[:3]):
        for view in views:
            assert secret.encode() not in view
        assert secret.encode() not in stored
        assert secret not in caplog.text
