"""``run.py events export`` and ``run.py replay``, run for real against a live service's state file."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest

from actors.edges.store import Store
from actors.testing import ok
from tests.helpers import (
    INCIDENTS,
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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_live_services_log_exports_and_replays_exactly(tmp_path: Path) -> None:
    """Real time, real processes: what the service decided, replay decides too."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    async with primary_and_backup() as (primary, backup, http):
        config = fake_config(tmp_path / "config.toml", primary, backup, port)
        async with serve_async(config, output) as process:
            await wait_ready(http, url, process, output)
            async with anyio.create_task_group() as tg:  # concurrent requests: races get logged too
                for _ in range(2):  # (3 would be failure_threshold: unhealthy)
                    tg.start_soon(post_completion, http, url)
            await status_when(http, url, "primary", "cooldown")
            await http.post(f"{url}/admin/providers/backup/disable")  # refused: no admin token
            # The log is written in batches: /events flushes it, so the kill below loses nothing
            # this test looks for (what a kill -9 can lose is at most one flush interval).
            await (await http.get(f"{url}/events?limit=1")).read()
            process.kill()  # the log survives kill -9 (whatever was committed)
        assert process.returncode == -signal.SIGKILL
    log = tmp_path / "incident.jsonl"
    exported = await anyio.run_process([sys.executable, RUN, "events", "export", "--config", str(config),
                                        "-o", str(log)], cwd=tmp_path, env=clean_env(), check=False)
    assert exported.returncode == 0, exported.stderr
    assert b"exported" in exported.stderr
    lines = log.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "provider-fallback-events"
    assert any('"attempt_failed"' in line for line in lines)
    replayed = cli(tmp_path, "replay", str(log))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "matches" in replayed.stdout
    assert any("primary" in line and "healthy -> cooldown" in line for line in replayed.stdout.splitlines())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_live_outage_through_probes_and_failback_replays_exactly(tmp_path: Path) -> None:
    """Real clock: cooldown ends, a probe fails, a longer cooldown ends, a probe passes, traffic fails back."""
    port, output = free_port(), Output()
    url = f"http://127.0.0.1:{port}"
    async with primary_and_backup() as (primary, backup, http):
        config = fake_config(tmp_path / "config.toml", primary, backup, port, cooldown_s=1, max_cooldown_s=4)
        async with serve_async(config, output) as process:
            await wait_ready(http, url, process, output)
            assert await post_completion(http, url) == "backup"
            await status_when(http, url, "primary", "cooldown")
            with anyio.fail_after(10):  # the first probe (after ~1 s) fails: a longer cooldown
                while primary.completions < 2:  # noqa: ASYNC110 (the probe comes from the service process)
                    await anyio.sleep(0.05)
            primary.set_default(ok("primary is back"))
            await status_when(http, url, "primary", "healthy")  # the next probe passed
            assert await post_completion(http, url) == "primary"  # failback at once
            await (await http.get(f"{url}/events?limit=1")).read()  # flush the batched log
            process.kill()
        assert process.returncode == -signal.SIGKILL
    log = tmp_path / "outage.jsonl"
    exported = await anyio.run_process([sys.executable, RUN, "events", "export", "--config", str(config),
                                        "-o", str(log)], cwd=tmp_path, env=clean_env(), check=False)
    assert exported.returncode == 0, exported.stderr
    text = log.read_text()
    assert text.count('"probe_requested"') >= 2
    assert '"timer_fired"' in text
    replayed = cli(tmp_path, "replay", str(log))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "matches" in replayed.stdout
    out = replayed.stdout
    for change in ("cooldown -> probing", "probing -> cooldown", "probing -> healthy"):
        assert change in out


