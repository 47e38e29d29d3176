"""The embedded Supervisor against real fake providers, on a virtual clock."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.core.clock import SystemClock, VirtualClock
from actors.core.config import parse_config
from actors.core.errors import (
    AllProvidersFailedError,
    InvalidRequestError,
    StoreError,
    StreamInterruptedError,
    UnknownModelError,
    UpstreamRejectedError,
)
from actors.runtime.status import iso
from actors.runtime.supervisor import Supervisor
from actors.testing import (
    FakeUpstream,
    context_length_exceeded,
    cut_stream,
    error,
    garbage,
    hang,
    stall_stream,
)
from tests.helpers import HI, make_config, running, settle

pytestmark = pytest.mark.anyio


async def test_answers_from_the_primary(tmp_path: Path) -> None:
    """A healthy primary answers, in one attempt, with an OpenAI-shaped body."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        reply = await sup.chat(HI)
        assert (reply.provider, reply.attempts, reply.text) == ("a", 1, "Hello from fake")
        assert reply.body["object"] == "chat.completion"
        assert a.requests[0].body is not None
        assert a.requests[0].body["model"] == "a-model"
        assert b.completions == 0


@pytest.mark.parametrize(
    ("fault", "category"),
    [
        pytest.param(error(503), "service_unavailable", id="503"),
        pytest.param(error(529), "service_unavailable", id="529"),
        pytest.param(error(401), "auth_failure", id="401"),
        pytest.param(error(404), "model_not_found", id="404"),
        pytest.param(error(429, retry_after=30), "rate_limit", id="429"),
        pytest.param(garbage("html"), "bad_response", id="html"),
        pytest.param(garbage("invalid_json"), "bad_response", id="invalid-json"),
        pytest.param(garbage("wrong_shape"), "bad_response", id="wrong-shape"),
        pytest.param(garbage("truncated"), "bad_response", id="truncated"),
        pytest.param(garbage("empty"), "bad_response", id="empty"),
    ],
)
async def test_falls_back_at_once(tmp_path: Path, fault: Any, category: str) -> None:
    """These failures send the request straight to the next provider, never back as a success."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(fault)
        reply = await sup.chat(HI)
        assert (reply.provider, reply.attempts) == ("b", 2)
        assert reply.attempt_log[0].category == category
        assert a.completions == 1
        await settle()
        assert sup.state_of("a") == "cooldown"


async def test_refused_connection_falls_back(tmp_path: Path) -> None:
    """A primary refusing connections is skipped within the same request."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        await a.refuse_connections()
        reply = await sup.chat(HI)
        assert reply.provider == "b"
        assert reply.attempt_log[0].category == "connection_error"


async def test_server_error_is_retried_once(tmp_path: Path) -> None:
    """A single 500 is retried on the same provider, which then answers."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(error(500))
        reply = await sup.chat(HI)
        assert (reply.provider, reply.attempts) == ("a", 2)
        assert b.completions == 0


async def test_second_server_error_falls_back(tmp_path: Path) -> None:
    """Two 502s in a row move the request to the next provider."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(error(502), error(502))
        reply = await sup.chat(HI)
        assert (reply.provider, reply.attempts, a.completions) == ("b", 3, 2)


async def test_invalid_request_goes_back_to_the_caller(tmp_path: Path) -> None:
    """A 400 naming a request field is returned to the caller; no other provider is tried or penalised."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(error(400, "temperature is invalid", param="temperature"))
        with pytest.raises(UpstreamRejectedError, match="temperature is invalid"):
            await sup.chat(HI)
        await settle()
        assert (b.completions, sup.state_of("a")) == (0, "healthy")


async def test_context_length_moves_on_without_penalty(tmp_path: Path) -> None:
    """A context-length error tries the next provider and leaves the first healthy."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(context_length_exceeded())
        reply = await sup.chat(HI)
        await settle()
        assert (reply.provider, sup.state_of("a")) == ("b", "healthy")


