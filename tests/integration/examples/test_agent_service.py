"""The worked example (examples/agent_service.py) end to end: the original plan's check.

The primary has an invalid key (it answers 401), the fallback answers: the agent's tool call and its
final answer both come from the fallback, the tool really ran, and the primary is out of routing for
an auth failure (not tried again by the agent's second model call).
"""

from __future__ import annotations

import os
import socket
from importlib.util import find_spec
from pathlib import Path

import aiohttp
import anyio
import pytest

from actors.core.config import parse_config
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, ok

if find_spec("langchain_core") is None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError("langchain-core is missing: .ci/run must install the langchain extra")
    pytest.skip("the example needs the langchain extra", allow_module_level=True)

from examples.agent_service import create_app

pytestmark = pytest.mark.anyio


async def test_invalid_primary_key_the_fallback_runs_the_agent(tmp_path: Path) -> None:
    primary = FakeUpstream("primary", api_key="the-right-key")
    backup = FakeUpstream("backup")
    backup.script(ok('{"city": "Paris"}', tool="get_weather"), ok("It is sunny in Paris, 21 °C."))
    async with primary, backup:
        config = parse_config({
            "state": {"path": str(tmp_path / "state.db")},
            "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0},
            "providers": [
                {"name": "primary", "base_url": primary.base_url, "api_key_env": "PRIMARY_KEY",
                 "models": {"chat": "p-model"}, "priority": 1},
                {"name": "backup", "base_url": backup.base_url, "models": {"chat": "b-model"}, "priority": 2},
            ],
        }, env={"PRIMARY_KEY": "sk-wrong-key"})
        async with Supervisor(config) as supervisor:
            runner = aiohttp.web.AppRunner(create_app(supervisor))
            await runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            site = aiohttp.web.SockSite(runner, sock)
            await site.start()
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            try:
                async with aiohttp.ClientSession() as session:
                    with anyio.fail_after(20):
                        async with session.post(url + "/ask",
                                                json={"question": "What is the weather in Paris?"}) as resp:
                            assert resp.status == 200
                            answer = await resp.json()
                        async with session.post(url + "/ask", data=b"not json") as resp:
                            assert resp.status == 400
                        async with session.get(url + "/status") as resp:
                            status = await resp.json()
            finally:
                await runner.cleanup()
    assert answer["answer"] == "It is sunny in Paris, 21 °C."
    assert (answer["provider"], answer["steps"]) == ("backup", 2)
    assert answer["providers_tried"] == ["primary", "backup", "backup"]
    # The tool ran: its result is what the fallback was given in the agent's second call.
    second = backup.requests[1].body or {}
    tool_messages = [m for m in second["messages"] if m.get("role") == "tool"]
    assert [m["content"] for m in tool_messages] == ["sunny, 21 °C"]
    assert second["tools"][0]["function"]["name"] == "get_weather"
    assert primary.completions == 1  # 401 once: out of routing, the second call went straight to backup
    assert status["providers"]["primary"]["state"] in ("unhealthy", "cooldown")
    assert status["providers"]["primary"]["last_error"]["category"] == "auth_failure"
    assert "sk-wrong-key" not in str(status)
