"""The actor base class, the envelope for asks, and the bus that wires actors.

An actor owns one bounded inbox and a ``run()`` loop that receives, calls the
synchronous ``handle(message, now)`` (which decides and does no I/O) and
publishes what ``handle`` returned. Timers are data too: an actor says when
it next wants to wake (``next_deadline``) and receives a :class:`Tick` then.
Unit tests and replay call ``handle`` directly.

``tell`` sends without waiting; ``ask`` sends an :class:`Envelope` whose reply
stream travels beside the message (pykka's ``Envelope(message, reply_to)``), so
the logged message stays pure data.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from .clock import Clock, SystemClock
from .errors import SupervisorClosedError
from .messages import Message, Tick

__all__ = ("Actor", "Bus", "Envelope", "Inbox")

log = logging.getLogger("actors")
_LATE_S = 1.0


class Inbox:
    """One actor's bounded FIFO: many senders, one receiver.

    A memory object stream would do, but its ``receive()`` always passes
    through the event loop once before looking at its buffer, which costs
    every actor a loop iteration per message on the request path. This takes
    a waiting item at once and only parks the receiver when it is empty.
    The receiver parks on a bare future (an ``anyio.Event`` costs several
    times more to make, wait on and set, once per message when traffic is
    sequential); anyio cancels a task parked on it like on any other await.

    ``skip``, when set, is asked about each message the bus would deliver
    while the inbox is empty: True means handling it now would change
    nothing, so the receiver is not woken for it (see :meth:`Actor.ignores`).
    """

    __slots__ = ("_closed", "_items", "_ready", "_size", "_space", "skip")

    def __init__(self, size: int) -> None:
        self._items: deque[Message | Envelope] = deque()
        self._size = size
        self._ready: asyncio.Future[None] | None = None
        self._space: anyio.Event | None = None  # senders share it: an Event, not one future
        self._closed = False
        self.skip: Callable[[Message], bool] | None = None

    def send_nowait(self, item: Message | Envelope) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if len(self._items) >= self._size:
            raise anyio.WouldBlock
        self._items.append(item)
        self.poke()

    def poke(self) -> None:
        """Wake the receiver parked in :meth:`wait` (a timer does this at a deadline)."""
        ready = self._ready
        if ready is not None:
            self._ready = None
            if not ready.done():
                ready.set_result(None)

    async def send(self, item: Message | Envelope) -> None:
        while True:
            try:
                self.send_nowait(item)
                return
            except anyio.WouldBlock:
                if self._space is None:
                    self._space = anyio.Event()
                await self._space.wait()

    def receive_nowait(self) -> Message | Envelope:
        if not self._items:
            raise anyio.EndOfStream if self._closed else anyio.WouldBlock
        item = self._items.popleft()
        if self._space is not None:
            self._space.set()
            self._space = None
        return item

    async def wait(self) -> None:
        """Return when an item is waiting, the inbox is closed, or :meth:`poke` was called."""
        if self._items or self._closed:
            return
        ready = self._ready
        if ready is None or ready.done():  # done: its waiter was cancelled
            ready = self._ready = asyncio.get_running_loop().create_future()
        await ready

    async def receive(self) -> Message | Envelope:
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            await self.wait()
        return self.receive_nowait()

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self._closed = True
        self.poke()
        if self._space is not None:
            self._space.set()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message plus the stream its reply goes to (not part of the message)."""

    message: Message
    reply_to: MemoryObjectSendStream[list[Message] | BaseException]


Sink = Callable[[Message], None]


@dataclass
class Bus:
    """Delivers each published message to the inboxes subscribed to its type.

    Every logged message also goes to ``log_sink`` (the store's event log),
    including one an idle actor skips (:meth:`Actor.ignores`).
    ``tell`` never waits (the request path uses it); ``publish`` waits for room
    in a full inbox (actors use it, so a slow actor slows its producers rather
    than losing a decision).
    """

    log_sink: Sink | None = None
    _routes: dict[type[Message], list[Inbox]] = field(default_factory=dict)
    _sinks: dict[type[Message], list[Sink]] = field(default_factory=dict)
    dropped: int = 0

    def subscribe(self, types: Iterable[type[Message]], inbox: Inbox) -> None:
        for t in types:
            self._routes.setdefault(t, []).append(inbox)

    def listen(self, types: Iterable[type[Message]], sink: Sink) -> None:
        """Call ``sink`` synchronously for each message of these types (no actor)."""
        for t in types:
            self._sinks.setdefault(t, []).append(sink)

    def _record(self, message: Message) -> None:
        if message.logged and self.log_sink is not None:
            self.log_sink(message)
        for sink in self._sinks.get(type(message), ()):
            sink(message)

    def tell(self, message: Message) -> None:
        """Deliver without waiting; a full inbox drops the copy for it (counted, logged)."""
        self._record(message)
        for inbox in self._routes.get(type(message), ()):
            if inbox.skip is not None and not inbox and inbox.skip(message):
                continue
            try:
                inbox.send_nowait(message)
            except anyio.WouldBlock:
                self.dropped += 1
                if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: don't flood logs
                    log.warning("an actor inbox is full: %d messages dropped so far", self.dropped)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    async def publish(self, message: Message) -> None:
        """Deliver, waiting for room in full inboxes."""
        self._record(message)
        for inbox in self._routes.get(type(message), ()):
            if inbox.skip is not None and not inbox and inbox.skip(message):
                continue
            try:
                await inbox.send(message)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass


