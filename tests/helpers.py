"""Scaffolds shared by several test modules (nothing here is a test).

Paths of the checkout, the command line run as a child process, and the
waits that go with it. Every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import anyio
import anyio.abc
import openai
from openai.types.chat import ChatCompletionMessageParam

from actors.core.clock import VirtualClock
from actors.core.config import Config, parse_config
from actors.gateway import serve
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeSnowflake, FakeUpstream, FakeVertex, error, ok

REPO = Path(__file__).resolve().parent.parent
RUN = str(REPO / "run.py")
INCIDENTS = REPO / "tests" / "incidents"
KEY_VARS = ("GROQ_API_KEY", "KILOCODE_API_KEY", "OPENROUTER_API_KEY")
COMPLETION = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
HI = [{"role": "user", "content": "hi"}]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without provider keys or service secrets, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in KEY_VARS and k != "LITELLM_ENDPOINT" and not k.startswith("FALLBACK_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def cli(cwd: Path, *args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, RUN, *args], cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def providers_toml(primary: FakeUpstream, backup: FakeUpstream) -> str:
    """``[[providers]]`` tables for two started fakes: primary (priority 1) and backup (2), 5 s timeouts."""
    return "".join(f"""
[[providers]]
name = "{name}"
base_url = "{fake.base_url}"
priority = {priority}
timeout_s = 5
models = {{ chat = "fake-model" }}
""" for name, fake, priority in (("primary", primary, 1), ("backup", backup, 2)))


def fake_config(path: Path, primary: FakeUpstream, backup: FakeUpstream, port: int,
                grace_s: float = 2, cooldown_s: float = 600, max_cooldown_s: float = 3600,
                probe_tier: str = "api") -> Path:
    """Two fake providers, a ``cooldown_s`` cooldown after a 503, no scheduled health checks."""
    providers = providers_toml(primary, backup)
    path.write_text(f"""
[server]
port = {port}
shutdown_grace_s = {grace_s}

[state]
path = "{path.parent / 'state.db'}"

[routing]
max_cooldown_s = {max_cooldown_s}

[routing.cooldown_s]
service_unavailable = {cooldown_s}

[health]
ping_interval_s = 0
full_interval_s = 0
api_interval_s = 0
api_timeout_s = 2
probe_tier = "{probe_tier}"
{providers}""")
    return path


@asynccontextmanager
async def primary_and_backup() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream, aiohttp.ClientSession]]:
    """A primary answering 503, a backup answering "from backup", and a client for the service."""
    async with FakeUpstream("primary", default=error(503)) as primary, \
            FakeUpstream("backup", default=ok("from backup")) as backup, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield primary, backup, http


class Output:
    """A child process's output, collected as it arrives."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._grew = anyio.Event()

    def __str__(self) -> str:
        return self.data.decode(errors="replace")

    async def collect(self, stream: anyio.abc.ByteReceiveStream) -> None:
        async for chunk in stream:
            self.data.extend(chunk)
            self._grew.set()
            self._grew = anyio.Event()

    async def wait_for(self, text: str) -> None:
        with anyio.fail_after(10):
            while text.encode() not in self.data:
                await self._grew.wait()


@asynccontextmanager
async def serve_async(config: Path, output: Output, **env: str) -> AsyncIterator[anyio.abc.Process]:
    """``run.py --config config`` as a child process (``env`` added); its output collects in ``output``."""
    async with run_async(config.parent, output, "--config", str(config), **env) as process:
        yield process


@asynccontextmanager
async def run_async(cwd: Path, output: Output, *args: str, **env: str) -> AsyncIterator[anyio.abc.Process]:
    """``run.py *args`` as a child process in ``cwd``; its output collects in ``output``, and it is
    waited for (20 s at most) when the block ends, killed if it is still running then."""
    process = await anyio.open_process([sys.executable, RUN, *args], cwd=cwd,
                                       env=clean_env(**env), stdin=subprocess.DEVNULL,
                                       stderr=subprocess.STDOUT)
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None
            tg.start_soon(output.collect, process.stdout)
            yield process
            with anyio.fail_after(20):
                await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.aclose()


