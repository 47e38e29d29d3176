"""Fixtures of the LangChain tests: fake providers served from a loop of their own, for sync tests.

A sync test has no running event loop, so its FakeUpstreams run on an anyio
blocking portal (a loop in a thread); async tests start theirs in their own
loop. These tests need the ``langchain`` extra: without it they are not collected
(and in CI, CI=true, that is an error).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import anyio.from_thread
import pytest
from anyio.from_thread import BlockingPortal

from actors.core.config import Config
from actors.testing import FakeUpstream, error, ok
from tests.helpers import make_config

if find_spec("langchain_core") is None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):  # CI installs every extra the tests need
        raise RuntimeError("langchain-core is missing: .ci/run must install the langchain extra")
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    """An event loop in a thread, for servers a sync test needs."""
    with anyio.from_thread.start_blocking_portal() as portal:
        yield portal


@pytest.fixture
def pair(portal: BlockingPortal, tmp_path: Path) -> Iterator[tuple[FakeUpstream, FakeUpstream, Config]]:
    """A primary answering 503 and a backup answering "from backup", on the portal, and their config."""
    primary = FakeUpstream("primary", default=error(503))
    backup = FakeUpstream("backup", default=ok("from backup"))
    portal.call(primary.start)
    try:
        portal.call(backup.start)
        try:
            yield primary, backup, make_config(tmp_path, primary, backup)
        finally:
            portal.call(backup.close)
    finally:
        portal.call(primary.close)
