"""A proxy's own 400 (LiteLLM's, OpenRouter's) is failed over, not handed to the caller; a caller's 400 is."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.core.errors import UpstreamRejectedError
from actors.testing import error, ok
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


async def test_a_callers_400_still_goes_back_to_the_caller(tmp_path: Path) -> None:
    """A 400 naming a request field is the caller's: returned, no fallback, no penalty."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, b)):
        a.script(error(400, "Unrecognized request argument supplied: frobnicate", type="invalid_request_error",
                       code=None))
        with pytest.raises(UpstreamRejectedError):
            await sup.chat(HI)
        await settle()
        assert b.completions == 0
        assert sup.state_of("a") == "healthy"


async def test_a_full_check_meeting_no_connected_db_takes_the_provider_out(tmp_path: Path) -> None:
    """LiteLLM's 400 to the authenticated model listing takes it out of routing before any request."""
    health = {"ping_interval_s": 0, "full_interval_s": 60, "api_interval_s": 0}
    async with running(tmp_path, "a", "b", health=health) as (sup, clock, (a, _b)):
        a.set_health(error(400, "No connected db.", type="no_db_connection", code="400"))
        await clock.advance(61)
        await sup.wait_for_state("a", "cooldown")
        assert (await sup.chat(HI)).provider == "b"