async def wait_ready(http: aiohttp.ClientSession, url: str, process: anyio.abc.Process,
                      output: Output) -> None:
    with anyio.fail_after(15):
        while True:
            assert process.returncode is None, str(output)
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await anyio.sleep(0.05)


async def status_when(http: aiohttp.ClientSession, url: str, provider: str, state: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            async with http.get(f"{url}/status") as resp:
                status: dict[str, Any] = await resp.json()
            if status["providers"][provider]["state"] == state:
                return status
            await anyio.sleep(0.05)


async def post_completion(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/v1/chat/completions", json=COMPLETION) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["x-fallback-provider"]


def require_tool(name: str, package: str) -> str:
    """The path of the system tool ``name``; skip where it is missing, but fail in CI (CI=true).

    CI installs every system package the tests need (``.ci/run``), so a
    missing tool there is a broken CI, never a reason to skip.
    """
    import shutil

    path = shutil.which(name)
    if path is None:
        missing(f"{name} is missing (Debian package {package})")
    return path


def missing(why: str) -> NoReturn:
    """Skip a test for a tool this machine lacks; in CI (CI=true), fail: .ci/run must install it."""
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why}: .ci/run must install it", pytrace=False)
    pytest.skip(why)


# ---------------------------------------------------------------- an embedded Supervisor on a virtual clock


def make_config(tmp_path: Path, *fakes: FakeUpstream, health: dict[str, Any] | None = None,
                env: dict[str, str] | None = None, **routing: Any) -> Config:
    return parse_config(
        {
            "state": {"path": str(tmp_path / "state.db")},
            # The second pass off: these tests count attempts of one pass (its own tests turn it on).
            "routing": {"second_pass_backoff_s": 0, **routing},
            # Early recovery probes off: these tests time the cooldown's own probe (tests of the
            # early ones turn them on).
            "health": health or {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0,
                                 "probe_min_interval_s": 0},
            "providers": [
                {"name": f.name, "base_url": f.base_url, "models": {"chat": f"{f.name}-model"},
                 "priority": i + 1, "timeout_s": 30}
                for i, f in enumerate(fakes)
            ],
        },
        env=env or {},
    )


@asynccontextmanager
async def running(tmp_path: Path, *names: str, **kw: Any) -> AsyncIterator[
        tuple[Supervisor, VirtualClock, list[FakeUpstream]]]:
    fakes = [FakeUpstream(n) for n in names]
    for f in fakes:
        await f.start()
    try:
        clock = VirtualClock()
        async with Supervisor(make_config(tmp_path, *fakes, **kw), clock=clock) as sup:
            yield sup, clock, fakes
    finally:
        for f in fakes:
            await f.close()


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


# ---------------------------------------------------------------- the gateway in the test's own loop

TIMEOUT_S = 5.0  # every fake provider's per-attempt timeout in a gateway test
SDK_HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@dataclass
class Service:
    url: str
    supervisor: Supervisor
    clock: VirtualClock
    stop: anyio.Event
    session: aiohttp.ClientSession

    def client(self, api_key: str = "x") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Mapping[str, str], bytes]:
        with anyio.fail_after(10):
            async with self.session.get(self.url + path, **kwargs) as resp:
                return resp.status, resp.headers, await resp.read()

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Mapping[str, str], Any]:
        with anyio.fail_after(10):
            async with self.session.post(self.url + path, **kwargs) as resp:
                return resp.status, resp.headers, await resp.json(content_type=None)


