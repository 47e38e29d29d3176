"""Time, injected.

Every policy timer (cooldowns, probe schedules, request deadlines, metric
windows) reads a :class:`Clock`; nothing in the package calls
``time.time()`` or ``anyio.sleep()`` for policy. Production uses
:class:`SystemClock`; tests and replay use :class:`VirtualClock`, whose time
only moves when the test says so (trio's ``MockClock.jump`` is the model).

Times are wall-clock epoch seconds (floats) so that cooldowns written to
SQLite still mean the same instant after a restart.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from types import TracebackType
from typing import Protocol, runtime_checkable

import anyio

__all__ = ("Clock", "DeadlineScope", "SystemClock", "VirtualClock")


class DeadlineScope(Protocol):
    """What :meth:`Clock.move_on_at` returns: a ``with`` scope that says whether its deadline cut it short."""

    @property
    def cancelled_caught(self) -> bool: ...

    def __enter__(self) -> DeadlineScope: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None: ...


@runtime_checkable
class Clock(Protocol):
    """What the actors and the request path need to know about time."""

    def now(self) -> float:
        """The current time, in epoch seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once :meth:`now` has reached ``deadline``."""
        ...

    def move_on_at(self, deadline: float) -> DeadlineScope:
        """A cancel scope that cancels itself when ``deadline`` (a clock time) is reached.

        The one timer path: actors wait for their next message under it, the
        request path bounds each attempt with it. Use it as
        ``with clock.move_on_at(d) as scope: ...`` and check
        ``scope.cancelled_caught`` afterwards (anyio's ``move_on_after``).
        """
        ...


class SystemClock:
    """The real wall clock, with timers on the event loop's monotonic clock."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))

    def move_on_at(self, deadline: float) -> DeadlineScope:
        if math.isinf(deadline):
            return anyio.CancelScope()
        return anyio.CancelScope(deadline=anyio.current_time() + (deadline - time.time()))


class _Timer:
    __slots__ = ("deadline", "event", "fired", "scope")

    def __init__(self, deadline: float, scope: anyio.CancelScope | None) -> None:
        self.deadline = deadline
        self.scope = scope
        self.event = anyio.Event() if scope is None else None
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        if self.scope is not None:
            self.scope.cancel()
        elif self.event is not None:
            self.event.set()


class _VirtualScope:
    """An anyio cancel scope whose timer is forgotten when the scope exits, fired or not."""

    __slots__ = ("_scope", "_timer")

    def __init__(self, scope: anyio.CancelScope, timer: _Timer) -> None:
        self._scope = scope
        self._timer = timer

    @property
    def cancelled_caught(self) -> bool:
        return self._scope.cancelled_caught

    def __enter__(self) -> _VirtualScope:
        self._scope.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        self._timer.fired = True  # left: next_deadline() and advance() no longer see it
        return self._scope.__exit__(exc_type, exc, tb)


class VirtualClock:
    """A clock that moves only when told to.

    ``await clock.advance(30)`` moves time forward by 30 seconds, firing every
    timer that falls due on the way, in deadline order, and letting the woken
    tasks run (``anyio.wait_all_tasks_blocked``) before moving on. Tests thus
    check a 300 s cooldown without sleeping for it.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def _register(self, deadline: float, scope: anyio.CancelScope | None) -> _Timer:
        timer = _Timer(deadline, scope)
        if deadline <= self._now:
            timer.fire()
        elif not math.isinf(deadline):
            heapq.heappush(self._timers, (deadline, next(self._seq), timer))
        return timer

    async def sleep_until(self, deadline: float) -> None:
        timer = self._register(deadline, None)
        if not timer.fired:
            assert timer.event is not None
            try:
                await timer.event.wait()
            finally:
                timer.fired = True  # cancelled: nobody waits for it any more
        else:
            await anyio.lowlevel.checkpoint()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    def move_on_at(self, deadline: float) -> DeadlineScope:
        scope = anyio.CancelScope()
        return _VirtualScope(scope, self._register(deadline, scope))

    def next_deadline(self) -> float | None:
        """When the earliest pending timer falls due, if any."""
        self._discard_fired()
        return self._timers[0][0] if self._timers else None

    def _discard_fired(self) -> None:
        while self._timers and self._timers[0][2].fired:
            heapq.heappop(self._timers)

    def move_to(self, target: float) -> None:
        """Set the time without firing timers or running tasks (replay drives its actors itself)."""
        if target < self._now:
            raise ValueError(f"cannot move a clock backwards (move_to({target}) at {self._now})")
        self._now = float(target)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds}))")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, target: float) -> None:
        """Move time forward to ``target``, firing due timers in order."""
        await anyio.wait_all_tasks_blocked()
        while True:
            self._discard_fired()
            if not self._timers or self._timers[0][0] > target:
                break
            deadline, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, deadline)
            timer.fire()
            await anyio.wait_all_tasks_blocked()
        self._now = max(self._now, target)
        await anyio.wait_all_tasks_blocked()
