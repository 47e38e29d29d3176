"""The skill's log directory: fallback_events.jsonl and provider_metrics.json, real files in tmp_path."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.core.clock import VirtualClock
from actors.core.config import Config, load_config, parse_config
from actors.core.errors import ConfigError
from actors.core.messages import FallbackTriggered
from actors.edges.log_files import LineLog
from actors.runtime.fallback_log import EVENTS_FILE, METRICS_FILE
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error
from tests.helpers import HI, REPO

pytestmark = pytest.mark.anyio
SKILL_FIELDS = {"timestamp", "from_provider", "to_provider", "reason", "error_message", "recovery_time_seconds"}
SUMMARY_FIELDS = {"requests_total", "requests_success", "requests_failed", "avg_latency_ms", "p95_latency_ms",
                  "uptime_percent", "current_status"}


def _raw(tmp_path: Path, fakes: list[FakeUpstream], logs: Path | str, primary: dict[str, Any],
         **logging_keys: Any) -> dict[str, Any]:
    return {
        "state": {"path": str(tmp_path / "state.db")},
        "routing": {"second_pass_backoff_s": 0},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, "probe_min_interval_s": 0},
        "metrics": {"persist_interval_s": logging_keys.pop("persist_interval_s", 60)},
        "logging": {"fallback_log_dir": str(logs), **logging_keys},
        "providers": [{"name": f.name, "base_url": f.base_url, "models": {"chat": f"{f.name}-model"},
                       "priority": i + 1, "timeout_s": 30, **(primary if i == 0 else {})}
                      for i, f in enumerate(fakes)],
    }


@asynccontextmanager
async def _running(tmp_path: Path, logs: Path | str, *, env: dict[str, str] | None = None,
                   provider: dict[str, Any] | None = None, **logging_keys: Any) -> AsyncIterator[
        tuple[Supervisor, VirtualClock, FakeUpstream]]:
    """Providers ``a`` (the primary, returned) and ``b`` under a Supervisor writing its log to ``logs``."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        config = parse_config(_raw(tmp_path, [a, b], logs, provider or {}, **logging_keys), env=env or {})
        clock = VirtualClock()
        async with Supervisor(config, clock=clock) as sup:
            yield sup, clock, a


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """The file's lines once it has ``count`` (written on a worker thread: polled, bounded)."""
    with anyio.fail_after(5):
        while len(lines := _read(path)) < count:  # noqa: ASYNC110 (a worker thread's file has no event)
            await anyio.sleep(0.01)
    return lines


def _fallback(i: int) -> FallbackTriggered:
    return FallbackTriggered(at=1_800_000_000.0 + i, request_id=f"req-{i}", from_provider="a", to_provider="b",
                             category="rate_limit", reason=f"HTTP 429: slow down #{i}")


async def test_a_fallback_appends_one_line_with_the_skills_fields(tmp_path: Path) -> None:
    """One fallback is one line, while serving: the skill's fields, the category as reason, the request id."""
    logs = tmp_path / "logs"
    async with _running(tmp_path, logs) as (sup, clock, a):
        a.script(error(503, "upstream overloaded"))
        assert (await sup.chat(HI)).provider == "b"
        [line] = await _wait_for_lines(logs / EVENTS_FILE, 1)
        await sup.refresh()
        request_id = sup.status()["recent_fallbacks"][-1]["request_id"]
        assert line.keys() == SKILL_FIELDS | {"event", "request_id"}
        assert (line["event"], line["from_provider"], line["to_provider"], line["reason"]) == (
            "fallback", "a", "b", "service_unavailable")
        assert "upstream overloaded" in line["error_message"]
        assert (line["request_id"], line["recovery_time_seconds"]) == (request_id, None)
        moment = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert moment.utcoffset() == dt.timedelta(0)
        assert line["timestamp"].endswith("Z")
        assert moment.timestamp() == pytest.approx(clock.now(), abs=1)
    assert len(_read(logs / EVENTS_FILE)) == 1  # and nothing more at shutdown