async def test_timeout_falls_back(tmp_path: Path) -> None:
    """A primary that hangs past its timeout_s is abandoned for the fallback."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, _b)):
        a.script(hang())
        replies = []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                replies.append(await sup.chat(HI))
            tg.start_soon(call)
            await a.wait_hanging()
            await clock.advance(31)
        assert replies[0].provider == "b"
        assert replies[0].attempt_log[0].category == "timeout"


async def test_caller_cancelling_a_hanging_attempt_is_not_taken_for_a_timeout(tmp_path: Path) -> None:
    """On the system clock, a caller giving up mid-attempt cancels the request: no fallback, no penalty."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        a.script(hang())
        async with Supervisor(make_config(tmp_path, a, b), clock=SystemClock()) as sup:
            outcome: list[str] = []
            async with anyio.create_task_group() as tg:
                async def call() -> None:
                    with anyio.CancelScope() as scope:
                        scopes.append(scope)
                        await sup.chat(HI)
                        outcome.append("answered")
                    outcome.append("cancelled" if scope.cancelled_caught else "left")
                scopes: list[anyio.CancelScope] = []
                tg.start_soon(call)
                await a.wait_hanging()
                scopes[0].cancel()
            assert outcome == ["cancelled"]
            assert b.requests == []  # the cancel was not mistaken for a's timeout
            assert sup.status()["providers"]["a"]["state"] == "healthy"


async def test_all_failing_lists_every_attempt(tmp_path: Path) -> None:
    """When nothing can answer, the error lists each attempt with status and category."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(error(503))
        b.script(error(401))
        with pytest.raises(AllProvidersFailedError) as caught:
            await sup.chat(HI)
        err = caught.value
        assert [(x.provider, x.status, x.category) for x in err.attempts] == [
            ("a", 503, "service_unavailable"), ("b", 401, "auth_failure")]
        assert "a: service_unavailable (HTTP 503)" in str(err)


async def test_waits_for_the_first_provider_to_recover(tmp_path: Path) -> None:
    """With every provider cooling down, a request waits for the soonest recovery inside its deadline."""
    async with running(tmp_path, "a", "b", request_deadline_s=120) as (sup, clock, (a, b)):
        a.script(error(429, retry_after=20))
        b.script(error(503))
        replies = []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                replies.append(await sup.chat(HI))
            tg.start_soon(call)
            await sup.wait_for_state("a", "cooldown")
            await sup.wait_for_state("b", "cooldown")
            await settle()
            assert not replies  # a cools down 20 s, b 600 s: the request waits
            await clock.advance(21)  # a's cooldown ends, its probe passes, the request goes
        assert (replies[0].provider, replies[0].attempts) == ("a", 3)
        # The probe (a 1-token completion) went first; the user request was not the probe.
        assert a.completions == 3
        assert a.requests[1].body is not None
        assert a.requests[1].body["max_tokens"] == 1


async def test_gives_up_when_recovery_is_past_the_deadline(tmp_path: Path) -> None:
    """As a strict breaker (no last resort), past-deadline recovery fails the request untried."""
    async with running(tmp_path, "a", request_deadline_s=10, last_resort=False) as (sup, _, (a,)):
        a.script(error(503))
        with pytest.raises(AllProvidersFailedError):
            await sup.chat(HI)
        await settle()  # the actors have turned the failure into a cooldown
        with pytest.raises(AllProvidersFailedError, match="a is cooldown"):
            await sup.chat(HI)
        assert a.completions == 1


async def test_last_resort_tries_a_provider_down_after_a_transient_fault(tmp_path: Path) -> None:
    """Everything down after a 503: the next request still tries it, and its answer restores it."""
    async with running(tmp_path, "a") as (sup, _, (a,)):
        a.script(error(503))
        with pytest.raises(AllProvidersFailedError):
            await sup.chat(HI)
        await sup.wait_for_state("a", "cooldown")
        reply = await sup.chat(HI)  # a has healed; failing without asking would have been wrong
        assert (reply.provider, reply.attempts) == ("a", 1)
        await sup.wait_for_state("a", "healthy")
        view = sup.status()["providers"]["a"]
        assert view["cooldown_until"] is None
        assert a.completions == 2


async def test_last_resort_failing_keeps_the_provider_down_without_growing_its_cooldown(
        tmp_path: Path) -> None:
    """Last resorts go soonest-recovery first, once each; failing again does not grow a cooldown."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, b)):
        a.script(*[error(503)] * 2)  # service_unavailable: 600 s
        b.script(*[error(500)] * 4)  # server_error: 300 s, so b comes back first
        with pytest.raises(AllProvidersFailedError):
            await sup.chat(HI)
        await sup.wait_for_state("a", "cooldown")
        await sup.wait_for_state("b", "cooldown")
        before = sup.status()["providers"]
        await clock.advance(10)
        with pytest.raises(AllProvidersFailedError) as caught:
            await sup.chat(HI)
        assert [(t.provider, t.category) for t in caught.value.attempts] == [
            ("b", "server_error"), ("b", "server_error"), ("a", "service_unavailable")]
        await settle()
        after = sup.status()["providers"]
        for name in ("a", "b"):
            assert after[name]["state"] in ("cooldown", "unhealthy")
            assert after[name]["cooldown_level"] == before[name]["cooldown_level"]
            assert after[name]["cooldown_until"] > before[name]["cooldown_until"]  # extended, not grown
        assert (a.completions, b.completions) == (2, 4)


