"""Fixtures for the shared-state tests: a real redis-server per test, and SharedState clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.edges.shared import SharedState
from tests.redis_server import RedisServer

#: ``clients(count, **connect_options)``: that many instances of one cluster, closed after the block.
Clients = Callable[..., AbstractAsyncContextManager[list[SharedState]]]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a free loopback port, stopped after the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
