"""examples/scale-out/: the config every instance runs, the compose file and the plain commands hold together."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed

from actors.core.config import load_config

HERE = Path(__file__).resolve().parents[3] / "examples" / "scale-out"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((HERE / "docker-compose.yml").read_text())
    return data


def test_the_config_shares_state_through_the_composed_redis() -> None:
    """Every instance's config is valid, listens for the balancer and points at the compose file's Redis."""
    config = load_config(HERE / "config.toml", env={})
    assert config.state.shared_url == "redis://redis:6379/0"
    assert config.server.host == "0.0.0.0"
    assert "redis" in compose()["services"]


def test_three_gateways_each_with_its_own_state_behind_the_balancer() -> None:
    """Three gateways, each its own state volume (one owner per state file), all in nginx's upstream."""
    services = compose()["services"]
    gateways = sorted(name for name in services if name.startswith("gateway"))
    assert gateways == ["gateway1", "gateway2", "gateway3"]
    volumes = {v for g in gateways for v in services[g]["volumes"] if v.startswith("state")}
    assert len(volumes) == 3
    upstream = set(re.findall(r"server (gateway\d):8080", (HERE / "nginx.conf").read_text()))
    assert upstream == set(gateways)


def test_the_plain_commands_are_valid_shell() -> None:
    """run-local.sh parses (sh -n) and rewrites the Redis host for one machine."""
    script = HERE / "run-local.sh"
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=10)
    assert "redis://127.0.0.1:6379/0" in script.read_text()