async def _down_then_rate_limited(sup: Supervisor, retry_after: float) -> None:
    """a: a 503 puts it down for 600 s, then the last-resort try meets a 429."""
    for _ in range(2):
        with pytest.raises(AllProvidersFailedError):
            await sup.chat(HI)
        await settle()
    error = sup.status()["providers"]["a"]["last_error"]
    assert error["category"] == "rate_limit"
    assert error["retry_at"] == iso(1_800_000_000.0 + retry_after)  # Retry-After from the 429 (virtual clock)


async def test_last_resort_leaves_a_long_429_alone_until_its_wait_is_over(tmp_path: Path) -> None:
    """Retry-After longer than rate_limit_max_wait_s: fail untried now, try the provider once it is over."""
    async with running(tmp_path, "a", rate_limit_max_wait_s=10) as (sup, clock, (a,)):
        a.script(error(503), error(429, retry_after=30))
        await _down_then_rate_limited(sup, 30)
        with pytest.raises(AllProvidersFailedError, match="no attempt was made"):
            await sup.chat(HI)
        await clock.advance(31)
        reply = await sup.chat(HI)
        assert (reply.provider, a.completions) == ("a", 3)  # no probe: a's cooldown runs 600 s
        await sup.wait_for_state("a", "healthy")


async def test_last_resort_waits_out_a_short_429(tmp_path: Path) -> None:
    """Retry-After within rate_limit_max_wait_s and nothing else up: the request waits, then tries."""
    async with running(tmp_path, "a", rate_limit_max_wait_s=10) as (sup, clock, (a,)):
        a.script(error(503), error(429, retry_after=5))
        await _down_then_rate_limited(sup, 5)
        replies = []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                replies.append(await sup.chat(HI))
            tg.start_soon(call)
            await settle()
            await clock.advance(4)
            assert (replies, a.completions) == ([], 2)  # still waiting
            await clock.advance(2)
        assert (replies[0].provider, a.completions) == ("a", 3)


@pytest.mark.parametrize(("fault", "category"), [
    (error(401), "auth_failure"),
    (error(429, retry_after=900), "rate_limit"),
    (error(404, code="model_not_found"), "model_not_found"),
])
async def test_last_resort_leaves_alone_what_will_not_pass_by_itself(
        tmp_path: Path, fault: Any, category: str) -> None:
    """A bad key, a missing model or a 429 is not retried as a last resort: the request fails untried."""
    async with running(tmp_path, "a") as (sup, _, (a,)):
        a.script(fault)
        with pytest.raises(AllProvidersFailedError):
            await sup.chat(HI)
        await sup.wait_for_state("a", "cooldown")
        with pytest.raises(AllProvidersFailedError, match="a is cooldown"):
            await sup.chat(HI)
        assert a.completions == 1
        assert sup.status()["providers"]["a"]["last_error"]["category"] == category