class Actor(ABC):
    """Base class: a bounded inbox, a run loop, a pure ``handle``."""

    name: ClassVar[str] = "actor"
    #: The message types this actor wants from the bus.
    accepts: ClassVar[tuple[type[Message], ...]] = ()

    def __init__(self, *, clock: Clock, bus: Bus, inbox_size: int = 1024) -> None:
        self.clock = clock
        self.bus = bus
        self.inbox = Inbox(inbox_size)
        self._crash_next: BaseException | None = None
        self.handled = 0
        #: The message being handled when ``handle`` last raised (the supervisor logs it).
        self.lost: Message | None = None
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at: float | None = None
        if type(self).ignores is not Actor.ignores:
            self.inbox.skip = self._skips
        bus.subscribe(self.accepts, self.inbox)

    # -- to override ------------------------------------------------------
    @abstractmethod
    def handle(self, message: Message, now: float) -> list[Message]:
        """Decide: update state, return the messages to publish. No I/O."""

    def next_deadline(self) -> float | None:
        """When this actor next wants a :class:`Tick` (None: never)."""
        return None

    def ignores(self, message: Message) -> bool:
        """True when ``handle(message)`` would change nothing and return nothing now.

        The bus asks only while the inbox is empty (so the state this reads is
        the state ``handle`` would see) and then does not wake the actor for
        the message; it is still logged. Read state only; never decide here.
        """
        return False

    def _skips(self, message: Message) -> bool:
        return self._crash_next is None and self.ignores(message)

    async def emit(self, messages: list[Message]) -> None:
        """Publish what ``handle`` returned (an actor with I/O overrides this)."""
        for out in messages:
            await self.bus.publish(out)

    # -- the loop ---------------------------------------------------------
    def crash_next(self, error: BaseException) -> None:
        """Fault injection: the next message handled raises ``error`` (chaos tests)."""
        self._crash_next = error

    def _dispatch(self, message: Message, now: float) -> list[Message]:
        if self._crash_next is not None:
            error, self._crash_next = self._crash_next, None
            self.lost = message
            raise error
        self.handled += 1
        try:
            return self.handle(message, now)
        except Exception:
            self.lost = message
            raise

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive, decide, publish, until cancelled. Exceptions escape to the supervisor."""
        task_status.started()
        inbox, clock = self.inbox, self.clock
        burst = 0
        try:
            while True:
                deadline = self.next_deadline()
                if deadline is not None and deadline <= clock.now():
                    now = clock.now()  # a timer is due: Tick first
                    await self.emit(self._dispatch(Tick(at=now), now))
                    continue
                if burst < 64:
                    # Take what is already queued without a trip through the event
                    # loop; yield every 64 so a backlog can't starve other tasks.
                    try:
                        item = inbox.receive_nowait()
                    except anyio.WouldBlock:
                        pass
                    else:
                        burst += 1
                        await self._deliver(item)
                        continue
                else:
                    await anyio.lowlevel.checkpoint()  # a long backlog still lets others run
                burst = 0
                await self._wait(deadline)
        finally:
            self._set_alarm(None)

    async def _deliver(self, item: Message | Envelope) -> None:
        # A decision is dated by the fact that caused it, not by when this
        # actor got round to it: the same inputs give the same decisions
        # however busy the loop was, which is what makes replay exact.
        if isinstance(item, Envelope):
            try:
                out = self._dispatch(item.message, item.message.at)
            except Exception as exc:
                item.reply_to.send_nowait(exc)
                raise
            if out:
                await self.emit(out)
            item.reply_to.send_nowait(out)
        else:
            out = self._dispatch(item, item.at)
            if out:
                await self.emit(out)

    async def _wait(self, deadline: float | None) -> None:
        """Park until the inbox has an item or ``deadline`` (a clock time) comes."""
        if deadline is None:
            self._set_alarm(None)
            await self.inbox.wait()
        elif isinstance(self.clock, SystemClock):
            # A cancel scope with a deadline per wait costs a timer and the
            # scope's bookkeeping per message; one loop timer that pokes the
            # inbox is armed once per deadline instead.
            self._set_alarm(deadline)
            await self.inbox.wait()
        else:  # a virtual clock fires its own timers
            with self.clock.deadline_scope(deadline):
                await self.inbox.wait()

    def _set_alarm(self, deadline: float | None) -> None:
        if deadline == self._alarm_at:
            return
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self._alarm_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._alarm = loop.call_at(loop.time() + (deadline - self.clock.now()), self._ring)

    def _ring(self) -> None:
        self._alarm = self._alarm_at = None  # the next wait re-arms it if the deadline still stands
        self.inbox.poke()

    async def ask(self, message: Message, *, wait_s: float = 10.0) -> list[Message]:
        """Send ``message`` and wait for the messages ``handle`` returned."""
        send, receive = anyio.create_memory_object_stream[list[Message] | BaseException](1)
        with send, receive:
            try:
                await self.inbox.send(Envelope(message, send))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise SupervisorClosedError(f"{self.name} is stopped") from None
            with anyio.fail_after(wait_s):
                reply = await receive.receive()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def pending(self) -> int:
        """How many messages wait in the inbox."""
        return len(self.inbox)

    def close(self) -> None:
        """Stop taking messages; fail every pending ask with a clear error."""
        self.inbox.close()
        while True:
            try:
                item = self.inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if isinstance(item, Envelope):
                item.reply_to.send_nowait(SupervisorClosedError(f"{self.name} stopped first"))
