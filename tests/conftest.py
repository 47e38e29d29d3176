"""Shared fixtures: every async test runs on asyncio and on asyncio+uvloop."""

from __future__ import annotations

import sys
from typing import Any

import pytest

pytest_plugins = ["tests.redis_server"]  # the redis_server fixture, for any test that needs one

_BACKENDS: list[Any] = [pytest.param(("asyncio", {}), id="asyncio")]
if sys.platform != "win32":
    _BACKENDS.append(pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param
