"""The actor runtime: the Bus's delivery and backpressure, an actor's run loop, ask, close and timers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.lowlevel
import pytest

from actors.core.actor import Actor, Bus
from actors.core.clock import VirtualClock
from actors.core.errors import SupervisorClosedError
from actors.core.messages import Message, Tick

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0


class Ping(Message, frozen=True, kw_only=True, tag="test_ping"):
    """An input to the test actors; ``fail`` makes ``Echo.handle`` raise."""

    logged: ClassVar[bool] = False
    n: int = 0
    fail: bool = False


class Pong(Message, frozen=True, kw_only=True, tag="test_pong"):
    """What ``Echo`` answers to a Ping."""

    logged: ClassVar[bool] = False
    n: int = 0


class Noted(Message, frozen=True, kw_only=True, tag="test_noted"):
    """A logged message (the event log's sink gets it)."""


def ping(n: int, *, at: float = T0, fail: bool = False) -> Ping:
    return Ping(at=at, n=n, fail=fail)


class Echo(Actor[Ping | Tick]):
    """Records what it handles (with the ``now`` it was given) and answers each Ping with a Pong."""

    name: ClassVar[str] = "echo"
    accepts: ClassVar[tuple[type[Message], ...]] = (Ping,)

    def __init__(self, *, clock: VirtualClock, inbox_size: int = 16) -> None:
        super().__init__(clock=clock, inbox_size=inbox_size)
        self.seen: list[Ping | Tick] = []
        self.nows: list[float] = []
        self.idles = 0
        self.deadline: float | None = None
        self.every: float | None = None

    def handle(self, message: Ping | Tick, now: float) -> list[Message]:
        self.seen.append(message)
        self.nows.append(now)
        if isinstance(message, Tick):
            self.deadline = None if self.every is None else now + self.every
            return []
        if message.fail:
            raise ValueError(f"cannot handle ping {message.n}")
        return [Pong(at=message.at, n=message.n)]

    def idle(self, now: float) -> list[Message]:
        self.idles += 1
        return []

    def next_deadline(self) -> float | None:
        return self.deadline

    def numbers(self) -> list[int]:
        """The ``n`` of every Ping handled, in order."""
        return [m.n for m in self.seen if isinstance(m, Ping)]

    def ticks(self) -> list[float]:
        """The time of every Tick handled, in order."""
        return [m.at for m in self.seen if isinstance(m, Tick)]


class Gated(Echo):
    """An Echo whose ``emit`` waits for ``gate``: it stays busy with a message until the test opens it."""

    name: ClassVar[str] = "gated"

    def __init__(self, *, clock: VirtualClock, inbox_size: int = 16) -> None:
        super().__init__(clock=clock, inbox_size=inbox_size)
        self.gate = anyio.Event()

    async def emit(self, messages: list[Message]) -> None:
        await self.gate.wait()
        await super().emit(messages)


class EvenOnly(Echo):
    """An Echo that asks the bus for even-numbered Pings only."""

    name: ClassVar[str] = "even"

    @staticmethod
    def wants(message: Message) -> bool:
        return isinstance(message, Ping) and message.n % 2 == 0


A = TypeVar("A", bound=Actor[Any])


class Connector:
    """Connects actors to one bus and remembers them, so the fixture closes every inbox it opened."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.actors: list[Actor[Any]] = []

    def __call__(self, actor: A) -> A:
        actor.connect(self.bus)
        self.actors.append(actor)
        return actor


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def connect(bus: Bus) -> Iterator[Connector]:
    connector = Connector(bus)
    yield connector
    for actor in connector.actors:
        actor.close()


async def settle() -> None:
    """Return once every other task is blocked (a few checkpoints first spare anyio's 0.1 s polling sleep)."""
    for _ in range(8):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


@dataclass
class Outcome:
    """How one actor's ``run()`` ended: still running, returned, or raised ``error``."""

    returned: bool = False
    error: Exception | None = None


async def _run(actor: Actor[Any], outcome: Outcome) -> None:
    try:
        await actor.run()
    except Exception as exc:
        outcome.error = exc
    else:
        outcome.returned = True


@asynccontextmanager
async def running(*actors: Actor[Any]) -> AsyncIterator[list[Outcome]]:
    """Run ``actors`` (each until it raises, returns, or the block ends) and let them settle first."""
    outcomes = [Outcome() for _ in actors]
    async with anyio.create_task_group() as tg:
        for actor, outcome in zip(actors, outcomes, strict=True):
            tg.start_soon(_run, actor, outcome)
        await settle()
        yield outcomes
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------- the bus


async def test_publish_waits_for_room_in_a_full_inbox(clock: VirtualClock, connect: Connector,
                                                      bus: Bus) -> None:
    """``publish`` to a full inbox waits instead of dropping, and completes once the actor drains it."""
    echo = connect(Echo(clock=clock, inbox_size=1))
    await bus.publish(ping(1))  # fills the inbox
    published = anyio.Event()

    async def publish_second() -> None:
        await bus.publish(ping(2))
        published.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_second)
        await settle()
        assert not published.is_set()
        assert (echo.pending(), bus.dropped) == (1, 0)
        async with running(echo):
            assert published.is_set()
            assert echo.numbers() == [1, 2]


async def test_tell_drops_the_copy_for_a_full_inbox_only(clock: VirtualClock, connect: Connector,
                                                         bus: Bus) -> None:
    """``tell`` to a full inbox drops that copy and counts it; a subscriber with room still gets it."""
    small = connect(Echo(clock=clock, inbox_size=1))
    roomy = connect(Echo(clock=clock, inbox_size=8))
    bus.tell(ping(1))
    bus.tell(ping(2))
    assert (small.pending(), roomy.pending(), bus.dropped) == (1, 2, 1)
    async with running(small, roomy):
        assert (small.numbers(), roomy.numbers()) == ([1], [1, 2])


def test_tell_logs_drops_at_powers_of_two(clock: VirtualClock, connect: Connector, bus: Bus,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """Five drops log three warnings (at 1, 2 and 4 dropped), so a flood of drops doesn't flood the log."""
    connect(Echo(clock=clock, inbox_size=1))
    bus.tell(ping(0))
    with caplog.at_level(logging.WARNING, logger="actors"):
        for n in range(1, 6):
            bus.tell(ping(n))
    assert bus.dropped == 5
    assert [r.getMessage() for r in caplog.records] == [
        f"an actor inbox is full: {k} messages dropped so far" for k in (1, 2, 4)
    ]


@pytest.mark.parametrize("how", ["tell", "publish"])
async def test_wants_filters_per_subscriber(clock: VirtualClock, connect: Connector, bus: Bus,
                                            how: str) -> None:
    """A subscriber whose ``wants`` refuses a message is not given it; the other subscribers are."""
    even = connect(EvenOnly(clock=clock))
    echo = connect(Echo(clock=clock))
    for n in (1, 2, 3, 4):
        if how == "tell":
            bus.tell(ping(n))
        else:
            await bus.publish(ping(n))
    async with running(even, echo):
        assert (even.numbers(), echo.numbers()) == ([2, 4], [1, 2, 3, 4])


def test_an_actor_gets_only_the_types_it_accepts(clock: VirtualClock, connect: Connector, bus: Bus) -> None:
    """A message of a type outside ``accepts`` is not put in the actor's inbox."""
    echo = connect(Echo(clock=clock))
    bus.tell(Pong(at=T0))
    bus.tell(ping(1))
    assert echo.pending() == 1


@pytest.mark.parametrize(
    ("message", "recorded"),
    [
        pytest.param(Noted(at=T0), [Noted(at=T0)], id="logged"),
        pytest.param(ping(1), [], id="not-logged"),
    ],
)
def test_the_log_sink_gets_logged_messages_only(message: Message, recorded: list[Message]) -> None:
    """The bus hands a message to ``log_sink`` when its type is ``logged``, whoever subscribes to it."""
    log: list[Message] = []
    Bus(log_sink=log.append).tell(message)
    assert log == recorded


def test_a_listener_is_called_synchronously() -> None:
    """``listen`` sinks are called during ``tell`` itself, with the message, for their types only."""
    bus, heard = Bus(), list[Message]()
    bus.listen([Pong], heard.append)
    bus.tell(ping(1))
    bus.tell(Pong(at=T0, n=2))
    assert heard == [Pong(at=T0, n=2)]


# ---------------------------------------------------------------- the run loop


async def test_a_queued_burst_is_handled_in_order_in_one_wake(clock: VirtualClock, connect: Connector,
                                                              bus: Bus) -> None:
    """Messages queued before the actor runs are all handled, in order, with one ``idle`` after them."""
    echo = connect(Echo(clock=clock))
    for n in (1, 2, 3):
        bus.tell(ping(n))
    async with running(echo):
        assert (echo.numbers(), echo.idles) == ([1, 2, 3], 1)


async def test_handle_is_dated_by_the_message_not_the_clock(clock: VirtualClock, connect: Connector,
                                                            bus: Bus) -> None:
    """``handle`` gets the message's ``at`` as ``now``, however late the actor got to it."""
    echo = connect(Echo(clock=clock))
    bus.tell(ping(1, at=T0 - 30))
    async with running(echo):
        assert echo.nows == [T0 - 30]


async def test_whatever_handle_returns_is_published(clock: VirtualClock, connect: Connector,
                                                    bus: Bus) -> None:
    """The messages ``handle`` returns go out on the bus."""
    echo = connect(Echo(clock=clock))
    heard: list[Message] = []
    bus.listen([Pong], heard.append)
    bus.tell(ping(7))
    async with running(echo):
        assert heard == [Pong(at=T0, n=7)]


async def test_an_exception_in_handle_escapes_run(clock: VirtualClock, connect: Connector,
                                                  bus: Bus) -> None:
    """A message ``handle`` raises on ends ``run()`` with that exception and is kept as ``lost``."""
    echo = connect(Echo(clock=clock))
    bus.tell(ping(1, fail=True))
    async with running(echo) as [outcome]:
        assert isinstance(outcome.error, ValueError)
        assert echo.lost == ping(1, fail=True)


async def test_run_again_after_a_crash_goes_on_with_the_inbox(clock: VirtualClock, connect: Connector,
                                                              bus: Bus) -> None:
    """Running a crashed actor again (a supervisor restart) handles what was queued behind the crash."""
    echo = connect(Echo(clock=clock))
    bus.tell(ping(1, fail=True))
    bus.tell(ping(2))
    async with running(echo) as [first]:
        assert first.error is not None
    async with running(echo) as [second]:
        assert second.error is None
        assert echo.numbers() == [1, 2]


async def test_crash_next_fails_the_next_message_without_handling_it(clock: VirtualClock,
                                                                     connect: Connector, bus: Bus) -> None:
    """After ``crash_next(error)`` the next message raises ``error`` from ``run()`` and never reaches ``handle``."""
    echo = connect(Echo(clock=clock))
    error = RuntimeError("injected")
    echo.crash_next(error)
    bus.tell(ping(1))
    async with running(echo) as [outcome]:
        assert outcome.error is error
        assert (echo.seen, echo.lost) == ([], ping(1))


async def test_close_while_busy_lets_run_return(clock: VirtualClock, connect: Connector, bus: Bus) -> None:
    """An actor closed while it is busy with a message finishes that message and then ``run()`` returns."""
    gated = connect(Gated(clock=clock))
    bus.tell(ping(1))
    async with running(gated) as [outcome]:
        gated.close()
        gated.gate.set()
        await settle()
        assert (outcome.returned, outcome.error) == (True, None)
        assert gated.numbers() == [1]


async def test_close_while_idle_lets_run_return(clock: VirtualClock, connect: Connector) -> None:
    """An actor closed while it waits for its next message returns from ``run()`` without an error."""
    echo = connect(Echo(clock=clock))
    async with running(echo) as [outcome]:
        echo.close()
        await settle()
        assert (outcome.returned, outcome.error) == (True, None)


# ---------------------------------------------------------------- ask


async def test_ask_returns_what_handle_returned(clock: VirtualClock, connect: Connector) -> None:
    """``ask`` answers with the messages ``handle`` returned for the asked message."""
    echo = connect(Echo(clock=clock))
    async with running(echo):
        assert await echo.ask(ping(7)) == [Pong(at=T0, n=7)]
        assert echo.numbers() == [7]


async def test_ask_reraises_the_handle_error_and_run_raises_it_too(clock: VirtualClock,
                                                                    connect: Connector) -> None:
    """An exception in ``handle`` reaches the asker, and ``run()`` raises it to its supervisor."""
    echo = connect(Echo(clock=clock))
    async with running(echo) as [outcome]:
        with pytest.raises(ValueError, match="cannot handle ping 1"):
            await echo.ask(ping(1, fail=True))
        await settle()
        assert isinstance(outcome.error, ValueError)
        assert echo.lost == ping(1, fail=True)


async def test_a_late_reply_is_counted_and_the_actor_goes_on(clock: VirtualClock, connect: Connector) -> None:
    """An ask that timed out while the actor was busy: its late reply is dropped and counted, the actor lives on."""
    gated = connect(Gated(clock=clock))
    async with running(gated) as [outcome]:
        with pytest.raises(TimeoutError):
            await gated.ask(ping(1), wait_s=0.01)
        assert gated.numbers() == [1]  # handled, stuck publishing
        gated.gate.set()
        await settle()
        assert (gated.late_replies, outcome.error, outcome.returned) == (1, None, False)
        assert await gated.ask(ping(2)) == [Pong(at=T0, n=2)]
        assert gated.late_replies == 1


@pytest.mark.parametrize("state", ["never-connected", "closed"])
async def test_ask_on_an_actor_not_running_raises_closed(clock: VirtualClock, connect: Connector,
                                                         state: str) -> None:
    """``ask`` on an actor never connected, or already closed, raises SupervisorClosedError at once."""
    echo = Echo(clock=clock)
    if state == "closed":
        connect(echo).close()
    with anyio.fail_after(5), pytest.raises(SupervisorClosedError):
        await echo.ask(ping(1))


async def test_ask_to_a_full_inbox_times_out_within_wait_s(clock: VirtualClock, connect: Connector,
                                                           bus: Bus) -> None:
    """An ask that can't even get into a full inbox still gives up after ``wait_s``."""
    echo = connect(Echo(clock=clock, inbox_size=1))  # never run: nothing drains it
    bus.tell(ping(1))
    with anyio.move_on_after(0.09) as outer:
        with pytest.raises(TimeoutError):
            await echo.ask(ping(2), wait_s=0.01)
    assert not outer.cancelled_caught


# ---------------------------------------------------------------- close


async def test_close_fails_every_pending_ask(clock: VirtualClock, connect: Connector) -> None:
    """Asks still in the inbox when the actor closes fail with SupervisorClosedError, none hangs."""
    echo = connect(Echo(clock=clock))  # never run: the asks stay queued
    errors: list[BaseException] = []

    async def ask(n: int) -> None:
        try:
            await echo.ask(ping(n))
        except SupervisorClosedError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in (1, 2):
                tg.start_soon(ask, n)
            await settle()
            assert echo.pending() == 2
            echo.close()
    assert len(errors) == 2
    assert echo.late_replies == 0


async def test_close_after_the_asker_gave_up_does_not_raise(clock: VirtualClock, connect: Connector) -> None:
    """Closing with a queued ask whose asker already timed out doesn't raise; the reply counts as late."""
    echo = connect(Echo(clock=clock))  # never run
    with pytest.raises(TimeoutError):
        await echo.ask(ping(1), wait_s=0.01)
    echo.close()
    assert echo.late_replies == 1


@pytest.mark.parametrize("state", ["never-connected", "connected"])
def test_close_twice_does_not_raise(clock: VirtualClock, connect: Connector, bus: Bus, state: str) -> None:
    """``close()`` may be called again, and on an actor that was never connected."""
    echo = Echo(clock=clock)
    if state == "connected":
        connect(echo)
        bus.tell(ping(1))
    echo.close()
    echo.close()
    assert echo.pending() == 0


# ---------------------------------------------------------------- timers


async def test_a_tick_comes_exactly_at_the_deadline(clock: VirtualClock, connect: Connector) -> None:
    """An actor whose ``next_deadline`` is 10 s ahead gets no Tick at 9 s and one Tick, dated then, at 10 s."""
    echo = connect(Echo(clock=clock))
    echo.deadline = T0 + 10
    async with running(echo):
        await clock.advance(9)
        assert echo.ticks() == []
        await clock.advance(1)
        assert echo.ticks() == [T0 + 10]
        await clock.advance(100)
        assert echo.ticks() == [T0 + 10]


async def test_a_rearmed_timer_ticks_again(clock: VirtualClock, connect: Connector) -> None:
    """A deadline set again by the Tick's ``handle`` is waited for in turn, within one ``advance``."""
    echo = connect(Echo(clock=clock))
    echo.deadline, echo.every = T0 + 10, 10.0
    async with running(echo):
        await clock.advance(25)
        assert echo.ticks() == [T0 + 10, T0 + 20]


async def test_a_message_before_the_deadline_does_not_lose_the_timer(clock: VirtualClock,
                                                                     connect: Connector, bus: Bus) -> None:
    """A message that wakes the actor before its deadline is handled, and the Tick still comes on time."""
    echo = connect(Echo(clock=clock))
    echo.deadline = T0 + 10
    async with running(echo):
        await clock.advance(3)
        bus.tell(ping(1, at=clock.now()))
        await settle()
        assert (echo.numbers(), echo.ticks()) == ([1], [])
        await clock.advance(7)
        assert echo.ticks() == [T0 + 10]


async def test_a_due_timer_comes_before_queued_messages(clock: VirtualClock, connect: Connector,
                                                        bus: Bus) -> None:
    """When the deadline has already passed, the Tick (dated now) is handled before what waits in the inbox."""
    echo = connect(Echo(clock=clock))
    echo.deadline = T0 - 5
    bus.tell(ping(1))
    async with running(echo):
        assert echo.seen == [Tick(at=T0), ping(1)]
