"""Record the incident logs in this folder from the real system.

    python -m tests.incidents.record            # all of them
    python -m tests.incidents.record flapping-provider

Each scenario runs the real Supervisor (all five actors, the request path, the
SQLite store) on a VirtualClock against FakeUpstreams on 127.0.0.1, then
exports the state file's event log exactly as ``run.py events export`` does.
Nothing here writes an event by hand. tests/test_replay.py replays the files,
and also records every scenario afresh and replays that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from actors.core.clock import VirtualClock
from actors.core.config import Config, parse_config
from actors.core.errors import AllProvidersFailedError
from actors.replay.export import export_events
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream, error, ok

HERE = Path(__file__).resolve().parent
HI = [{"role": "user", "content": "hi"}]
NAMES = ("litellm", "kilocode", "openrouter")

Scenario = Callable[[Supervisor, VirtualClock, dict[str, FakeUpstream]], Awaitable[None]]


def incident_config(state: Path, fakes: dict[str, FakeUpstream], *, health: dict[str, Any] | None = None) -> Config:
    """The default config.toml's policy, pointed at the fakes (keys set, so all are configured)."""
    return parse_config(
        {
            "state": {"path": str(state)},
            # No second pass: its wait is on the virtual clock, which the scenarios move themselves.
            "routing": {"second_pass_backoff_s": 0},
            # Early recovery probes off: these tests time the cooldown's own probe (tests of the
            # early ones turn them on).
            "health": health or {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0,
                                 "probe_min_interval_s": 0},
            "providers": [
                {"name": name, "base_url": f.base_url, "models": {"chat": f"{name}-model"},
                 "api_key_env": f"{name.upper()}_KEY", "priority": i + 1, "timeout_s": 30}
                for i, (name, f) in enumerate(fakes.items())
            ],
        },
        env={f"{name.upper()}_KEY": "sk-recorder-not-a-real-key" for name in fakes},
    )


async def primary_outage(sup: Supervisor, clock: VirtualClock, f: dict[str, FakeUpstream]) -> None:
    """The primary answers 503 for half an hour: fallback, a failed probe, recovery, failback."""
    f["litellm"].set_default(error(503, "upstream overloaded"))
    for _ in range(5):
        assert (await sup.chat(HI)).provider == "kilocode"
        await clock.advance(20)
    await clock.advance(500)  # 620 s after the failure: its probe fails, the cooldown doubles
    await sup.wait_for_state("litellm", "cooldown")
    for _ in range(3):
        assert (await sup.chat(HI)).provider == "kilocode"
        await clock.advance(60)
    f["litellm"].set_default(ok())
    await clock.advance(1200)
    await sup.wait_for_state("litellm", "healthy")
    assert (await sup.chat(HI)).provider == "litellm"


async def rate_limit_storm(sup: Supervisor, clock: VirtualClock, f: dict[str, FakeUpstream]) -> None:
    """Eight requests at once meet 429s with Retry-After; later ones can't shorten the cooldown."""
    f["litellm"].set_default(error(429, "rate limit reached", retry_after=30))
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(sup.chat, HI)
    await sup.wait_for_state("litellm", "cooldown", "unhealthy")
    await clock.advance(10)
    assert (await sup.chat(HI)).provider == "kilocode"
    f["litellm"].set_default(error(429, "rate limit reached", retry_after=5))
    await clock.advance(25)  # Retry-After over: the probe meets another 429
    await sup.wait_for_state("litellm", "cooldown", "unhealthy")
    f["litellm"].set_default(ok())
    await clock.advance(400)
    await sup.wait_for_state("litellm", "healthy")
    assert (await sup.chat(HI)).provider == "litellm"


async def invalid_key(sup: Supervisor, clock: VirtualClock, f: dict[str, FakeUpstream]) -> None:
    """The primary's key is wrong: 401, a long cooldown, a probe that fails again, capped growth."""
    f["litellm"].set_default(error(401, "Invalid API Key", code="invalid_api_key"))
    f["litellm"].set_health(error(401, "Invalid API Key", code="invalid_api_key"))  # its /models too
    assert (await sup.chat(HI)).provider == "kilocode"
    await clock.advance(1801)
    await sup.wait_for_state("litellm", "cooldown")
    for _ in range(3):
        assert (await sup.chat(HI)).provider == "kilocode"
        await clock.advance(600)


