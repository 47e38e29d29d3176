"""Test support for users' own tests: a fake provider on a real socket, with scripted faults.

::

    from actors.testing import FakeUpstream, error, ok

    async with FakeUpstream("primary") as primary:
        primary.script(error(503), ok("back"))

:class:`FakeVertex` and :class:`FakeSnowflake` script the same faults behind Vertex AI's and
Snowflake Cortex's sign-in, paths and error shapes (they need the ``vertex`` / ``snowflake`` extra).
"""

from actors.testing.faults import (
    Fault,
    context_length_exceeded,
    cut_stream,
    error,
    garbage,
    hang,
    ok,
    reset,
    stall_stream,
)
from actors.testing.ratelimit import RateLimit
from actors.testing.snowflake import FakeSnowflake
from actors.testing.upstream import FakeUpstream, RecordedRequest
from actors.testing.vertex import FakeVertex

__all__ = (
    "FakeSnowflake",
    "FakeUpstream",
    "FakeVertex",
    "Fault",
    "RateLimit",
    "RecordedRequest",
    "context_length_exceeded",
    "cut_stream",
    "error",
    "garbage",
    "hang",
    "ok",
    "reset",
    "stall_stream",
)
