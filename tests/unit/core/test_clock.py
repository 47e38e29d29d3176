"""The clocks: VirtualClock's timers, in deadline then registration order, and SystemClock's one timer path."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from actors.core.clock import Clock, SystemClock, VirtualClock

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0

Woken = list[tuple[str, float]]


async def sleeper(clock: VirtualClock, name: str, deadline: float, woken: Woken) -> None:
    """Sleep until ``deadline``, then note the name and the clock's time."""
    await clock.sleep_until(deadline)
    woken.append((name, clock.now()))


async def scoped(clock: VirtualClock, name: str, deadline: float, woken: Woken) -> None:
    """Wait forever under ``move_on_at(deadline)``, then note the name and the clock's time."""
    with clock.move_on_at(deadline):
        await anyio.sleep_forever()
    woken.append((name, clock.now()))


Waiter = Callable[[VirtualClock, str, float, Woken], Coroutine[Any, Any, None]]
WAITERS: dict[str, Waiter] = {"sleep_until": sleeper, "move_on_at": scoped}


async def register(tg: anyio.abc.TaskGroup, waiter: Waiter, clock: VirtualClock, name: str,
                   deadline: float, woken: Woken) -> None:
    """Start one waiter and let it register its timer before anything else is started."""
    tg.start_soon(waiter, clock, name, deadline, woken)
    await anyio.wait_all_tasks_blocked()


@pytest.mark.parametrize("kind", list(WAITERS))
async def test_advance_fires_timers_in_deadline_order(kind: str) -> None:
    """Timers registered out of order fire in deadline order, each with the clock at its own deadline."""
    clock, woken = VirtualClock(T0), Woken()
    async with anyio.create_task_group() as tg:
        for name, offset in (("third", 3.0), ("first", 1.0), ("second", 2.0)):
            await register(tg, WAITERS[kind], clock, name, T0 + offset, woken)
        await clock.advance(5)
    assert woken == [("first", T0 + 1), ("second", T0 + 2), ("third", T0 + 3)]
    assert clock.now() == T0 + 5


async def test_a_timer_fires_when_advance_reaches_it_not_before() -> None:
    """A timer 3 s ahead is still waiting after 2.5 s and has fired once the clock reaches 3 s."""
    clock, woken = VirtualClock(T0), Woken()
    async with anyio.create_task_group() as tg:
        await register(tg, sleeper, clock, "t", T0 + 3, woken)
        await clock.advance(2.5)
        assert woken == []
        await clock.advance(0.5)
        assert woken == [("t", T0 + 3)]


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param(("sleep_until",) * 3, id="sleep_until"),
        pytest.param(("move_on_at",) * 3, id="move_on_at"),
        pytest.param(("move_on_at", "sleep_until", "move_on_at"), id="mixed"),
    ],
)
async def test_equal_deadlines_fire_in_registration_order(kinds: tuple[str, str, str]) -> None:
    """Timers with the same deadline fire first-registered first (names chosen so no other order matches)."""
    clock, woken = VirtualClock(T0), Woken()
    async with anyio.create_task_group() as tg:
        for name, kind in zip(("c", "a", "b"), kinds, strict=True):
            await register(tg, WAITERS[kind], clock, name, T0 + 5, woken)
        await clock.advance(10)
    assert [name for name, _ in woken] == ["c", "a", "b"]


async def test_advance_refuses_a_negative_step() -> None:
    """``advance(-1)`` raises ValueError and leaves the time alone."""
    clock = VirtualClock(T0)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    assert clock.now() == T0


async def test_advance_to_an_earlier_time_never_moves_the_clock_back() -> None:
    """``advance_to`` a time already passed leaves the clock where it was (raising is acceptable too)."""
    clock = VirtualClock(T0)
    with contextlib.suppress(ValueError):
        await clock.advance_to(T0 - 10)
    assert clock.now() == T0


def test_move_to_refuses_to_go_backwards() -> None:
    """``move_to`` an earlier time raises ValueError and leaves the time alone."""
    clock = VirtualClock(T0)
    with pytest.raises(ValueError, match="backwards"):
        clock.move_to(T0 - 1)
    assert clock.now() == T0