async def test_unconfigured_provider_is_never_called(tmp_path: Path) -> None:
    """A provider whose key variable is unset gets no traffic, and the error names the variable."""
    async with FakeUpstream("a") as a:
        raw = make_config(tmp_path, a)
        cfg = parse_config({"state": {"path": raw.state.path}, "providers": [
            {"name": "a", "base_url": a.base_url, "models": {"chat": "m"}, "api_key_env": "A_KEY"}]}, env={})
        async with Supervisor(cfg, clock=VirtualClock()) as sup:
            with pytest.raises(AllProvidersFailedError, match="A_KEY is not set"):
                await sup.chat(HI)
        assert a.completions == 0
        assert a.health_requests == 0


async def test_api_key_is_sent_as_bearer(tmp_path: Path) -> None:
    """The provider's key, read from its variable, goes out as a Bearer token."""
    async with FakeUpstream("a", api_key="sk-test-123") as a:
        cfg = parse_config({"state": {"path": str(tmp_path / "s.db")}, "providers": [
            {"name": "a", "base_url": a.base_url, "models": {"chat": "m"}, "api_key_env": "A_KEY"}]},
            env={"A_KEY": "sk-test-123"})
        async with Supervisor(cfg, clock=VirtualClock()) as sup:
            assert (await sup.chat(HI)).provider == "a"


async def test_failback_after_probe(tmp_path: Path) -> None:
    """After the cooldown a probe passes and traffic returns to the primary at once."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, _b)):
        a.script(error(503))
        assert (await sup.chat(HI)).provider == "b"
        await clock.advance(599)
        assert (await sup.chat(HI)).provider == "b"
        assert a.completions == 1  # no user request reached the primary while cooling down
        await clock.advance(2)
        await sup.wait_for_state("a", "healthy")
        assert (await sup.chat(HI)).provider == "a"
        await sup.refresh()
        assert sup.status()["avg_recovery_time_seconds"] == 600.0


async def test_failed_probe_reopens_longer(tmp_path: Path) -> None:
    """A failed probe sends the provider back into a cooldown twice as long."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, _b)):
        a.script(error(503), error(503))
        await sup.chat(HI)
        await clock.advance(600)
        await sup.wait_for_state("a", "cooldown")
        view = next(v for v in sup.routing.providers if v.name == "a")
        assert view.cooldown_until == clock.now() + 1200


# FakeUpstream leaves one server-side socket behind after refuse -> accept on
# plain asyncio (found, not yet fixed: see the issue note); collect it here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_connection_error_recovers_early_on_ping(tmp_path: Path) -> None:
    """A provider refused then reachable again recovers at its next ping, before its cooldown ends."""
    health = {"ping_interval_s": 30, "full_interval_s": 0, "api_interval_s": 0}
    async with running(tmp_path, "a", "b", health=health) as (sup, clock, (a, _b)):
        await a.refuse_connections()
        view_start = clock.now()
        assert (await sup.chat(HI)).provider == "b"
        await sup.wait_for_state("a", "cooldown")
        await a.accept_connections()
        await clock.advance(31)
        await sup.wait_for_state("a", "healthy")
        assert clock.now() - view_start < 300
    gc.collect()


async def test_failing_health_check_takes_provider_out(tmp_path: Path) -> None:
    """A scheduled full check that gets 401 puts the provider in an auth cooldown before any request."""
    health = {"ping_interval_s": 0, "full_interval_s": 60, "api_interval_s": 0}
    async with running(tmp_path, "a", "b", health=health) as (sup, clock, (a, _b)):
        a.set_health(error(401))
        await clock.advance(61)
        await sup.wait_for_state("a", "cooldown")
        assert (await sup.chat(HI)).provider == "b"


# ---------------------------------------------------------------- streaming


async def test_stream_answers(tmp_path: Path) -> None:
    """A stream yields the provider's chunks, whole."""
    async with running(tmp_path, "a") as (sup, _, _fakes):
        chunks = [c async for c in sup.stream(HI)]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == "Hello from fake"


