"""The actor runtime: the :class:`Actor` base class, the :class:`Envelope` of an ask, the :class:`Bus`.

An actor owns one bounded inbox, an anyio memory object stream, and a
``run()`` loop that receives, calls the synchronous ``handle(message, now)``
(which decides and does no I/O) and publishes what ``handle`` returned. After
each wake the loop takes whatever else is already queued with
``receive_nowait()``, so a burst costs one wake. Timers are data too: an
actor says when it next wants to wake (``next_deadline``) and receives a
:class:`~actors.core.messages.Tick` then; the wait runs under the injected
clock's ``move_on_at``, the one timer path for the system and virtual clocks.
Unit tests and replay call ``handle`` directly.

``tell`` sends without waiting; ``ask`` sends an :class:`Envelope` whose reply
stream travels beside the message (pykka's ``Envelope(message, reply_to)``),
so the logged message stays pure data. A reply to an ask that gave up is
dropped and counted (``late_replies``), never an error in the actor.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, get_args

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from actors.core.clock import Clock
from actors.core.errors import SupervisorClosedError
from actors.core.messages import Message, Tick, TimerFired

__all__ = ("Actor", "Bus", "Envelope")

log = logging.getLogger("actors")
In = TypeVar("In", bound=Message)
_BURST = 64  # messages taken without a pass through the event loop, at most
_GONE = (anyio.ClosedResourceError, anyio.BrokenResourceError)
_CLOSED = (anyio.EndOfStream, anyio.ClosedResourceError)

Reply = list[Message] | BaseException


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message plus the stream its reply goes to (not part of the message)."""

    message: Message
    reply_to: MemoryObjectSendStream[Reply]


Item = Message | Envelope
Sink = Callable[[Message], None]
Wants = Callable[[Message], bool]


_Route = tuple[MemoryObjectSendStream[Any], Wants]


def _always(message: Message) -> bool:
    return True


@dataclass
class Bus:
    """Delivers each published message to the inboxes subscribed to its type.

    Every logged message also goes to ``log_sink`` (the store's event log).
    ``tell`` never waits (the request path uses it): a full inbox drops that
    copy and counts it in ``dropped``. ``publish`` waits for room in a full
    inbox (actors use it, so a slow actor slows its producers rather than
    losing a decision).
    """

    log_sink: Sink | None = None
    _routes: dict[type[Message], list[_Route]] = field(default_factory=dict)
    _sinks: dict[type[Message], list[Sink]] = field(default_factory=dict)
    dropped: int = 0

    def subscribe(self, types: Iterable[type[Message]], inbox: MemoryObjectSendStream[Any],
                  wants: Wants = _always) -> None:
        """Deliver messages of ``types`` for which ``wants(message)`` to ``inbox`` (someone's send side).

        ``wants`` looks at the message alone, never at the receiver's state, so
        replay can make the same choice from the log.
        """
        for t in types:
            self._routes.setdefault(t, []).append((inbox, wants))

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
        for inbox, wants in self._routes.get(type(message), ()):
            if not wants(message):
                continue
            try:
                inbox.send_nowait(message)
            except anyio.WouldBlock:
                self.dropped += 1
                if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: don't flood logs
                    log.warning("an actor inbox is full: %d messages dropped so far", self.dropped)
            except _GONE:
                pass

    async def publish(self, message: Message) -> None:
        """Deliver, waiting for room in full inboxes."""
        self._record(message)
        for inbox, wants in self._routes.get(type(message), ()):
            if not wants(message):
                continue
            try:
                inbox.send_nowait(message)  # the common case, without a trip through the loop
            except anyio.WouldBlock:
                try:
                    await inbox.send(message)
                except _GONE:
                    pass
            except _GONE:
                pass


