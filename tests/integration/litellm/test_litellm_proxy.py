"""A real LiteLLM proxy (``litellm --config``, litellm[proxy]==1.106.2) as our primary provider.

One proxy for the module (it takes ~15 s to start): no database, a master
key, one model answering with ``mock_response``, so nothing leaves
127.0.0.1. Its own 400s (a key that is not its master key: "No connected
db."; a model not in its model_list) are failed over to the secondary, a
FakeUpstream, and take it out of routing; a healthy proxy's mock answer,
whole or streamed, comes through us intact. The bodies it sends are
recorded in ``litellm-1.106.2-bodies.json``.

LiteLLM comes with the ``litellm-test`` extra, which .ci/run installs: where
it is missing these tests skip, but in CI (CI=true) they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.core.config import Config, parse_config
from actors.policy.proxy_faults import proxy_fault
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, ok
from tests.helpers import HI, SDK_HI, Service, free_port, missing, read_stream, service

pytestmark = pytest.mark.anyio

VERSION = "1.106.2"  # pyproject.toml's litellm-test pin
MODEL = "groq-70b"  # the name config.toml asks its LiteLLM for
MISSING = "groq-missing"  # a name not in the proxy's model_list
LIMITED, LIMITED_RPM = "groq-limited", 3  # a model with an rpm in the proxy's model_list
MOCK_TEXT = "Hello from the LiteLLM mock: every word of it came through."
KEY_ENV = "LITELLM_TEST_KEY"
WRONG_KEY = "sk-not-the-master-key"
BACKUP_TEXT = "from backup"
READY_WITHIN_S = 120.0  # ~15 s on an idle 2-core machine; CI runs other things beside it
RECORDED: list[dict[str, Any]] = json.loads(
    Path(__file__).with_name(f"litellm-{VERSION}-bodies.json").read_text())["answers"]
# LiteLLM fetches these at start unless told to use its packaged copies (litellm/__init__.py and friends).
_LOCAL_COPIES = ("MODEL_COST_MAP", "ANTHROPIC_BETA_HEADERS", "AUTOROUTER_PRESETS", "BLOG_POSTS",
                 "POLICY_TEMPLATES")


@dataclass(frozen=True)
class LiteLLM:
    url: str
    master_key: str
    log: Path

    def key(self, which: str) -> str:
        """The key a recorded answer was asked with: ``master`` or ``wrong``."""
        return self.master_key if which == "master" else WRONG_KEY


def _litellm_executable() -> str:
    """The ``litellm`` command of this interpreter's environment; skip where missing, but fail in CI.

    As ``tests.helpers.require_tool`` does for system tools: CI installs the
    ``litellm-test`` extra, so a missing LiteLLM there is a broken CI.
    """
    found = shutil.which("litellm", path=str(Path(sys.executable).parent)) or shutil.which("litellm")
    if found is None:
        missing(f"litellm is missing (pip install -e '.[litellm-test]', litellm[proxy]=={VERSION})")
    return found


def _litellm_config(master_key: str) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": MODEL, "litellm_params": {
            # mock_response answers before any call is made; were one made, it would fail on loopback.
            "model": "openai/mock-70b", "api_key": "sk-mock", "api_base": "http://127.0.0.1:9/v1",
            "mock_response": MOCK_TEXT,
        }}, {"model_name": LIMITED, "litellm_params": {  # a deployment with an rpm: LiteLLM says what is left
            "model": "openai/mock-8b", "api_key": "sk-mock", "api_base": "http://127.0.0.1:9/v1",
            "mock_response": MOCK_TEXT, "rpm": LIMITED_RPM,
        }}],
        "litellm_settings": {"telemetry": False, "suppress_debug_info": True},
        "general_settings": {"master_key": master_key, "disable_spend_logs": True},
    }


def _litellm_env(home: Path) -> dict[str, str]:
    """A bare environment: no key of ours or anyone's, nothing to fetch at start, no way off loopback."""
    dead = "http://127.0.0.1:9"  # discard port, closed: a stray outbound request fails at once, locally
    return {
        "PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # DEV mode (the default) loads a .env found above LiteLLM's own files: a checkout's real keys.
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "True",
        **{f"LITELLM_LOCAL_{name}": "True" for name in _LOCAL_COPIES},
        "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead, "NO_PROXY": "127.0.0.1,localhost",
    }


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``/health/readiness`` answers 200; fail (with its log) if it exits or takes too long."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to loopback
    deadline = time.monotonic() + READY_WITHIN_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"litellm exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with opener.open(f"{url}/health/readiness", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"litellm not ready within {READY_WITHIN_S:g} s:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def litellm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLM]:
    """``litellm --config`` on a free loopback port, for the whole module; stopped after it."""
    exe = _litellm_executable()
    home = tmp_path_factory.mktemp("litellm")
    master_key = "sk-litellm-test-" + secrets.token_hex(8)
    config = home / "litellm.yaml"
    config.write_text(json.dumps(_litellm_config(master_key), indent=1))  # JSON is YAML
    url = f"http://127.0.0.1:{free_port()}"
    log = home / "litellm.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [exe, "--config", str(config), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
             "--num_workers", "1"],
            cwd=home, env=_litellm_env(home), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, process, log)
        yield LiteLLM(url, master_key, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _gateway(tmp_path: Path, proxy: LiteLLM, *, key: str, model: str = MODEL) -> Any:
    """Our gateway over LiteLLM (priority 1, asked for ``model``) and a FakeUpstream ``backup``.

    ``service()`` makes a provider of each fake it starts: the one named
    litellm is a stand-in whose base_url is replaced by the real proxy's.
    """
    stand_in, backup = FakeUpstream("litellm"), FakeUpstream("backup", default=ok(BACKUP_TEXT))
    litellm_provider = {"base_url": proxy.url, "api_key_env": KEY_ENV, "models": {"chat": model},
                        "health_path": "/health/liveliness"}
    return stand_in, backup, service(tmp_path, stand_in, backup, env={KEY_ENV: key},
                                     providers={"litellm": litellm_provider})


def _config(tmp_path: Path, proxy: LiteLLM, backup: FakeUpstream, *, key: str,
            health: dict[str, Any]) -> Config:
    """An embedded Supervisor's config: LiteLLM first, then ``backup``; ``health`` as given."""
    return parse_config({
        "state": {"path": str(tmp_path / "state.db")},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0,
                   "probe_min_interval_s": 0, **health},
        "providers": [
            {"name": "litellm", "base_url": proxy.url, "api_key_env": KEY_ENV, "models": {"chat": MODEL},
             "health_path": "/health/liveliness", "priority": 1, "timeout_s": 30},
            {"name": "backup", "base_url": backup.base_url, "models": {"chat": "backup-model"},
             "priority": 2, "timeout_s": 30},
        ],
    }, env={KEY_ENV: key})


