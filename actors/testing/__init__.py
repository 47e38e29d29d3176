"""Test support for users' own tests: a fake provider on a real socket, with scripted faults.

::

    from actors.testing import FakeUpstream, error, ok

    async with FakeUpstream("primary") as primary:
        primary.script(error(503), ok("back"))
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
from actors.testing.upstream import FakeUpstream, RecordedRequest

__all__ = (
    "FakeUpstream",
    "Fault",
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