async def test_stream_falls_back_before_first_chunk(tmp_path: Path) -> None:
    """A provider failing before its first chunk is replaced invisibly."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(error(503))
        async with await sup.open_stream(HI) as stream:
            assert stream.provider == "b"
            async for _ in stream:
                pass
            assert stream.partial_text == "Hello from fake"


async def test_stream_cut_after_first_chunk_raises_with_partial_text(tmp_path: Path) -> None:
    """A stream cut mid-way whose restart elsewhere says something else raises with the text so far."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(cut_stream(2, text="abcdefgh", chunks=4))
        got = []
        with pytest.raises(StreamInterruptedError) as caught:
            async with await sup.open_stream(HI) as stream:
                async for payload in stream:
                    got.append(payload)
        assert caught.value.provider == "a"
        assert caught.value.partial_text == "abcd"
        assert b.completions == 1  # asked to go on; its answer differs, so it is not spliced on


async def test_stream_stall_counts_as_timeout(tmp_path: Path) -> None:
    """A stream silent longer than stream_idle_timeout_s fails as a timeout."""
    async with running(tmp_path, "a", stream_idle_timeout_s=5) as (sup, clock, (a,)):
        a.script(stall_stream(1, text="abcd", chunks=2))
        errors: list[StreamInterruptedError] = []
        async with anyio.create_task_group() as tg:
            async def consume() -> None:
                try:
                    async with await sup.open_stream(HI) as stream:
                        async for _ in stream:
                            pass
                except StreamInterruptedError as exc:
                    errors.append(exc)
            tg.start_soon(consume)
            await a.wait_hanging()
            await clock.advance(6)
        assert errors[0].attempt.category == "timeout"
        assert errors[0].partial_text == "ab"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("messages", "params", "field"),
    [
        pytest.param([], {}, "messages", id="empty"),
        pytest.param([{"content": "x"}], {}, "messages[0].role", id="no-role"),
        pytest.param([{"role": "wizard", "content": "x"}], {}, "messages[0].role", id="bad-role"),
        pytest.param("hello", {}, "messages", id="not-a-list"),
        pytest.param(HI, {"temperature": "hot"}, "temperature", id="temperature-type"),
        pytest.param(HI, {"max_tokens": 0}, "max_tokens", id="max-tokens-range"),
    ],
)
async def test_malformed_request_names_the_field(tmp_path: Path, messages: Any, params: dict[str, Any],
                                                 field: str) -> None:
    """A malformed request raises a ValueError naming the field, and reaches no provider."""
    async with running(tmp_path, "a") as (sup, _, (a,)):
        with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")) as caught:
            await sup.chat(messages, **params)
        assert isinstance(caught.value, InvalidRequestError)
        assert caught.value.param == field
        assert a.completions == 0


async def test_unknown_model(tmp_path: Path) -> None:
    """An unknown logical model is refused, naming the known ones."""
    async with running(tmp_path, "a") as (sup, _, _fakes):
        with pytest.raises(UnknownModelError, match="chat"):
            await sup.chat(HI, model="gpt-9")


async def test_corrupt_state_file_names_the_path(tmp_path: Path) -> None:
    """A state file that is not SQLite gives a StoreError naming the path."""
    async with FakeUpstream("a") as a:
        cfg = make_config(tmp_path, a)
        await anyio.Path(cfg.state.path).write_bytes(b"this is not a database" * 100)
        with pytest.raises(StoreError, match=r"state\.db"):
            async with Supervisor(cfg, clock=VirtualClock()):
                pass