async def _events(s: Service, query: str) -> list[dict[str, Any]]:
    status, _, body = await s.get(f"/events?{query}")
    assert status == 200, body
    events: list[dict[str, Any]] = json.loads(body)["events"]
    return events


# ---------------------------------------------------------------- what LiteLLM itself answers


@pytest.mark.parametrize("answer", [pytest.param(a, id=a["id"]) for a in RECORDED])
async def test_litellm_still_answers_the_recorded_body(litellm: LiteLLM, answer: dict[str, Any]) -> None:
    """The running proxy sends, status and body, exactly what is recorded for this fault."""
    headers = {"Authorization": f"Bearer {litellm.key(answer['key'])}"}
    body = {"model": answer["model"], "messages": HI, "stream": answer["stream"]} if answer["method"] == "POST" \
        else None
    with anyio.fail_after(30):
        async with aiohttp.ClientSession() as http, \
                http.request(answer["method"], litellm.url + answer["path"], json=body, headers=headers) as resp:
            got = (resp.status, await resp.json(content_type=None))
    assert got == (answer["status"], answer["body"])


@pytest.mark.parametrize("answer", [pytest.param(a, id=a["id"]) for a in RECORDED])
def test_each_recorded_body_is_a_known_proxy_fault(answer: dict[str, Any]) -> None:
    """actors/policy/proxy_faults.py recognises each recorded message as the proxy's own fault."""
    fault = proxy_fault(answer["body"]["error"]["message"])
    assert fault is not None, answer["body"]
    assert fault.category == answer["category"]


# ---------------------------------------------------------------- its 400s are failed over