@asynccontextmanager
async def service(
    tmp_path: Path,
    *fakes: FakeUpstream,
    env: Mapping[str, str] | None = None,
    server: Mapping[str, Any] | None = None,
    routing: Mapping[str, Any] | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    health: Mapping[str, Any] | None = None,
) -> AsyncIterator[Service]:
    """Start the fakes, a Supervisor over them (priority in order) and the gateway on port 0.

    No scheduled health checks unless ``health`` turns some on (its keys go over that default).
    """
    async with AsyncExitStack() as stack:
        for fake in fakes:
            await stack.enter_async_context(fake)
        config = parse_config({
            "server": {"shutdown_grace_s": 5, **(server or {})},
            "state": {"path": str(tmp_path / "state.db")},
            "routing": {"second_pass_backoff_s": 0, **(routing or {})},
            "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, **(health or {})},
            "providers": [
                {"name": f.name, "base_url": f.base_url, "models": {"chat": f"{f.name}-model"},
                 "priority": i + 1, "timeout_s": TIMEOUT_S, **(providers or {}).get(f.name, {})}
                for i, f in enumerate(fakes)
            ],
        }, env=dict(env or {}))
        clock = VirtualClock()
        supervisor = await stack.enter_async_context(Supervisor(config, clock=clock))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        stop = anyio.Event()
        ready: list[str] = []
        async with anyio.create_task_group() as tg:
            started = anyio.Event()

            def on_ready(url: str) -> None:
                ready.append(url)
                started.set()

            tg.start_soon(lambda: serve(supervisor, host="127.0.0.1", port=0, on_ready=on_ready, stop=stop))
            with anyio.fail_after(10):
                await started.wait()
            try:
                yield Service(ready[0], supervisor, clock, stop, session)
            finally:
                stop.set()


async def read_stream(client: openai.AsyncOpenAI, parts: list[str]) -> None:
    """Stream a completion through the SDK, appending each content delta to ``parts``."""
    async with await client.chat.completions.create(model="chat", messages=SDK_HI, stream=True) as stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)


def two(tmp_path: Path, **kwargs: Any) -> Any:
    """The usual pair: primary ``a`` and fallback ``b``."""
    a, b = FakeUpstream("a"), FakeUpstream("b")
    return a, b, service(tmp_path, a, b, **kwargs)


# ---------------------------------------------------------------- the vertex and snowflake kinds' fakes

VERTEX_MODEL = "google/gemini-2.5-flash"
SNOWFLAKE_MODEL = "claude-3-5-sonnet"
SNOWFLAKE_USER = "fallback_svc"


def vertex_provider(fake: FakeVertex, key_file: Path, **extra: Any) -> dict[str, Any]:
    """A ``kind = "vertex"`` provider table signing in to a started ``fake`` with a new service
    account whose key is written to ``key_file``."""
    return {"name": fake.name, "kind": "vertex", "base_url": fake.base_url, "project": fake.project,
            "location": fake.location, "credentials_file": str(fake.service_account_file(key_file)),
            "models": {"chat": VERTEX_MODEL}, "timeout_s": 30, **extra}


def snowflake_provider(fake: FakeSnowflake, key_file: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A ``kind = "snowflake"`` provider table for a started ``fake``: key-pair auth with a new key
    written to ``key_file``, else its PAT from the variable SNOWFLAKE_PAT (the caller sets it)."""
    auth: dict[str, Any] = {"api_key_env": "SNOWFLAKE_PAT"} if key_file is None else {
        "user": SNOWFLAKE_USER, "account": fake.account.lower(),
        "private_key_file": str(fake.key_pair(SNOWFLAKE_USER, key_file))}
    return {"name": fake.name, "kind": "snowflake", "base_url": fake.base_url,
            "models": {"chat": SNOWFLAKE_MODEL}, "timeout_s": 30, **auth, **extra}


def providers_config(tmp_path: Path, *providers: dict[str, Any], env: Mapping[str, str] | None = None,
                     **routing: Any) -> Config:
    """Providers in priority order (as given) on make_config's quiet defaults: no second pass, no
    scheduled health checks, no early probes."""
    return parse_config({
        "state": {"path": str(tmp_path / "state.db")},
        "routing": {"second_pass_backoff_s": 0, **routing},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, "probe_min_interval_s": 0},
        "providers": [{"priority": i + 1, **p} for i, p in enumerate(providers)],
    }, env=dict(env or {}))


def openai_provider(fake: FakeUpstream) -> dict[str, Any]:
    """A plain ``kind = "openai"`` provider table for a FakeUpstream."""
    return {"name": fake.name, "base_url": fake.base_url, "models": {"chat": f"{fake.name}-model"},
            "timeout_s": 30}