async def test_move_to_sets_the_time_without_firing_timers() -> None:
    """``move_to`` past a timer's deadline does not fire it; the next ``advance`` does."""
    clock, woken = VirtualClock(T0), Woken()
    async with anyio.create_task_group() as tg:
        await register(tg, sleeper, clock, "t", T0 + 1, woken)
        clock.move_to(T0 + 5)
        await anyio.wait_all_tasks_blocked()
        assert (woken, clock.now(), clock.next_deadline()) == ([], T0 + 5, T0 + 1)
        await clock.advance(0)
    assert woken == [("t", T0 + 5)]


@pytest.mark.parametrize(
    "clock",
    [pytest.param(VirtualClock(T0), id="virtual"), pytest.param(SystemClock(), id="system")],
)
@pytest.mark.parametrize("offset", [pytest.param(-1.0, id="past"), pytest.param(0.0, id="now")])
async def test_move_on_at_a_deadline_already_reached_cancels_at_once(clock: Clock, offset: float) -> None:
    """A scope whose deadline has come cancels the first await inside it, without any advance."""
    with anyio.fail_after(5):  # a broken clock fails the test instead of hanging it
        with clock.move_on_at(clock.now() + offset) as scope:
            await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_move_on_at_infinity_never_fires() -> None:
    """A ``move_on_at(math.inf)`` scope survives any advance and registers no timer."""
    clock, done = VirtualClock(T0), anyio.Event()
    caught: list[bool] = []

    async def wait() -> None:
        with clock.move_on_at(math.inf) as scope:
            await done.wait()
        caught.append(scope.cancelled_caught)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline() is None
        await clock.advance(1e12)
        assert caught == []
        done.set()
    assert caught == [False]


async def test_next_deadline_reports_the_earliest_pending_timer() -> None:
    """``next_deadline`` is None with no timers, the earliest deadline with several, and moves on as they fire."""
    clock, woken = VirtualClock(T0), Woken()
    assert clock.next_deadline() is None
    async with anyio.create_task_group() as tg:
        for name, offset in (("five", 5.0), ("two", 2.0), ("nine", 9.0)):
            await register(tg, sleeper, clock, name, T0 + offset, woken)
        assert clock.next_deadline() == T0 + 2
        await clock.advance(3)
        assert clock.next_deadline() == T0 + 5
        await clock.advance(10)
    assert clock.next_deadline() is None


async def test_next_deadline_forgets_the_timer_of_an_exited_scope() -> None:
    """A scope that ended before its deadline leaves no pending timer behind."""
    clock = VirtualClock(T0)
    with clock.move_on_at(T0 + 10):
        await anyio.lowlevel.checkpoint()
    assert clock.next_deadline() is None


@pytest.mark.parametrize("clock", [pytest.param(VirtualClock(), id="virtual"),
                                   pytest.param(SystemClock(), id="system")])
def test_both_clocks_satisfy_the_clock_protocol(clock: object) -> None:
    """VirtualClock and SystemClock are both a ``Clock`` (the protocol is runtime-checkable)."""
    assert isinstance(clock, Clock)


async def test_system_clock_move_on_at_cancels_near_its_deadline() -> None:
    """``move_on_at(now + 0.05)`` around a 5 s sleep cancels it after about 0.05 s, not at once and not at 5 s."""
    clock = SystemClock()
    start = anyio.current_time()
    with anyio.fail_after(5):
        with clock.move_on_at(clock.now() + 0.05) as scope:
            await anyio.sleep(5)
    elapsed = anyio.current_time() - start
    assert scope.cancelled_caught
    assert 0.03 <= elapsed < 2


async def test_system_clock_move_on_at_infinity_does_not_cancel() -> None:
    """``move_on_at(math.inf)`` gives a scope without a deadline, which lets a short sleep finish."""
    with SystemClock().move_on_at(math.inf) as scope:
        await anyio.sleep(0.01)
    assert not scope.cancelled_caught


def test_system_clock_reads_the_wall_clock() -> None:
    """``SystemClock.now`` is epoch seconds (``time.time``), so stored cooldowns survive a restart."""
    before = time.time()
    now = SystemClock().now()
    assert before <= now <= time.time()