@pytest.mark.parametrize("streamed", [pytest.param(False, id="json"), pytest.param(True, id="stream")])
async def test_a_wrong_master_key_falls_over_to_the_secondary(tmp_path: Path, litellm: LiteLLM,
                                                              streamed: bool) -> None:
    """LiteLLM's "No connected db." 400 is failed over: backup answers and LiteLLM leaves routing."""
    stand_in, _, svc = _gateway(tmp_path, litellm, key=WRONG_KEY)
    async with svc as s:
        client = s.client()
        with anyio.fail_after(60):
            if streamed:
                parts: list[str] = []
                await read_stream(client, parts)
                text = "".join(parts)
            else:
                raw = await client.chat.completions.with_raw_response.create(model="chat", messages=SDK_HI)
                assert (raw.headers["x-fallback-provider"], raw.headers["x-fallback-attempts"]) == ("backup", "2")
                text = raw.parse().choices[0].message.content or ""
        assert text == BACKUP_TEXT
        assert await s.supervisor.wait_for_state("litellm", "cooldown") == "cooldown"
        _, _, body = await s.get("/status")
        last_error = json.loads(body)["providers"]["litellm"]["last_error"]
        assert (last_error["category"], last_error["status"]) == ("auth_failure", 400)
        assert "No connected db" in last_error["message"]
        verdicts = await _events(s, "type=error_classified&provider=litellm")
        assert [(e["data"]["category"], e["data"]["status"]) for e in verdicts] == [("auth_failure", 400)]
        with anyio.fail_after(30):  # out of routing: the next request goes straight to backup
            again = await client.chat.completions.with_raw_response.create(model="chat", messages=SDK_HI)
        assert (again.headers["x-fallback-provider"], again.headers["x-fallback-attempts"]) == ("backup", "1")
        await client.close()
    assert stand_in.completions == 0  # every litellm attempt went to the real proxy


async def test_an_invalid_model_name_falls_over_to_the_secondary(tmp_path: Path, litellm: LiteLLM) -> None:
    """LiteLLM's "Invalid model name passed in model=groq-missing" 400 is failed over as model_not_found."""
    _, _, svc = _gateway(tmp_path, litellm, key=litellm.master_key, model=MISSING)
    async with svc as s:
        client = s.client()
        with anyio.fail_after(60):
            raw = await client.chat.completions.with_raw_response.create(model="chat", messages=SDK_HI)
        await client.close()
        assert raw.headers["x-fallback-provider"] == "backup"
        assert raw.parse().choices[0].message.content == BACKUP_TEXT
        assert await s.supervisor.wait_for_state("litellm", "cooldown") == "cooldown"
        failures = await _events(s, "type=attempt_failed&provider=litellm")
        assert [(e["data"]["status"], MISSING in e["data"]["message"]) for e in failures] == [(400, True)]
        verdicts = await _events(s, "type=error_classified&provider=litellm")
        assert [e["data"]["category"] for e in verdicts] == ["model_not_found"]


# ---------------------------------------------------------------- a healthy LiteLLM answers through us


async def test_a_healthy_litellm_answers_with_its_mock(tmp_path: Path, litellm: LiteLLM) -> None:
    """With the master key, LiteLLM's mock_response is our answer, from litellm, in one attempt."""
    _, backup, svc = _gateway(tmp_path, litellm, key=litellm.master_key)
    async with svc as s:
        client = s.client()
        with anyio.fail_after(60):
            raw = await client.chat.completions.with_raw_response.create(model="chat", messages=SDK_HI)
        await client.close()
        assert (raw.headers["x-fallback-provider"], raw.headers["x-fallback-attempts"]) == ("litellm", "1")
        assert raw.parse().choices[0].message.content == MOCK_TEXT
        assert s.supervisor.state_of("litellm") == "healthy"
    assert backup.completions == 0


async def test_a_healthy_litellm_streams_its_whole_mock(tmp_path: Path, litellm: LiteLLM) -> None:
    """Streamed through us, every piece of LiteLLM's mock_response arrives, in order."""
    _, backup, svc = _gateway(tmp_path, litellm, key=litellm.master_key)
    async with svc as s:
        client = s.client()
        parts: list[str] = []
        with anyio.fail_after(60):
            await read_stream(client, parts)
        await client.close()
        assert s.supervisor.state_of("litellm") == "healthy"
    assert "".join(parts) == MOCK_TEXT
    assert len(parts) > 1  # LiteLLM sends a mock in small pieces: this was a real stream
    assert backup.completions == 0


# ---------------------------------------------------------------- its health checks