def test_replay_prints_timeline_and_summary(tmp_path: Path) -> None:
    result = cli(tmp_path, "replay", str(INCIDENTS / "primary-outage-failback.jsonl"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "probing -> healthy" in out
    assert "litellm: mean recovery s         1800.0" in out
    assert "matches: the" in out


def test_replay_exits_1_on_divergence(tmp_path: Path) -> None:
    lines = (INCIDENTS / "invalid-key.jsonl").read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"error_classified"' in line)
    lines[index] = lines[index].replace('"auth_failure"', '"rate_limit"')
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(lines))
    result = cli(tmp_path, "replay", str(tampered))
    assert result.returncode == 1
    assert f"DIVERGED at decision #0 (log line {index + 1})" in result.stdout
    assert '"category":"rate_limit"' in result.stdout  # expected (the log) ...
    assert '"category":"auth_failure"' in result.stdout  # ... and got (replay)


def test_replay_what_if_prints_side_by_side(tmp_path: Path) -> None:
    header = json.loads((INCIDENTS / "flapping-provider.jsonl").read_text().splitlines()[0])
    providers = "".join(f"""
[[providers]]
name = "{p['name']}"
base_url = "{p['base_url']}"
priority = {p['priority']}
models = {{ chat = "m" }}
""" for p in header["config"]["providers"])
    other = tmp_path / "other.toml"
    other.write_text(f"[routing]\nfailure_threshold = 1\n[routing.cooldown_s]\nservice_unavailable = 3600\n{providers}")
    result = cli(tmp_path, "replay", str(INCIDENTS / "flapping-provider.jsonl"), "--config", str(other))
    assert result.returncode == 0, result.stderr
    assert "what changed (recorded vs this config)" in result.stdout
    changed = [line for line in result.stdout.splitlines() if line.startswith("* ")]
    # failure_threshold 1 and hour-long cooldowns: litellm ends unhealthy, and the requests it then
    # would not have taken are counted as spared.
    assert any(line.startswith("* litellm: final state") and line.endswith("unhealthy") for line in changed)
    assert any(line.startswith("* litellm: attempts spared") for line in changed)


def test_replay_of_a_broken_log_names_the_line(tmp_path: Path) -> None:
    lines = (INCIDENTS / "invalid-key.jsonl").read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:5]) + "{not json\n" + "".join(lines[5:]))
    result = cli(tmp_path, "replay", str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {broken}, line 6: not a valid event")
    assert len(result.stderr.splitlines()) == 1


def test_export_without_a_state_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[state]\npath = "nowhere.db"\n[[providers]]\nname = "a"\n'
                                          'base_url = "http://127.0.0.1:9"\nmodels = { chat = "m" }\n')
    result = cli(tmp_path, "events", "export")
    assert result.returncode == 2
    assert "nowhere.db: does not exist" in result.stderr
    assert not (tmp_path / "nowhere.db").exists()  # reading never creates the file


def test_export_rejects_a_bad_time(tmp_path: Path) -> None:
    result = cli(tmp_path, "events", "export", "--since", "last tuesday")
    assert result.returncode == 2
    assert "ISO 8601" in result.stderr


def test_export_of_an_unknown_provider_is_an_error(tmp_path: Path) -> None:
    """``--provider nope`` names the providers the config has instead of exporting a near-empty file."""
    state = tmp_path / "s.db"

    async def make() -> None:  # a real state file, empty of events
        await (await Store.open(state)).close()

    anyio.run(make)
    (tmp_path / "config.toml").write_text(f'[state]\npath = "{state}"\n[[providers]]\nname = "litellm"\n'
                                          'base_url = "http://127.0.0.1:9"\nmodels = { chat = "m" }\n')
    result = cli(tmp_path, "events", "export", "--provider", "nope", "-o", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2
    assert "unknown provider 'nope': configured are litellm" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()
    assert not (tmp_path / "x.jsonl.partial").exists()


def test_export_to_a_bad_path_names_that_path(tmp_path: Path) -> None:
    """An output path in a missing directory is named as given, not as its temporary .partial twin."""
    (tmp_path / "config.toml").write_text('[state]\npath = "s.db"\n[[providers]]\nname = "a"\n'
                                          'base_url = "http://127.0.0.1:9"\nmodels = { chat = "m" }\n')
    target = tmp_path / "missing" / "out.jsonl"
    result = cli(tmp_path, "events", "export", "-o", str(target))
    assert result.returncode == 2
    assert f"error: {target}: No such file or directory" in result.stderr
    assert ".partial" not in result.stderr