async def flapping(sup: Supervisor, clock: VirtualClock, f: dict[str, FakeUpstream]) -> None:
    """The primary fails again soon after each recovery: 600, 1200, 2400 s; stable for long, 600 again."""
    primary = f["litellm"]
    for cooldown, later in ((600, 60), (1200, 60), (2400, 700)):
        primary.script(error(503))
        assert (await sup.chat(HI)).provider == "kilocode"
        await clock.advance(cooldown + 1)
        await sup.wait_for_state("litellm", "healthy")
        assert (await sup.chat(HI)).provider == "litellm"
        await clock.advance(later)
    primary.script(error(503))
    assert (await sup.chat(HI)).provider == "kilocode"


async def all_down(sup: Supervisor, clock: VirtualClock, f: dict[str, FakeUpstream]) -> None:
    """Every provider answers 503; then kilocode heals, later litellm: traffic follows."""
    for fake in f.values():
        fake.set_default(error(503, "down"))
    for _ in range(2):
        try:
            await sup.chat(HI)
        except AllProvidersFailedError:
            pass
        else:
            raise AssertionError("everything is down, yet an answer came")
    f["kilocode"].set_default(ok())
    await clock.advance(601)
    await sup.wait_for_state("kilocode", "healthy")
    assert (await sup.chat(HI)).provider == "kilocode"
    f["litellm"].set_default(ok())
    await clock.advance(1201)
    await sup.wait_for_state("litellm", "healthy")
    assert (await sup.chat(HI)).provider == "litellm"


async def actor_crash(sup: Supervisor, clock: VirtualClock, f: dict[str, FakeUpstream]) -> None:
    """Mid-outage the selector and the recovery manager crash; both restart and the incident ends well."""
    f["litellm"].set_default(error(503))
    sup.actors["priority_selector"].crash_next(RuntimeError("injected crash"))
    assert (await sup.chat(HI)).provider == "kilocode"  # the selector dies on its verdict
    await sup.wait_for_state("litellm", "healthy")
    assert (await sup.chat(HI)).provider == "kilocode"  # so the next request meets the 503 too
    await sup.wait_for_state("litellm", "cooldown")
    sup.actors["recovery_manager"].crash_next(RuntimeError("injected crash"))
    await clock.advance(300)
    assert (await sup.chat(HI)).provider == "kilocode"
    f["litellm"].set_default(ok())
    await clock.advance(301)
    await sup.wait_for_state("litellm", "healthy")
    assert (await sup.chat(HI)).provider == "litellm"


SCENARIOS: dict[str, Scenario] = {
    "primary-outage-failback": primary_outage,
    "groq-429-storm": rate_limit_storm,
    "invalid-key": invalid_key,
    "flapping-provider": flapping,
    "all-down-then-one-recovers": all_down,
    "actor-crash-mid-incident": actor_crash,
}


async def record(name: str, out: Path, *, workdir: Path | None = None) -> Path:
    """Run scenario ``name`` against fakes and export its log to ``out``; return ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(workdir or tmp) / f"{name}.db"
        fakes = {n: FakeUpstream(n) for n in NAMES}
        for fake in fakes.values():
            await fake.start()
        try:
            clock = VirtualClock()
            async with Supervisor(incident_config(state, fakes), clock=clock) as sup:
                await SCENARIOS[name](sup, clock, fakes)
        finally:
            for fake in fakes.values():
                await fake.close()
        with open(out, "wb") as f:
            await export_events(state, f)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*SCENARIOS, []], help="scenarios (default: all)")
    args = parser.parse_args(argv)
    for name in args.names or SCENARIOS:
        path = anyio.run(record, name, HERE / f"{name}.jsonl")
        print(f"recorded {path.relative_to(HERE.parent.parent)} ({sum(1 for _ in open(path)) - 1} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
