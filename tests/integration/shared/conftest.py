"""Fixtures for the shared-state tests: a real redis-server per test, and SharedState clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.core.config import Config, parse_config
from actors.edges.shared import SharedState
from actors.runtime.supervisor import Supervisor
from actors.testing import FakeUpstream
from tests.redis_server import RedisServer

#: ``clients(count, **connect_options)``: that many instances of one cluster, closed after the block.
Clients = Callable[..., AbstractAsyncContextManager[list[SharedState]]]


@pytest.fixture
def clients(redis_server: RedisServer) -> Clients:
    """``async with clients(3) as [a, b, c]``: SharedState instances ``i0``, ``i1``... of one cluster."""

    @asynccontextmanager
    async def opened(count: int, **options: Any) -> AsyncIterator[list[SharedState]]:
        options.setdefault("prefix", "pf:test")
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(
                SharedState.connect(redis_server.url, instance_id=f"i{i}", **options)) for i in range(count)]

    return opened


#: ``instances(count, *fakes, **routing)``: that many Supervisors of one cluster (real clock), each its
#: own state file, the fakes as providers in priority order.
Instances = Callable[..., AbstractAsyncContextManager[list[Supervisor]]]


def cluster_config(tmp_path: Path, url: str, index: int, *fakes: FakeUpstream, health: dict[str, Any] | None = None,
                   state: dict[str, Any] | None = None, extra: dict[str, dict[str, Any]] | None = None,
                   **routing: Any) -> Config:
    """Instance ``index``'s config: its own state file, the shared Redis, no scheduled health checks;
    ``extra``: more keys of some providers, by name (``{"a": {"rpm": 6}}``)."""
    return parse_config({
        "state": {"path": str(tmp_path / f"i{index}.db"), "shared_url": url, "shared_prefix": "pf:cluster",
                  "shared_reconcile_s": 1, **(state or {})},
        "routing": {"second_pass_backoff_s": 0, **routing},
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, "probe_min_interval_s": 0,
                   "api_timeout_s": 2, **(health or {})},
        "providers": [{"name": f.name, "base_url": f.base_url, "models": {"chat": f"{f.name}-model"},
                       "priority": i + 1, "timeout_s": 5, **(extra or {}).get(f.name, {})}
                      for i, f in enumerate(fakes)],
    }, env={})


@pytest.fixture
def instances(tmp_path: Path, redis_server: RedisServer) -> Instances:
    @asynccontextmanager
    async def opened(count: int, *fakes: FakeUpstream, **options: Any) -> AsyncIterator[list[Supervisor]]:
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(
                Supervisor(cluster_config(tmp_path, redis_server.url, i, *fakes, **options)))
                for i in range(count)]

    return opened
