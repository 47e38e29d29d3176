"""A proxy's own 400 (LiteLLM's, OpenRouter's) is failed over, not handed to the caller; a caller's 400 is."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.core.errors import UpstreamRejectedError
from actors.testing import Fault, error, ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("fault", "category", "state"), [
    # LiteLLM's exact body for a key that isn't its master key, with no database (BerriAI/litellm#12273).
    pytest.param(error(400, "No connected db.", type="no_db_connection", code="400"), "auth_failure",
                 "cooldown", id="litellm-no-connected-db"),
    pytest.param(error(400, "400: {'error': '/chat/completions: Invalid model name passed in model=groq-missing."
                            " Call `/v1/models` to view available models for your key.'}", type="None",
                       code="400"), "model_not_found", "cooldown", id="litellm-invalid-model"),
    pytest.param(error(400, "litellm.BadRequestError: LLM Provider NOT provided. Pass in the LLM provider you"
                            " are trying to call. You passed model=groq-70b", code="400"),
                 "proxy_error", "cooldown", id="litellm-no-provider"),
])
async def test_a_proxy_400_falls_over_and_cools_the_primary(tmp_path: Path, fault: object, category: str,
                                                            state: str) -> None:
    """The healthy secondary answers; the primary is out of routing for the proxy's fault."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(fault)  # type: ignore[arg-type]
        b.script(ok("from b"))
        reply = await sup.chat(HI)
        await settle()
        assert (reply.provider, reply.text) == ("b", "from b")
        assert sup.state_of("a") == state
        assert sup.status()["providers"]["a"]["last_error"]["category"] == category


@pytest.mark.parametrize("fault", [
    pytest.param(error(400, "Invalid value for 'temperature': must be at most 2.", param="temperature"),
                 id="openai-param"),
    pytest.param(error(400, "max_tokens: Field required", type="invalid_request_error"), id="anthropic-field"),
    pytest.param(error(400, "The response was filtered due to the prompt triggering Azure OpenAI's content"
                       " management policy.", code="content_filter"), id="content-filter"),
])
async def test_a_callers_400_still_goes_back_to_the_caller(tmp_path: Path, fault: Fault) -> None:
    """A 400 naming a request field, or a content-policy refusal, is the caller's: returned as it came."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(fault)
        with pytest.raises(UpstreamRejectedError) as caught:
            await sup.chat(HI)
        assert fault.message in str(caught.value)
        await settle()
        assert b.completions == 0
        assert sup.state_of("a") == "healthy"


async def test_a_400_the_next_provider_does_not_give_is_the_providers(tmp_path: Path) -> None:
    """An unclear 400 (no field named): the next provider answers the same request, so it was a's fault."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(error(400, "Unrecognized request argument supplied: frobnicate"))
        reply = await sup.chat(HI)
        assert (reply.provider, b.completions) == ("b", 1)
        await settle()
        view = sup.status()["providers"]["a"]
        assert view["state"] == "degraded"  # counted: failure_threshold of them take it out
        assert view["last_error"]["category"] == "proxy_error"


async def test_a_400_the_next_provider_gives_too_is_the_callers(tmp_path: Path) -> None:
    """An unclear 400 that the next provider gives too: the first 400 goes back; nobody is penalised."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(error(400, "Unrecognized request argument supplied: frobnicate"))
        b.script(error(400, "unknown field frobnicate"))
        with pytest.raises(UpstreamRejectedError) as caught:
            await sup.chat(HI)
        assert caught.value.provider == "a"
        assert "frobnicate" in str(caught.value)
        await settle()
        assert (sup.state_of("a"), sup.state_of("b")) == ("healthy", "healthy")
        events = [e.message for e in await sup.store.events(types=["attempt_failed"])]
        assert [(e.provider, e.whose) for e in events] == [("a", "caller"), ("b", "caller")]


async def test_an_unclear_400_with_no_one_else_to_ask_goes_back(tmp_path: Path) -> None:
    """The only provider of the model answers an unclear 400: it goes back as it came, no penalty."""
    async with running(tmp_path, "a") as (sup, _, (a,)):
        a.script(error(400, "Unrecognized request argument supplied: frobnicate"))
        with pytest.raises(UpstreamRejectedError):
            await sup.chat(HI)
        await settle()
        assert sup.state_of("a") == "healthy"


async def test_a_full_check_meeting_no_connected_db_takes_the_provider_out(tmp_path: Path) -> None:
    """LiteLLM's 400 to the authenticated model listing takes it out of routing before any request."""
    health = {"ping_interval_s": 0, "full_interval_s": 60, "api_interval_s": 0}
    async with running(tmp_path, "a", "b", health=health) as (sup, clock, (a, _b)):
        a.set_health(error(400, "No connected db.", type="no_db_connection", code="400"))
        await clock.advance(61)
        await sup.wait_for_state("a", "cooldown")
        assert (await sup.chat(HI)).provider == "b"
