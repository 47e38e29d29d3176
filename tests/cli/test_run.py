"""The command line, run for real: ``run.py`` subprocesses on 127.0.0.1 with real SQLite files.

Every subprocess call has a timeout and every wait is bounded. Polling a
subprocess with short sleeps is the one way to wait for another process.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import pytest

from actors.testing import FakeUpstream, error, hang, ok
from tests.helpers import (
    COMPLETION,
    KEY_VARS,
    REPO,
    RUN,
    Output,
    clean_env,
    cli,
    fake_config,
    free_port,
    post_completion,
    primary_and_backup,
    serve_async,
    status_when,
    wait_ready,
)


def _assert_startup_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2 and a stderr of one ``error:`` line naming each of ``names`` (so no traceback)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0]
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory holding a copy of the default config.toml; its state goes to state/ there."""
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    return tmp_path


def _break_config(workdir: Path) -> None:
    text = (workdir / "config.toml").read_text()
    (workdir / "config.toml").write_text(text.replace("priority = 2", 'priority = "second"', 1))


# ---------------------------------------------------------------- check


def test_check_lists_the_default_providers_with_keys_not_set(workdir: Path) -> None:
    """``check`` on the default config shows three providers whose keys are unset, and exits 0."""
    result = cli(workdir, "check")
    assert result.returncode == 0, result.stderr
    for name, var in zip(("litellm", "kilocode", "openrouter"), KEY_VARS, strict=True):
        line = next(line for line in result.stdout.splitlines() if line.startswith(name))
        assert f"{var} NOT SET" in line
    assert "0 of 3 providers usable" in result.stdout


def test_check_never_prints_a_key(workdir: Path) -> None:
    """A set key shows as "set", never its value."""
    result = cli(workdir, "check", GROQ_API_KEY="sk-test-do-not-print")
    assert result.returncode == 0, result.stderr
    assert "GROQ_API_KEY set" in result.stdout
    assert "1 of 3 providers usable" in result.stdout
    assert "sk-test-do-not-print" not in result.stdout + result.stderr


def test_check_rejects_a_broken_config_in_one_line(workdir: Path) -> None:
    """A wrong value: exit 2 with one line naming the file and the key path."""
    _break_config(workdir)
    _assert_startup_error(cli(workdir, "check"), "config.toml", "providers[1] (kilocode).priority")


# ---------------------------------------------------------------- serve: startup failures


def test_serve_rejects_a_broken_config_in_one_line(workdir: Path) -> None:
    """serve with a wrong config value exits 2 with one line naming file and key."""
    _break_config(workdir)
    _assert_startup_error(cli(workdir, "--port", str(free_port())), "config.toml", "priority")


def test_serve_reports_a_missing_config_file(workdir: Path) -> None:
    """serve --config on a file that isn't there exits 2 naming it."""
    _assert_startup_error(cli(workdir, "serve", "--config", "nope.toml"), "nope.toml", "not found")


def test_serve_reports_a_port_in_use(workdir: Path) -> None:
    """serve on a port another socket listens on exits 2 with one line naming the port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli(workdir, "--port", str(port))
    _assert_startup_error(result, f":{port}", "in use")


def test_serve_reports_a_corrupt_state_file(workdir: Path) -> None:
    """serve on a state file full of garbage exits 2 with one line naming the path."""
    (workdir / "state").mkdir()
    (workdir / "state" / "fallback.db").write_bytes(b"\x00garbage\xff" * 512)
    _assert_startup_error(cli(workdir, "--port", str(free_port())), "state/fallback.db", "not a SQLite")


# ---------------------------------------------------------------- serve: running


def test_a_second_service_on_the_same_state_file_refuses_to_start(workdir: Path) -> None:
    """Two services never share a state file by accident: the second names the path and the owner's pid."""
    with running(workdir) as first:
        result = cli(workdir, "--port", str(free_port()))
        line = _assert_startup_error(result, "state/fallback.db", f"pid {first.proc.pid}")
        assert "in use" in line
        assert urllib.request.urlopen(f"{first.url}/healthz", timeout=5).status == 200  # the owner goes on


class Service:
    """``run.py serve`` in a subprocess (output to a file), killed if a test leaves it running."""

    def __init__(self, cwd: Path, *args: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = cwd / f"service-{port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, RUN, "serve", *args, "--port", str(port)],
                                         cwd=cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the service exited:\n{self.log}"
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                    assert resp.status == 200
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the service did not answer /healthz within {timeout} s:\n{self.log}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@contextmanager
def running(cwd: Path, *args: str) -> Iterator[Service]:
    service = Service(cwd, *args, port=free_port())
    try:
        service.wait_ready()
        yield service
    finally:
        service.close()


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, id="SIGTERM"),
                                 pytest.param(signal.SIGINT, id="SIGINT")])