async def test_a_recovery_appends_a_line_with_the_recovery_time(tmp_path: Path) -> None:
    """When the primary comes back, a provider_recovered line says after how long."""
    logs = tmp_path / "logs"
    async with _running(tmp_path, logs) as (sup, clock, a):
        a.script(error(503))
        assert (await sup.chat(HI)).provider == "b"
        await clock.advance(601)  # the 600 s cooldown ends: its probe passes (a answers again)
        await sup.wait_for_state("a", "healthy")
        fallback, recovered = await _wait_for_lines(logs / EVENTS_FILE, 2)
    assert fallback["event"] == "fallback"
    assert recovered.keys() == SKILL_FIELDS | {"event", "request_id"}
    assert (recovered["event"], recovered["from_provider"], recovered["to_provider"], recovered["reason"],
            recovered["request_id"]) == ("provider_recovered", "a", None, "recovered", None)
    assert recovered["recovery_time_seconds"] == pytest.approx(601, abs=5)


async def test_shutdown_flushes_every_queued_line(tmp_path: Path) -> None:
    """Lines queued right before the Supervisor stops are all on disk once it has."""
    logs = tmp_path / "logs"
    async with _running(tmp_path, logs) as (sup, _, _a):
        for i in range(300):
            sup.bus.tell(_fallback(i))
    lines = _read(logs / EVENTS_FILE)
    assert [line["request_id"] for line in lines] == [f"req-{i}" for i in range(300)]


async def test_the_summary_is_written_at_shutdown(tmp_path: Path) -> None:
    """provider_metrics.json holds the skill's dashboard fields, from /status, after shutdown."""
    logs = tmp_path / "logs"
    async with _running(tmp_path, logs) as (sup, _, a):
        a.script(error(503))
        await sup.chat(HI)
        await sup.chat(HI)
    summary = json.loads((logs / METRICS_FILE).read_text())
    assert summary.keys() >= {"providers", "fallback_events_last_24h", "avg_recovery_time_seconds"}
    assert summary["fallback_events_last_24h"] == 1
    assert summary["providers"].keys() == {"a", "b"}
    for fields in summary["providers"].values():
        assert fields.keys() == SUMMARY_FIELDS
    assert summary["providers"]["a"]["current_status"] == "cooldown"
    b = summary["providers"]["b"]
    assert (b["requests_total"], b["requests_success"], b["requests_failed"], b["current_status"]) == (
        2, 2, 0, "healthy")
    assert _names(logs) == [EVENTS_FILE, METRICS_FILE]  # no temp file left


async def test_the_summary_is_rewritten_every_persist_interval(tmp_path: Path) -> None:
    """While serving, provider_metrics.json catches up with a fallback within persist_interval_s."""
    logs = tmp_path / "logs"
    async with _running(tmp_path, logs, persist_interval_s=0.05) as (sup, _, a):
        a.script(error(503))
        await sup.chat(HI)
        with anyio.fail_after(5):
            while True:
                path = logs / METRICS_FILE
                if path.exists() and json.loads(path.read_text())["fallback_events_last_24h"] == 1:
                    break
                await anyio.sleep(0.02)


async def test_rotation_through_the_config(tmp_path: Path) -> None:
    """logging.max_file_mb and logging.backups reach the file: it rotates and keeps that many."""
    logs = tmp_path / "logs"
    async with _running(tmp_path, logs, max_file_mb=0.0005, backups=2) as (sup, _, _a):  # 500 bytes
        for i in range(40):
            sup.bus.tell(_fallback(i))
    files = [name for name in _names(logs) if name.startswith(EVENTS_FILE)]
    assert files == [EVENTS_FILE, f"{EVENTS_FILE}.1", f"{EVENTS_FILE}.2"]
    assert all((logs / name).stat().st_size <= 500 for name in files)
    kept = [*_read(logs / f"{EVENTS_FILE}.2"), *_read(logs / f"{EVENTS_FILE}.1"), *_read(logs / EVENTS_FILE)]
    assert kept[-1]["request_id"] == "req-39"  # the newest lines, in order, the oldest fell off
    assert [line["request_id"] for line in kept] == [f"req-{i}" for i in range(40 - len(kept), 40)]


