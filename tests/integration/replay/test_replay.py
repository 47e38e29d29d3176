"""Replay: recorded incidents reproduce exactly; what-if; export; broken logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.core.clock import VirtualClock
from actors.core.config import Config, parse_config
from actors.core.errors import EventLogError
from actors.core.messages import (
    SCHEMA_VERSION,
    AttemptFailed,
    ProviderStateChanged,
    StateSnapshot,
    encode_message,
)
from actors.replay import replay
from actors.replay.eventlog import EventLog, read_log, replay_config
from actors.replay.export import export_events
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error
from tests.helpers import INCIDENTS
from tests.incidents.record import HI, SCENARIOS, incident_config, record

LOGS = sorted(INCIDENTS.glob("*.jsonl"))


def cooldowns(log: EventLog | list[Any], provider: str = "litellm") -> list[float]:
    """How long each cooldown the provider entered was meant to last."""
    messages = log.messages if isinstance(log, EventLog) else log
    return [round(m.cooldown_until - m.at) for m in messages
            if isinstance(m, ProviderStateChanged) and m.provider == provider
            and m.new in ("cooldown", "unhealthy") and m.cooldown_until is not None]


def with_routing(config: Config, **changes: Any) -> Config:
    cooldown = changes.pop("cooldown_s", {})
    routing = msgspec.structs.replace(config.routing, **changes)
    routing = msgspec.structs.replace(routing, cooldown_s=msgspec.structs.replace(routing.cooldown_s, **cooldown))
    return msgspec.structs.replace(config, routing=routing)


def header_config(log: EventLog) -> Config:
    assert log.header.config is not None
    return replay_config(log.header.config, log.header.configured, source="test")


def test_there_are_six_recorded_incidents() -> None:
    assert {p.stem for p in LOGS} >= set(SCENARIOS)


@pytest.mark.parametrize("path", LOGS, ids=[p.stem for p in LOGS])
def test_recorded_incident_replays_exactly(path: Path) -> None:
    """Every decision the live system logged comes out of replay the same, in the same order."""
    result = replay(path)
    assert result.matches, result.divergence and result.divergence.describe()
    assert len(result.recorded) > 0
    assert [encode_message(m) for m in result.decisions if type(m) in {type(r) for r in result.recorded}] == [
        encode_message(m) for m in result.recorded]


def test_primary_outage_fails_over_and_back() -> None:
    result = replay(INCIDENTS / "primary-outage-failback.jsonl")
    assert result.matches
    assert result.final_state["litellm"] == "healthy"
    assert [(r.old, r.new) for r in result.timeline if r.provider == "litellm"] == [
        ("healthy", "cooldown"), ("cooldown", "probing"), ("probing", "cooldown"),
        ("cooldown", "probing"), ("probing", "healthy")]
    litellm = result.summary.providers["litellm"]
    assert (litellm.recoveries, litellm.probes) == (1, 2)
    assert litellm.recovery_times_s == [1800.0]


def test_429_storm_cools_down_for_retry_after() -> None:
    log = read_log(INCIDENTS / "groq-429-storm.jsonl")
    result = replay(log)
    assert result.matches
    assert cooldowns(log)[0] == 30  # Retry-After, not the 60 s default
    # Eight requests met the 429 at once: each was classified, none reached litellm after the cooldown began.
    failed = [m for m in log.messages if isinstance(m, AttemptFailed) and m.provider == "litellm"]
    assert len(failed) == 8
    assert result.final_state["litellm"] == "healthy"


def test_invalid_key_sits_out_long_cooldowns() -> None:
    log = read_log(INCIDENTS / "invalid-key.jsonl")
    result = replay(log)
    assert result.matches
    assert cooldowns(log) == [1800, 3600]  # auth cooldown, doubled by the failed probe, capped at max
    assert result.final_state["litellm"] == "cooldown"


def test_flapping_provider_cooldowns_grow_then_reset() -> None:
    log = read_log(INCIDENTS / "flapping-provider.jsonl")
    assert replay(log).matches
    assert cooldowns(log) == [600, 1200, 2400, 600]


def test_everyone_down_then_one_recovers() -> None:
    result = replay(INCIDENTS / "all-down-then-one-recovers.jsonl")
    assert result.matches
    assert result.final_state == {"litellm": "healthy", "kilocode": "healthy", "openrouter": "unhealthy"}
    firsts = [r.provider for r in result.timeline if r.new == "healthy"]
    assert firsts == ["kilocode", "litellm"]


def test_actor_crash_mid_incident_replays_without_the_lost_message() -> None:
    log = read_log(INCIDENTS / "actor-crash-mid-incident.jsonl")
    result = replay(log)
    assert result.matches, result.divergence and result.divergence.describe()
    restarted = [r.provider for r in result.timeline if r.new == "restarted"]
    assert restarted == ["(priority_selector)", "(recovery_manager)"]
    # The selector died on the first 503's verdict, so it took two failures to cool litellm down.
    assert result.summary.providers["litellm"].attempts == 3
    assert result.final_state["litellm"] == "healthy"


@pytest.mark.anyio
async def test_replays_identically_a_hundred_times() -> None:
    """Same log, same decisions: 100 times in a row, on asyncio and on uvloop."""
    log = read_log(INCIDENTS / "groq-429-storm.jsonl")
    first = [encode_message(m) for m in replay(log).decisions]
    for _ in range(99):
        assert [encode_message(m) for m in replay(log).decisions] == first


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_fresh_recording_replays_exactly(tmp_path: Path, name: str) -> None:
    """Record the scenario now, from the real system, and replay what it logged."""
    path = await record(name, tmp_path / f"{name}.jsonl", workdir=tmp_path)
    result = replay(path)
    assert result.matches, result.divergence and result.divergence.describe()


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_every_excerpt_of_a_recording_replays_exactly_from_its_state(tmp_path: Path, name: str) -> None:
    """export --since T at every event time of an incident: each excerpt replays exactly and starts
    from the state the whole log's replay had at T."""
    path = await record(name, tmp_path / f"{name}.jsonl", workdir=tmp_path)
    whole = read_log(path)
    times = sorted({m.at for m in whole.messages})[1:]
    for since in times[:: max(1, len(times) // 12)]:  # bounded: about a dozen cuts per incident
        out = tmp_path / "excerpt.jsonl"
        with open(out, "wb") as f:
            await export_events(tmp_path / f"{name}.db", f, since=since)
        excerpt = read_log(out)
        first = excerpt.messages[0]
        assert isinstance(first, StateSnapshot), since
        assert all(m.at >= since for m in excerpt.messages)
        result = replay(excerpt)
        assert result.matches, (since, result.divergence and result.divergence.describe())
        assert result.final_state == replay(whole).final_state


# ---------------------------------------------------------------- what if


def test_what_if_same_config_agrees_with_the_recording() -> None:
    log = read_log(INCIDENTS / "primary-outage-failback.jsonl")
    result = replay(log, config=header_config(log))
    assert result.mode == "what-if"
    assert not result.matches  # nothing to match in what-if mode
    assert result.summary.providers["litellm"].downtime_s == result.recorded_summary.providers["litellm"].downtime_s
    assert result.final_state == replay(log).final_state


def test_what_if_shorter_cooldown_probes_more_and_recovers_no_sooner() -> None:
    """A 60 s cooldown for a half-hour outage: more probes, and the outage still lasts as long."""
    log = read_log(INCIDENTS / "primary-outage-failback.jsonl")
    result = replay(log, config=with_routing(header_config(log), cooldown_s={"service_unavailable": 60}))
    before, after = result.recorded_summary.providers["litellm"], result.summary.providers["litellm"]
    assert after.probes > before.probes
    assert after.downtime_s >= before.downtime_s
    assert result.final_state["litellm"] == "healthy"


def test_what_if_higher_threshold_spares_nothing_but_changes_states() -> None:
    """With failure_threshold=1 the invalid key makes litellm unhealthy at the first 401."""
    log = read_log(INCIDENTS / "invalid-key.jsonl")
    result = replay(log, config=with_routing(header_config(log), failure_threshold=1))
    assert next(r.new for r in result.timeline if r.provider == "litellm") == "unhealthy"


def test_what_if_longer_cooldown_spares_attempts_on_a_flapping_provider() -> None:
    """Cooldowns that start at an hour keep a flapping primary out: its later attempts are spared."""
    log = read_log(INCIDENTS / "flapping-provider.jsonl")
    result = replay(log, config=with_routing(header_config(log), cooldown_s={"service_unavailable": 3600}))
    litellm = result.summary.providers["litellm"]
    assert litellm.spared > 0
    assert result.summary.fallbacks < result.recorded_summary.fallbacks


# ---------------------------------------------------------------- export


@pytest.mark.anyio
async def test_export_filters_and_keeps_secrets_out(tmp_path: Path) -> None:
    async with FakeUpstream("litellm") as a, FakeUpstream("kilocode") as b:
        fakes = {"litellm": a, "kilocode": b}
        config = incident_config(tmp_path / "s.db", fakes)
        clock = VirtualClock()
        a.script(error(503))
        async with Supervisor(config, clock=clock) as sup:
            await sup.chat(HI)
            await clock.advance(100)
            await sup.chat(HI)
    whole, since, only_b = tmp_path / "all.jsonl", tmp_path / "since.jsonl", tmp_path / "b.jsonl"
    with open(whole, "wb") as f:
        total = await export_events(tmp_path / "s.db", f)
    with open(since, "wb") as f:
        await export_events(tmp_path / "s.db", f, since=clock.now() - 50)
    with open(only_b, "wb") as f:
        await export_events(tmp_path / "s.db", f, provider="kilocode")
    text = whole.read_text()
    assert "sk-recorder-not-a-real-key" not in text
    header = json.loads(text.splitlines()[0])
    assert header["schema_version"] == SCHEMA_VERSION
    assert header["configured"] == ["litellm", "kilocode"]
    assert total == len(text.splitlines()) - 1
    # --since starts with the state at that time, not with everything since the last start.
    excerpt = [json.loads(line) for line in since.read_text().splitlines()[1:]]
    assert excerpt[0]["type"] == "state_snapshot"
    assert excerpt[0]["at"] == clock.now() - 50
    assert all(e["at"] >= clock.now() - 50 for e in excerpt)
    assert replay(since).matches
    providers = {json.loads(line).get("provider") for line in only_b.read_text().splitlines()[1:]}
    assert providers <= {"kilocode", None}
    assert replay(whole).matches


# ---------------------------------------------------------------- broken logs


def lines_of(name: str = "primary-outage-failback") -> list[str]:
    return (INCIDENTS / f"{name}.jsonl").read_text().splitlines(keepends=True)


def test_truncated_log_names_the_line() -> None:
    lines = lines_of()
    cut = [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]
    with pytest.raises(EventLogError, match=rf"line {len(lines)}: truncated"):
        replay(cut)


def test_corrupt_line_is_named() -> None:
    lines = lines_of()
    lines[4] = '{"type": "attempt_failed", "at": "yesterday"}\n'
    with pytest.raises(EventLogError, match=r"line 5: not a valid event: Expected `float`"):
        read_log(lines)


def test_unknown_event_type_is_named() -> None:
    lines = lines_of()
    lines[2] = '{"type": "provider_exploded", "at": 1.0}\n'
    with pytest.raises(EventLogError, match=r"line 3: unknown event type 'provider_exploded'"):
        read_log(lines)


def test_not_a_log() -> None:
    with pytest.raises(EventLogError, match=r"line 1: not a provider-fallback event log header"):
        read_log(["hello\n"])
    with pytest.raises(EventLogError, match="is empty"):
        read_log([])


def test_newer_schema_is_refused_with_advice() -> None:
    lines = lines_of()
    header = json.loads(lines[0])
    lines[0] = json.dumps({**header, "schema_version": 99}) + "\n"
    with pytest.raises(EventLogError, match=r"schema version 99.*upgrade provider-fallback"):
        read_log(lines)


def test_unknown_old_schema_is_refused() -> None:
    lines = lines_of()
    lines[0] = json.dumps({**json.loads(lines[0]), "schema_version": 0}) + "\n"
    with pytest.raises(EventLogError, match="schema version 0, which can't be migrated"):
        read_log(lines)


def test_schema_1_log_is_migrated_and_replays() -> None:
    """A schema-1 log (no start line, decisions dated when handled) migrates and replays."""
    lines = lines_of()
    lines[0] = json.dumps({**json.loads(lines[0]), "schema_version": 1}) + "\n"
    lines = [line for line in lines if '"supervisor_started"' not in line]
    result = replay(lines)
    assert result.matches, result.divergence and result.divergence.describe()
    assert any("schema-1" in note for note in result.notes)


def test_tampered_decision_is_the_divergence() -> None:
    lines = lines_of()
    index = next(i for i, line in enumerate(lines) if '"provider_state_changed"' in line)
    data = json.loads(lines[index])
    lines[index] = json.dumps({**data, "cooldown_until": data["cooldown_until"] + 1}) + "\n"
    result = replay(lines)
    assert not result.matches
    assert result.divergence is not None
    assert result.divergence.line == index + 1
    assert result.divergence.got is not None
    assert result.divergence.expected is not None
    assert result.divergence.got.cooldown_until == data["cooldown_until"]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["primary-outage-failback", "groq-429-storm"])
def test_schema_2_log_is_migrated_to_typed_fields_and_replays(name: str) -> None:
    """A schema-2 log (causes kept in reason text) reads with typed causes and replays exactly."""
    log = read_log(INCIDENTS / "v2" / f"{name}.jsonl")
    assert log.header.migrated_from == 2
    downs = [m for m in log.messages if isinstance(m, ProviderStateChanged) and m.new in ("cooldown", "unhealthy")]
    assert downs, "the incident has moves out of routing"
    assert all(m.cause is not None for m in downs if m.reason != "admin_enable")
    assert any(m.probe for m in downs) == any(m.reason.startswith("probe_failed:") for m in downs)
    result = replay(log)
    assert result.matches, result.divergence and result.divergence.describe()


def test_what_if_needs_no_key_in_the_environment() -> None:
    """A what-if config parsed where no key variable is set still replays the providers the log had."""
    log = read_log(INCIDENTS / "primary-outage-failback.jsonl")
    assert log.header.config is not None
    bare = parse_config(log.header.config, env={}, source="a shell without keys")
    assert not any(p.configured for p in bare.providers if p.api_key_env)
    result = replay(log, config=bare)
    assert result.final_state == replay(log).final_state
    assert "unconfigured" not in result.final_state.values()
    assert result.summary.providers["litellm"].attempts == result.recorded_summary.providers["litellm"].attempts


def test_what_if_says_what_it_assumed_for_providers_the_log_lacks() -> None:
    """A what-if provider the log never had is named in a note, and the log's missing one too."""
    log = read_log(INCIDENTS / "primary-outage-failback.jsonl")
    assert log.header.config is not None
    data = json.loads(json.dumps(log.header.config))
    data["providers"][2]["name"] = "newcomer"
    config = parse_config(data, env={p["api_key_env"]: "k" for p in data["providers"]}, source="what-if")
    result = replay(log, config=config)
    assert any("newcomer was not configured when the log was recorded" in n for n in result.notes)
    assert any("openrouter is not in this config" in n for n in result.notes)