class Actor(ABC, Generic[In]):
    """Base class: a bounded inbox, a run loop, a pure ``handle`` over the inbox's union ``In``."""

    name: ClassVar[str] = "actor"
    #: The message types this actor wants from the bus (the members of ``In``, :class:`Tick` aside).
    accepts: ClassVar[tuple[type[Message], ...]] = ()
    #: Log each timer firing as a :class:`TimerFired` input (for actors whose timers decide).
    logs_timers: ClassVar[bool] = False

    def __init__(self, *, clock: Clock, inbox_size: int = 1024) -> None:
        self.clock = clock
        self.inbox_size = inbox_size
        self.bus: Bus | None = None
        self._send: MemoryObjectSendStream[Item] | None = None
        self._receive: MemoryObjectReceiveStream[Item] | None = None
        self._crash_next: BaseException | None = None
        #: Replies to asks whose caller had already given up (dropped, never raised).
        self.late_replies = 0
        #: The message being handled when ``handle`` last raised (the supervisor logs it).
        self.lost: Message | None = None

    def connect(self, bus: Bus) -> None:
        """Open the inbox and subscribe it to ``accepts`` on ``bus`` (before :meth:`run`).

        An actor that is never connected (replay, unit tests) is just its
        decisions: ``handle`` works without an inbox, and nothing needs closing.
        """
        if self._send is not None:
            raise RuntimeError(f"{self.name} is already connected")
        self.bus = bus
        self._send, self._receive = anyio.create_memory_object_stream[Item](self.inbox_size)
        bus.subscribe(self.accepts, self._send, self.wants)

    def _inbox(self) -> MemoryObjectReceiveStream[Item]:
        if self._receive is None:
            raise RuntimeError(f"{self.name} is not connected to a bus: call connect(bus) first")
        return self._receive

    @classmethod
    def inbox_types(cls, union: Any) -> tuple[type[Message], ...]:
        """The members of an inbox union, Tick left out (an actor's timer is not delivered by the bus)."""
        return tuple(t for t in get_args(union) if t is not Tick)

    # -- to override ------------------------------------------------------
    @abstractmethod
    def handle(self, message: In, now: float) -> list[Message]:
        """Decide: update state, return the messages to publish. No I/O."""

    @staticmethod
    def wants(message: Message) -> bool:
        """Whether the bus delivers this message of an accepted type (judged on the message alone)."""
        return True

    def next_deadline(self) -> float | None:
        """When this actor next wants a :class:`Tick` (None: never)."""
        return None

    def idle(self, now: float) -> list[Message]:
        """Called when the inbox is drained, before the loop waits: messages to publish then.

        An actor whose readers want its state once per burst rather than once
        per message (the metrics collector) publishes its snapshot here.
        """
        return []

    async def emit(self, messages: list[Message]) -> None:
        """Publish what ``handle`` returned."""
        assert self.bus is not None
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
        try:
            return self.handle(message, now)  # type: ignore[arg-type]  # the bus routes only ``accepts``
        except Exception:
            self.lost = message
            raise

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive, decide, publish, until cancelled or closed. Exceptions escape to the supervisor."""
        task_status.started()
        receive, clock = self._inbox(), self.clock
        burst = 0
        while True:
            deadline = self.next_deadline()
            if deadline is not None and deadline <= (now := clock.now()):
                if self.logs_timers and self.bus is not None:
                    self.bus.tell(TimerFired(at=now, actor=self.name))  # replay fires it at this time
                await self.emit(self._dispatch(Tick(at=now), now))  # a timer is due: Tick first
                continue
            try:
                item = receive.receive_nowait()
            except anyio.WouldBlock:
                burst = 0
                if out := self.idle(clock.now()):
                    await self.emit(out)
                    continue
                try:
                    waited = await self._wait(deadline)
                except _CLOSED:  # close() while idle: a clean stop, not a crash
                    return
                if waited is None:
                    continue  # the deadline came
                item = waited
            except _CLOSED:
                return
            else:
                burst += 1
                if burst >= _BURST:  # a long backlog still lets other tasks run
                    burst = 0
                    await anyio.lowlevel.checkpoint()
            await self._deliver(item)

    async def _wait(self, deadline: float | None) -> Item | None:
        """The next item, or None when ``deadline`` (a clock time) comes first."""
        receive = self._inbox()
        if deadline is None:
            return await receive.receive()
        with self.clock.move_on_at(deadline):
            return await receive.receive()
        return None

    async def _deliver(self, item: Item) -> None:
        # A decision is dated by the fact that caused it, not by when this
        # actor got round to it: the same inputs give the same decisions
        # however busy the loop was, which is what makes replay exact.
        if isinstance(item, Envelope):
            try:
                out = self._dispatch(item.message, item.message.at)
            except Exception as exc:
                self._reply(item, exc)
                raise
            try:
                if out:
                    await self.emit(out)
            except BaseException:  # cancelled mid-emit (shutdown): the asker learns why now
                self._reply(item, SupervisorClosedError(f"{self.name} stopped while answering"))
                raise
            self._reply(item, out)
        else:
            out = self._dispatch(item, item.at)
            if out:
                await self.emit(out)

    def _reply(self, envelope: Envelope, reply: Reply) -> None:
        try:
            envelope.reply_to.send_nowait(reply)
        except (*_GONE, anyio.WouldBlock):
            self.late_replies += 1  # the asker gave up (timed out or was cancelled)

    async def ask(self, message: In, *, wait_s: float = 10.0) -> list[Message]:
        """Send ``message`` and wait (at most ``wait_s``) for the messages ``handle`` returned."""
        inbox = self._send
        if inbox is None:
            raise SupervisorClosedError(f"{self.name} is not running")
        send, receive = anyio.create_memory_object_stream[Reply](1)
        with send, receive, anyio.fail_after(wait_s):  # the whole ask: room in the inbox and the reply
            try:
                await inbox.send(Envelope(message, send))
            except _GONE:
                raise SupervisorClosedError(f"{self.name} is stopped") from None
            reply = await receive.receive()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def pending(self) -> int:
        """How many messages wait in the inbox."""
        return 0 if self._receive is None else self._receive.statistics().current_buffer_used

    def close(self) -> None:
        """Stop taking messages; fail every pending ask with a clear error. Never raises."""
        if self._send is None or self._receive is None:
            return
        self._send.close()
        while True:
            try:
                item = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if isinstance(item, Envelope):
                self._reply(item, SupervisorClosedError(f"{self.name} stopped first"))
        self._receive.close()