def test_serve_without_keys_answers_503_and_stops_cleanly(workdir: Path, sig: int) -> None:
    """No keys: the service runs, says which variables to set, and a signal stops it with exit 0."""
    with running(workdir) as service:
        status, body = _post(f"{service.url}/v1/chat/completions", COMPLETION)
        assert status == 503
        assert body["error"]["code"] == "all_providers_failed"
        for var in KEY_VARS:
            assert var in body["error"]["message"]
        assert service.stop(sig) == 0, service.log
    log = service.log
    assert "provider litellm (priority 1): unconfigured: GROQ_API_KEY is not set" in log
    assert f"listening on {service.url}" in log
    assert "Traceback" not in log
    assert (workdir / "state" / "fallback.db").is_file()


def test_status_reads_the_service_or_else_the_state_file(workdir: Path) -> None:
    """``status`` prints the table from the running service, and from the SQLite file once it stopped."""
    port = free_port()
    (workdir / "config.toml").write_text(
        (workdir / "config.toml").read_text().replace("port = 8080", f"port = {port}", 1))
    service = Service(workdir, port=port)
    try:
        service.wait_ready()
        up = cli(workdir, "status")
        assert service.stop() == 0, service.log
    finally:
        service.close()
    down = cli(workdir, "status")
    for result in (up, down):
        assert result.returncode == 0, result.stderr
        row = next(line for line in result.stdout.splitlines() if line.startswith("kilocode"))
        assert "unconfigured (KILOCODE_API_KEY is not set)" in row
        assert "fallbacks in the last 24 h: 0" in result.stdout
    assert f"(from the service at http://127.0.0.1:{port})" in up.stdout
    assert "(service not running; from state/fallback.db)" in down.stdout
    raw = cli(workdir, "status", "--json")
    assert json.loads(raw.stdout)["providers"]["litellm"]["state"] == "unconfigured"