# ---------------------------------------------------------------- restarts


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    """Cooldown, failure count, cooldown growth and metrics survive closing and reopening."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        cfg = make_config(tmp_path, a, b)
        clock = VirtualClock()
        a.script(error(503), error(503))
        async with Supervisor(cfg, clock=clock) as sup:
            await sup.chat(HI)
            await clock.advance(600)  # probe fails: cooldown level 2, 1200 s
            await sup.wait_for_state("a", "cooldown")
            before = next(v for v in sup.routing.providers if v.name == "a")
            await sup.refresh()
            metrics_before = sup.status()["providers"]["b"]["metrics"]
        assert before.state == "cooldown"
        assert before.cooldown_level == 2
        async with Supervisor(cfg, clock=clock) as sup:
            after = next(v for v in sup.routing.providers if v.name == "a")
            assert (after.state, after.cooldown_until, after.failure_count, after.cooldown_level) == (
                before.state, before.cooldown_until, before.failure_count, before.cooldown_level)
            await sup.refresh()
            assert sup.status()["providers"]["b"]["metrics"]["requests_total"] == metrics_before["requests_total"]
            await sup.refresh()
            assert sup.status()["fallback_events_last_24h"] == 1
            calls = a.completions
            assert (await sup.chat(HI)).provider == "b"
            assert a.completions == calls  # still skipped until its cooldown ends
            await clock.advance(1201)
            await sup.wait_for_state("a", "healthy")


@pytest.mark.parametrize("actor", ["error_classifier", "priority_selector", "recovery_manager",
                                   "health_monitor", "metrics_collector"])
async def test_crashed_actor_restarts_during_traffic(tmp_path: Path, actor: str) -> None:
    """An actor that crashes mid-incident is restarted; requests keep being answered and decisions resume."""
    async with running(tmp_path, "a", "b") as (sup, clock, (a, _b)):
        sup.actors[actor].crash_next(RuntimeError("injected"))
        for _ in range(3):  # the message an actor crashed on is lost: the next failure decides
            a.script(error(503))
            assert (await sup.chat(HI)).provider == "b"
            await settle()
            if sup.state_of("a") == "cooldown":
                break
        assert sup.restarts.get(actor) == 1
        assert sup.state_of("a") == "cooldown"
        await clock.advance(601)
        await sup.wait_for_state("a", "healthy")
        assert (await sup.chat(HI)).provider == "a"
        assert sup.status()["actors"][actor]["restarts"] == 1


async def test_disable_and_enable(tmp_path: Path) -> None:
    """A disabled provider gets no traffic until enabled again."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        assert await sup.disable("a") == "disabled"
        assert (await sup.chat(HI)).provider == "b"
        assert await sup.enable("a") == "healthy"
        assert (await sup.chat(HI)).provider == "a"
        assert a.completions == 1


async def test_uptime_is_the_share_of_time_usable_not_of_requests_answered(tmp_path: Path) -> None:
    """Down 355 s of 780 s with no traffic sent to it: uptime ~54 %, while its success rate is 0 % of 1."""
    async with running(tmp_path, "a", "b", cooldown_s={"service_unavailable": 355}) as (sup, clock, (a, _b)):
        await clock.advance(100)
        a.script(error(503))
        assert (await sup.chat(HI)).provider == "b"
        await settle()
        await clock.advance(355)  # the cooldown ends; the probe (a 1-token completion) passes
        await sup.wait_for_state("a", "healthy")
        await clock.advance(780 - 455)
        for _ in range(3):
            assert (await sup.chat(HI)).provider == "a"
        await settle()
        await sup.refresh()
        m = sup.status()["providers"]["a"]["metrics"]
        assert m["uptime_percent"] == pytest.approx(100 * (780 - 355) / 780, abs=0.5)
        assert m["uptime_percent_since_start"] == pytest.approx(m["uptime_percent"], abs=0.01)
        assert m["success_rate_percent"] == pytest.approx(100 * 3 / 4, abs=0.01)


async def test_time_the_service_was_stopped_is_not_observed(tmp_path: Path) -> None:
    """After a restart the day's history carries over, but the hours it was not running count for nothing."""
    async with FakeUpstream("a") as a, FakeUpstream("b") as b:
        config = make_config(tmp_path, a, b, cooldown_s={"service_unavailable": 100})
        clock = VirtualClock()
        async with Supervisor(config, clock=clock) as sup:
            a.script(error(503))
            await sup.chat(HI)
            await clock.advance(150)
            await sup.wait_for_state("a", "healthy")
            await clock.advance(50)  # observed: 100 s down of 200 s
        clock = VirtualClock(clock.now() + 3 * 3600)  # stopped for three hours
        async with Supervisor(config, clock=clock) as sup:
            await clock.advance(200)
            await settle()
            await sup.refresh()
            m = sup.status()["providers"]["a"]["metrics"]
            assert m["uptime_percent"] == pytest.approx(100 * 300 / 400, abs=0.5)  # the day: 300 s up of 400
            assert m["uptime_percent_since_start"] == 100.0  # this run: never down
