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

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from .clock import Clock
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
    """

    __slots__ = ("_closed", "_items", "_ready", "_size", "_space")

    def __init__(self, size: int) -> None:
        self._items: deque[Message | Envelope] = deque()
        self._size = size
        self._ready: anyio.Event | None = None
        self._space: anyio.Event | None = None
        self._closed = False

    def send_nowait(self, item: Message | Envelope) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if len(self._items) >= self._size:
            raise anyio.WouldBlock
        self._items.append(item)
        if self._ready is not None:
            self._ready.set()
            self._ready = None

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

    async def receive(self) -> Message | Envelope:
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            if self._ready is None:
                self._ready = anyio.Event()
            await self._ready.wait()
        return self.receive_nowait()

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self._closed = True
        for event in (self._ready, self._space):
            if event is not None:
                event.set()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message plus the stream its reply goes to (not part of the message)."""

    message: Message
    reply_to: MemoryObjectSendStream[list[Message] | BaseException]


Sink = Callable[[Message], None]


@dataclass
class Bus:
    """Delivers each published message to the inboxes subscribed to its type.

    Every logged message also goes to ``log_sink`` (the store's event log).
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
        bus.subscribe(self.accepts, self.inbox)

    # -- to override ------------------------------------------------------
    @abstractmethod
    def handle(self, message: Message, now: float) -> list[Message]:
        """Decide: update state, return the messages to publish. No I/O."""

    def next_deadline(self) -> float | None:
        """When this actor next wants a :class:`Tick` (None: never)."""
        return None

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
        burst = 0
        while True:
            item: Message | Envelope | None = None
            deadline = self.next_deadline()
            if deadline is not None and deadline <= self.clock.now():
                pass  # a timer is due: Tick first
            elif burst < 64:
                # Take what is already queued without a trip through the event
                # loop; yield every 64 so a backlog can't starve other tasks.
                try:
                    item = self.inbox.receive_nowait()
                    burst += 1
                except anyio.WouldBlock:
                    item = None
            if item is None and (deadline is None or deadline > self.clock.now()):
                if burst >= 64:
                    await anyio.lowlevel.checkpoint()  # a long backlog still lets others run
                burst = 0
                if deadline is None:
                    item = await self.inbox.receive()
                else:
                    with self.clock.deadline_scope(deadline):
                        item = await self.inbox.receive()
            # A decision is dated by the fact that caused it, not by when this
            # actor got round to it: the same inputs give the same decisions
            # however busy the loop was, which is what makes replay exact.
            if item is None:
                # A timer is dated by its deadline, unless the loop was stalled
                # (a suspended machine): then by now, so ticks don't cascade.
                now = self.clock.now()
                if deadline is not None and now - deadline < _LATE_S:
                    now = deadline
                await self.emit(self._dispatch(Tick(at=now), now))
            elif isinstance(item, Envelope):
                try:
                    out = self._dispatch(item.message, item.message.at)
                except Exception as exc:
                    item.reply_to.send_nowait(exc)
                    raise
                await self.emit(out)
                item.reply_to.send_nowait(out)
            else:
                await self.emit(self._dispatch(item, item.at))

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