@pytest.mark.parametrize(("tier", "interval_s"), [pytest.param("full", 60, id="full"),
                                                  pytest.param("api", 300, id="api")])
async def test_a_scheduled_check_with_the_wrong_key_takes_litellm_out(tmp_path: Path, litellm: LiteLLM,
                                                                     tier: str, interval_s: float) -> None:
    """A full (GET /models) or api (1-token completion) check meets "No connected db.": out of routing."""
    async with FakeUpstream("backup", default=ok(BACKUP_TEXT)) as backup:
        clock = VirtualClock()
        health = {f"{tier}_interval_s": interval_s}
        async with Supervisor(_config(tmp_path, litellm, backup, key=WRONG_KEY, health=health),
                              clock=clock) as sup:
            await clock.advance(interval_s + 1)
            assert await sup.wait_for_state("litellm", "cooldown", within_s=30) == "cooldown"
            last_error = sup.status()["providers"]["litellm"]["last_error"]
            assert (last_error["category"], last_error["status"]) == ("auth_failure", 400)
            with anyio.fail_after(30):
                reply = await sup.chat(HI)
    assert (reply.provider, reply.attempts, reply.text) == ("backup", 1, BACKUP_TEXT)


async def test_an_admin_probe_with_the_wrong_key_takes_litellm_out(tmp_path: Path, litellm: LiteLLM) -> None:
    """Supervisor.probe runs the api check now; LiteLLM's 400 fails it and cools the provider."""
    async with FakeUpstream("backup", default=ok(BACKUP_TEXT)) as backup:
        async with Supervisor(_config(tmp_path, litellm, backup, key=WRONG_KEY, health={}),
                              clock=VirtualClock()) as sup:
            with anyio.fail_after(30):
                result = await sup.probe("litellm")
            assert (result["tier"], result["ok"], result["status"]) == ("api", False, 400)
            assert "No connected db" in result["message"]
            assert result["state"] == "cooldown"


@pytest.mark.parametrize("tier", ["ping", "full", "api"])
async def test_each_check_of_a_healthy_litellm_passes(tmp_path: Path, litellm: LiteLLM, tier: str) -> None:
    """With the master key every tier passes (ping on /health/liveliness, as config.toml sets it)."""
    async with FakeUpstream("backup") as backup:
        health = {"probe_tier": tier}
        async with Supervisor(_config(tmp_path, litellm, backup, key=litellm.master_key, health=health),
                              clock=VirtualClock()) as sup:
            with anyio.fail_after(30):
                result = await sup.probe("litellm")
    assert (result["tier"], result["ok"], result["state"]) == (tier, True, "healthy"), result


# ---------------------------------------------------------------- its rate-limit headers


async def test_litellm_s_rate_limit_headers_send_the_rest_elsewhere(tmp_path: Path, litellm: LiteLLM) -> None:
    """LiteLLM in front of a deployment with rpm = 3 answers with x-ratelimit-remaining-requests
    (2, 1, 0, then below zero: it counts per wall-clock minute, and the module's proxy is shared by
    this test's runs) and no reset. Once it reports 0 left, we send the rest to the backup for a
    minute, before LiteLLM or its provider has to refuse anything; before that, LiteLLM answers."""
    stand_in, _, svc = _gateway(tmp_path, litellm, key=litellm.master_key, model=LIMITED)
    async with svc as s:
        client = s.client()
        served, left = [], []
        for _ in range(5):
            raw = await client.chat.completions.with_raw_response.create(model="chat", messages=SDK_HI)
            served.append(raw.headers["x-fallback-provider"])
            headroom = s.supervisor.status()["providers"]["litellm"]["headroom"]
            left.append(headroom[0]["reported"]["requests"]["remaining"] if headroom else None)
        await client.close()
        _, _, doc = await s.get("/status")
    first_backup = served.index("backup")  # LiteLLM reported 0 left within 3 answers
    assert served == ["litellm"] * first_backup + ["backup"] * (5 - first_backup), served
    assert left[first_backup - 1] == 0 and all(n is not None and n > 0 for n in left[:first_backup - 1])
    assert stand_in.completions == 0
    litellm_view = json.loads(doc)["providers"]["litellm"]
    assert litellm_view["headroom"][0]["reported"]["requests"] == {
        "limit": LIMITED_RPM, "remaining": 0, "resets_in_s": 60.0}
    assert litellm_view["state"] == "healthy"  # skipped, not failing