async def test_rotation_keeps_n_backups(tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1, .1 to .2 ...; no file beyond .N, none over the size."""
    log = LineLog(tmp_path / "events.jsonl", max_bytes=100, backups=3)
    for i in range(50):
        log.put(b'{"n": %3d, "pad": "xxxxxxxx"}' % i)  # 30 bytes with its newline
    assert await log.flush()
    names = _names(tmp_path)
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    assert all((tmp_path / n).stat().st_size <= 100 for n in names)
    assert [line["n"] for line in _read(tmp_path / "events.jsonl.1")] == [45, 46, 47]
    assert _read(tmp_path / "events.jsonl")[-1]["n"] == 49


async def test_no_backups_starts_the_file_again(tmp_path: Path) -> None:
    """backups = 0: past the size, the file is started anew and no old file is kept."""
    log = LineLog(tmp_path / "events.jsonl", max_bytes=100, backups=0)
    for i in range(10):
        log.put(b'{"n": %3d, "pad": "xxxxxxxx"}' % i)
    assert await log.flush()
    assert _names(tmp_path) == ["events.jsonl"]
    assert [line["n"] for line in _read(tmp_path / "events.jsonl")] == [9]


async def test_a_full_queue_drops_and_counts_with_one_warning(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Beyond its capacity a line is dropped (never waited for), counted, and said once."""
    log = LineLog(tmp_path / "events.jsonl", max_bytes=10_000, backups=1, capacity=3)
    with caplog.at_level(logging.WARNING, logger="actors.logdir"):
        accepted = [log.put(b'{"n": %d}' % i) for i in range(6)]
        assert accepted == [True, True, True, False, False, False]
        assert log.dropped == 3
        assert len([r for r in caplog.records if "queue is full" in r.message]) == 1
        assert await log.flush()
    assert [line["n"] for line in _read(tmp_path / "events.jsonl")] == [0, 1, 2]
    assert any("3 lines were dropped" in r.message for r in caplog.records)


async def test_a_broken_directory_never_holds_up_a_request(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The directory turns into a file while serving: requests still answer, a warning says why."""
    logs = tmp_path / "logs"
    with caplog.at_level(logging.WARNING):
        async with _running(tmp_path, logs, persist_interval_s=0.05) as (sup, _, a):
            logs.rename(tmp_path / "gone")  # at once (the summary's timer may be writing in it)
            logs.write_text("not a directory")
            a.set_default(error(503))
            for _ in range(3):
                with anyio.fail_after(5):
                    assert (await sup.chat(HI)).provider == "b"
            expected = {f"cannot write {logs / name}" for name in (EVENTS_FILE, METRICS_FILE)}
            with anyio.fail_after(5):  # logged by the drain task and the summary's timer
                while not all(any(e in r.message for r in caplog.records) for e in expected):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
        assert any("could not be written" in r.message for r in caplog.records)  # shutdown says so too
    assert logs.read_text() == "not a directory"


async def test_a_stuck_disk_never_holds_up_a_request(tmp_path: Path) -> None:
    """The events file is a FIFO nobody reads (a write that hangs): requests answer; the lines wait."""
    logs = tmp_path / "logs"
    reader = -1
    async with _running(tmp_path, logs) as (sup, _, a):
        os.mkfifo(logs / EVENTS_FILE)  # opening it to append blocks the writer's thread until a reader comes
        try:
            a.set_default(error(503))
            with anyio.fail_after(5):
                for _ in range(3):  # the first falls back (one line), the next go straight to b
                    assert (await sup.chat(HI)).provider == "b"
            for i in (1, 2):
                sup.bus.tell(_fallback(i))  # queued behind the stuck write
        finally:
            reader = os.open(logs / EVENTS_FILE, os.O_RDONLY | os.O_NONBLOCK)  # the disk "comes back"
    try:
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(reader, 65536):
                data += chunk
    finally:
        os.close(reader)
    assert [json.loads(line)["request_id"] for line in data.splitlines()][1:] == ["req-1", "req-2"]


@pytest.mark.parametrize("make", [
    pytest.param(lambda logs: logs.write_text("x"), id="a-file"),
    pytest.param(lambda logs: (logs / EVENTS_FILE).mkdir(parents=True), id="events-file-is-a-directory"),
])
async def test_an_unusable_directory_is_a_config_error_naming_the_key(tmp_path: Path, make: Any) -> None:
    """At start, a directory that can't hold the log refuses to start, naming the key and the path."""
    logs = tmp_path / "logs"
    make(logs)
    with pytest.raises(ConfigError) as caught:
        async with _running(tmp_path, logs):
            pass
    assert caught.value.key == "logging.fallback_log_dir"
    assert str(logs) in str(caught.value)


async def test_an_empty_setting_writes_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fallback_log_dir = "" turns the log off: a fallback leaves no file anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    async with _running(tmp_path, "") as (sup, _, a):
        a.script(error(503))
        assert (await sup.chat(HI)).provider == "b"
    assert _names(work) == []


async def test_secrets_never_reach_the_files(tmp_path: Path) -> None:
    """A provider's key and header values are not in the lines or the summary."""
    logs = tmp_path / "logs"
    provider = {"api_key_env": "A_KEY", "headers": {"X-Team-Token": "header-secret-42"}}
    async with _running(tmp_path, logs, env={"A_KEY": "sk-secret-17"}, provider=provider) as (sup, _, a):
        a.script(error(401, "invalid api key"))
        assert (await sup.chat(HI)).provider == "b"
    text = (logs / EVENTS_FILE).read_text() + (logs / METRICS_FILE).read_text()
    assert "sk-secret-17" not in text
    assert "header-secret-42" not in text


def _toml(tmp_path: Path, fakes: list[FakeUpstream]) -> Path:
    providers = "".join(f'\n[[providers]]\nname = "{f.name}"\nbase_url = "{f.base_url}"\npriority = {i + 1}\n'
                        f'models = {{ chat = "{f.name}-model" }}\n' for i, f in enumerate(fakes))
    path = tmp_path / "config.toml"
    path.write_text(f"""
[state]
path = "{tmp_path / 'state.db'}"

[health]
ping_interval_s = 0
full_interval_s = 0
api_interval_s = 0

[logging]
fallback_log_dir = "${{FALLBACK_LOG_DIR:-{tmp_path / 'default-logs'}}}"
{providers}""")
    return path


async def test_fallback_log_dir_from_the_environment(tmp_path: Path) -> None:
    """FALLBACK_LOG_DIR, through load_config, overrides the directory the config names."""
    async with FakeUpstream("a", default=error(503)) as a, FakeUpstream("b") as b:
        path = _toml(tmp_path, [a, b])
        assert load_config(path, env={}).logging.fallback_log_dir == str(tmp_path / "default-logs")
        config: Config = load_config(path, env={"FALLBACK_LOG_DIR": str(tmp_path / "from-env")})
        async with Supervisor(config, clock=VirtualClock()) as sup:
            assert (await sup.chat(HI)).provider == "b"
    assert [line["from_provider"] for line in _read(tmp_path / "from-env" / EVENTS_FILE)] == ["a"]
    assert not (tmp_path / "default-logs").exists()


@pytest.mark.parametrize(("env", "expected"), [
    pytest.param({}, "./logs", id="default"),
    pytest.param({"FALLBACK_LOG_DIR": "/var/log/fallback"}, "/var/log/fallback", id="from-env"),
])
def test_the_shipped_config_logs_to_logs_unless_the_variable_says(env: dict[str, str], expected: str) -> None:
    """The shipped config.toml: ./logs, or FALLBACK_LOG_DIR; rotation at 10 MB keeping 5; summary every 60 s."""
    config = load_config(REPO / "config.toml", env=env)
    assert config.logging.fallback_log_dir == expected
    assert (config.logging.max_file_mb, config.logging.backups, config.metrics.persist_interval_s) == (10, 5, 60)