# ---------------------------------------------------------------- kill -9 durability


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_kill_9_keeps_the_cooldown(tmp_path: Path) -> None:
    """After kill -9 the restarted service still skips the cooling-down primary, until the same time."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    async with primary_and_backup() as (primary, backup, http):
        config = fake_config(tmp_path / "config.toml", primary, backup, port)
        async with serve_async(config, output) as process:
            await wait_ready(http, url, process, output)
            assert await post_completion(http, url) == "backup"
            before = (await status_when(http, url, "primary", "cooldown"))["providers"]["primary"]
            async with http.get(f"{url}/events") as resp:  # the gateway flushes the store for /events
                assert resp.status == 200
            process.kill()
        assert process.returncode == -signal.SIGKILL
        assert primary.completions == 1
        offline = await anyio.run_process([sys.executable, RUN, "status", "--config", str(config)],
                                          cwd=tmp_path, env=clean_env(), check=False)
        assert b"service not running" in offline.stdout, offline.stderr
        row = next(line for line in offline.stdout.splitlines() if line.startswith(b"primary"))
        assert b"cooldown" in row

        async with serve_async(config, output) as process:
            await wait_ready(http, url, process, output)
            after = (await status_when(http, url, "primary", "cooldown"))["providers"]["primary"]
            assert after["cooldown_until"] == before["cooldown_until"]
            assert after["last_error"]["category"] == "service_unavailable"
            assert await post_completion(http, url) == "backup"
            assert primary.completions == 1
            process.terminate()
        assert process.returncode == 0, str(output)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_state_change_the_caller_saw_survives_kill_9_at_once(tmp_path: Path) -> None:
    """kill -9 the instant a fallen-over answer arrives: after restart the primary is still cooling, every time."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    async with primary_and_backup() as (primary, backup, http):
        for round_ in range(5):  # bounded: five kills, each right after the answer
            state = tmp_path / f"round{round_}"
            state.mkdir()
            config = fake_config(state / "config.toml", primary, backup, port)
            async with serve_async(config, output) as process:
                await wait_ready(http, url, process, output)
                assert await post_completion(http, url) == "backup"
                process.kill()  # no /status, no /events first: nothing else flushes the store
            assert process.returncode == -signal.SIGKILL
            offline = await anyio.run_process([sys.executable, RUN, "status", "--config", str(config)],
                                              cwd=state, env=clean_env(), check=False)
            row = next(line for line in offline.stdout.splitlines() if line.startswith(b"primary"))
            assert b"cooldown" in row, (round_, offline.stdout.decode())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_providers_command_enables_and_probes_the_running_service(tmp_path: Path) -> None:
    """``run.py providers enable|probe NAME`` acts on the live service with the admin token, never printing it."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    token = "adm1n-t0ken-not-printed"
    async with FakeUpstream("primary", default=error(503)) as primary, \
            FakeUpstream("backup", default=ok("from backup")) as backup, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        config = fake_config(tmp_path / "config.toml", primary, backup, port)
        async with serve_async(config, output, FALLBACK_ADMIN_TOKEN=token) as process:
            await wait_ready(http, url, process, output)
            assert await post_completion(http, url) == "backup"
            await status_when(http, url, "primary", "cooldown")
            probed = await anyio.run_process(
                [sys.executable, RUN, "providers", "probe", "primary", "--config", str(config)],
                cwd=tmp_path, env=clean_env(FALLBACK_ADMIN_TOKEN=token), check=False)
            assert probed.returncode == 0, probed.stderr
            assert b"api check failed" in probed.stdout  # still 503: it stays out
            primary.set_default(ok("primary healed"))
            enabled = await anyio.run_process(
                [sys.executable, RUN, "providers", "enable", "primary", "--config", str(config)],
                cwd=tmp_path, env=clean_env(FALLBACK_ADMIN_TOKEN=token), check=False)
            assert enabled.returncode == 0, enabled.stderr
            assert enabled.stdout.strip() == b"primary: now healthy"
            assert await post_completion(http, url) == "primary"
            no_token = await anyio.run_process(
                [sys.executable, RUN, "providers", "disable", "primary", "--config", str(config)],
                cwd=tmp_path, env=clean_env(), check=False)
            assert no_token.returncode == 2
            assert b"FALLBACK_ADMIN_TOKEN" in no_token.stderr
            process.terminate()
        for result in (probed, enabled, no_token):
            assert token.encode() not in result.stdout + result.stderr
        assert token not in str(output)


async def _wait_refused(http: aiohttp.ClientSession, url: str) -> None:
    """Until the service refuses connections. A connection made as it closes may get no answer."""
    with anyio.fail_after(10):
        while True:
            try:
                async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=0.5)):
                    pass
            except aiohttp.ClientConnectorError:
                return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await anyio.sleep(0.02)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    """On SIGTERM the service stops listening, answers the request in flight, then exits 0."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    async with FakeUpstream("primary", default=ok("slow", delay_s=2)) as primary, \
            FakeUpstream("backup") as backup, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=10)) as http:
        config = fake_config(tmp_path / "config.toml", primary, backup, port)
        async with serve_async(config, output) as process, anyio.create_task_group() as tg:
            await wait_ready(http, url, process, output)
            answered: list[str] = []

            async def complete() -> None:
                answered.append(await post_completion(http, url))

            tg.start_soon(complete)
            with anyio.fail_after(10):
                while not primary.completions:  # noqa: ASYNC110 (the fake has no arrival event)
                    await anyio.sleep(0.01)
            process.terminate()
            await _wait_refused(http, url)
            assert not answered  # still in flight when the listener closed
        assert answered == ["primary"]
        assert process.returncode == 0, str(output)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    """A second SIGTERM does not wait for the grace period: the process exits now."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    async with FakeUpstream("primary", default=hang()) as primary, FakeUpstream("backup") as backup, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=10)) as http:
        config = fake_config(tmp_path / "config.toml", primary, backup, port, grace_s=60)
        async with serve_async(config, output) as process, anyio.create_task_group() as tg:
            await wait_ready(http, url, process, output)

            async def complete() -> None:
                with pytest.raises(aiohttp.ClientError):
                    await post_completion(http, url)

            tg.start_soon(complete)
            with anyio.fail_after(10):
                await primary.wait_hanging()
            process.terminate()
            await output.wait_for("SIGTERM: stopping")
            started = anyio.current_time()
            process.terminate()
            with anyio.fail_after(5):
                await process.wait()
        assert anyio.current_time() - started < 5
        assert process.returncode == 128 + signal.SIGTERM
        assert "SIGTERM again: exiting now" in str(output)


# ---------------------------------------------------------------- demo


def test_demo_shows_fallback_and_failback(tmp_path: Path) -> None:
    """``demo`` needs no keys and shows the whole cycle: fallback, cooldown, probe, failback."""
    result = cli(tmp_path, "demo", "--seconds", "8", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fallback: primary -> backup" in out
    assert "primary: healthy -> cooldown" in out
    assert "probe of primary: ok" in out
    failback = out.index("failback: primary recovered")
    assert "answered by primary" in out[failback:]
    assert "Traceback" not in result.stderr
