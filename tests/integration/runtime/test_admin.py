"""Admin that works: enable restores at once, disable takes out, probe checks now and restores on a pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.core.errors import UnknownProviderError
from actors.testing import error, ok
from tests.helpers import HI, running, settle

pytestmark = pytest.mark.anyio


async def test_enable_restores_a_provider_in_cooldown_at_once(tmp_path: Path) -> None:
    """A 503 put it in a 600 s cooldown; enable puts it back now, and the next request goes to it."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(error(503))
        assert (await sup.chat(HI)).provider == "b"
        await settle()
        assert sup.state_of("a") == "cooldown"
        assert await sup.enable("a") == "healthy"
        view = sup.status()["providers"]["a"]
        assert (view["failure_count"], view["cooldown_until"]) == (0, None)
        assert (await sup.chat(HI)).provider == "a"


async def test_disable_then_enable_never_leaves_a_provider_stuck(tmp_path: Path) -> None:
    """Disable a cooling provider, enable it: healthy, and its pings are not needed to end anything."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(error(503))
        await sup.chat(HI)
        await settle()
        assert await sup.disable("a") == "disabled"
        assert (await sup.chat(HI)).provider == "b"
        assert await sup.enable("a") == "healthy"
        assert (await sup.chat(HI)).provider == "a"


async def test_probe_of_a_healed_provider_restores_it(tmp_path: Path) -> None:
    """A provider down after a 503 whose upstream answers again is back the moment a probe passes."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(error(503))
        await sup.chat(HI)
        await settle()
        result = await sup.probe("a")  # the fake's default answer is ok: it healed
        assert (result["ok"], result["tier"], result["state"]) == (True, "api", "healthy")
        assert (await sup.chat(HI)).provider == "a"


async def test_probe_that_fails_says_why_and_keeps_it_down(tmp_path: Path) -> None:
    """A probe that meets a 503 returns the failure and the provider stays out of routing."""
    async with running(tmp_path, "a", "b") as (sup, _, (a, _b)):
        a.script(error(503), error(503, "still overloaded"))
        await sup.chat(HI)
        await settle()
        result = await sup.probe("a")
        assert (result["ok"], result["status"]) == (False, 503)
        assert "still overloaded" in result["message"]
        assert result["state"] in ("cooldown", "unhealthy")
        a.set_default(ok())
        assert (await sup.chat(HI)).provider == "b"


async def test_admin_commands_name_an_unknown_provider(tmp_path: Path) -> None:
    """enable, disable and probe of a name not in the config raise UnknownProviderError naming the known."""
    async with running(tmp_path, "a", "b") as (sup, _, _fakes):
        for command in (sup.enable, sup.disable, sup.probe):
            with pytest.raises(UnknownProviderError, match="configured are a, b"):
                await command("nope")
