"""Where a :class:`~actors.runtime.supervisor.Supervisor` runs, and how to reach it from any thread or loop.

A Supervisor is bound to the event loop it was entered in (its task group,
its aiohttp session, its anyio events). A :class:`Host` runs a piece of work,
``work(supervisor)``, on that loop and hands back the result (or the very
exception it raised) to the caller, whoever the caller is:

- :meth:`Host.run` from synchronous code, in any thread but the loop's own;
- :meth:`Host.arun` from a coroutine: on the Supervisor's loop it just
  awaits; on any other loop it schedules the work there and awaits a future;
- :meth:`Host.stream` / :meth:`Host.astream` for a streamed completion: one
  pump task on the Supervisor's loop owns the whole :class:`ChatStream` (its
  connection, its timers) from open to close and hands payloads through a
  bounded queue, so the consumer may be sync, on the same loop or elsewhere.

:class:`Engine` is a Host that owns its Supervisor: it starts a daemon thread
with a private event loop on first use, enters the Supervisor there, and on
:meth:`Engine.close` (or at interpreter exit) leaves it, which drains and
flushes the state file. :class:`Guest` is a Host over a Supervisor the caller
runs in a loop of its own; closing it is the caller's business.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import concurrent.futures as cf
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from actors.core.config import Config
from actors.core.errors import Attempt, SupervisorClosedError
from actors.runtime.supervisor import Supervisor

__all__ = ("Engine", "Guest", "Host", "Opened")

T = TypeVar("T")
Work = Callable[[Supervisor], Awaitable[T]]
_QUEUE = 64  # payloads a stream may run ahead of its consumer
_CLEANUP_S = 10.0  # how long a consumer waits for a stream it left to release its connection


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream is answering: who answers, after how many attempts, and the failed ones before."""

    provider: str
    attempts: int
    attempt_log: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None = None


_Item = Opened | bytes | _End


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _submit(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> cf.Future[T]:
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop is closed
        coro.close()
        raise SupervisorClosedError("the event loop the Supervisor ran in is closed") from None


def _wait_there(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    """Run ``coro`` on ``loop`` (another thread's) and block for its result."""
    future = _submit(coro, loop)
    try:
        return future.result()
    except cf.CancelledError:  # the loop shut down and cancelled it
        raise SupervisorClosedError("the Supervisor stopped during the call") from None
    except BaseException:
        future.cancel()  # KeyboardInterrupt and the like: the work stops too
        raise


async def _await_there(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    """Run ``coro`` on ``loop`` (not the running one) and await its result; cancelling us cancels it."""
    future = _submit(coro, loop)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we were cancelled (and so is the work)
        raise SupervisorClosedError("the Supervisor stopped during the call") from None


async def _pump(supervisor: Supervisor, body: dict[str, Any], queue: asyncio.Queue[_Item]) -> None:
    """Open the stream and copy it into ``queue``, ending with an :class:`_End` (carrying any error)."""
    try:
        async with await supervisor.open_stream_body(body) as stream:
            await queue.put(Opened(stream.provider, stream.attempts, tuple(stream.attempt_log)))
            async for payload in stream:
                await queue.put(payload)
        await queue.put(_End())
    except Exception as exc:
        await queue.put(_End(exc))


class _Pumping:
    """One stream's pump task on ``loop``, started and cancelled from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, supervisor: Supervisor, body: dict[str, Any]) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE)  # used only on ``loop``
        self.finished: cf.Future[None] = cf.Future()  # set when the task is done, however it ended
        self._task: asyncio.Task[None] | None = None
        try:
            loop.call_soon_threadsafe(self._start, supervisor, body)
        except RuntimeError:  # the loop is closed
            raise SupervisorClosedError("the event loop the Supervisor ran in is closed") from None

    def _start(self, supervisor: Supervisor, body: dict[str, Any]) -> None:
        self._task = self.loop.create_task(_pump(supervisor, body, self.queue))
        self._task.add_done_callback(lambda _: self.finished.set_result(None))

    def cancel(self) -> None:
        """Stop the pump (it releases the upstream connection); the start runs first (FIFO)."""
        if not self.finished.done():
            with contextlib.suppress(RuntimeError):  # the loop closed: its tasks are gone already
                self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _item(item: _Item) -> Opened | bytes | None:
    """The item to yield, None at the end; raises the stream's error as it is."""
    if isinstance(item, _End):
        if item.error is not None:
            raise item.error
        return None
    return item


class Host(abc.ABC):
    """Runs work on the loop its Supervisor lives in (see the module doc)."""

    @abc.abstractmethod
    def _target(self) -> tuple[asyncio.AbstractEventLoop, Supervisor]:
        """The loop and the Supervisor, ready for work (may block: starting)."""

    async def _atarget(self) -> tuple[asyncio.AbstractEventLoop, Supervisor]:
        return self._target()

    def close(self) -> None:  # noqa: B027 (a guest owns nothing: closing it does nothing)
        """Stop what this host owns (nothing, unless it owns the Supervisor)."""

    def run(self, work: Work[T]) -> T:
        """Run ``work`` to its end from synchronous code; its exception is raised here as it is."""
        loop, supervisor = self._target()
        if _running_loop() is loop:
            raise RuntimeError("a synchronous call would block the event loop the Supervisor runs in: "
                               "await the async method (ainvoke, astream, abatch), or call it from "
                               "another thread (await asyncio.to_thread(model.invoke, ...))")
        return _wait_there(_coro(work, supervisor), loop)

    async def arun(self, work: Work[T]) -> T:
        """Await ``work`` from any event loop; cancelling the caller cancels the work."""
        loop, supervisor = await self._atarget()
        if _running_loop() is loop:
            return await work(supervisor)
        return await _await_there(_coro(work, supervisor), loop)

    # -- streams --------------------------------------------------------------
    def stream(self, body: dict[str, Any]) -> Iterator[Opened | bytes]:
        """Yield :class:`Opened`, then each payload, to synchronous code; errors are raised as they are."""
        loop, supervisor = self._target()
        if _running_loop() is loop:
            raise RuntimeError("a synchronous stream would block the event loop the Supervisor runs in: "
                               "use astream() there")
        pumping = _Pumping(loop, supervisor, body)
        try:
            while True:
                item = _item(_wait_there(pumping.queue.get(), loop))
                if item is None:
                    return
                yield item
        finally:
            pumping.cancel()
            if not loop.is_closed():
                cf.wait([pumping.finished], timeout=_CLEANUP_S)

    async def astream(self, body: dict[str, Any]) -> AsyncIterator[Opened | bytes]:
        """Like :meth:`stream`, for a coroutine on any event loop."""
        loop, supervisor = await self._atarget()
        here = _running_loop() is loop
        pumping = _Pumping(loop, supervisor, body)
        try:
            while True:
                get = pumping.queue.get()
                item = _item(await get if here else await _await_there(get, loop))
                if item is None:
                    return
                yield item
        finally:
            pumping.cancel()
            if not loop.is_closed():
                await asyncio.wait([asyncio.wrap_future(pumping.finished)], timeout=_CLEANUP_S)


async def _coro(work: Work[T], supervisor: Supervisor) -> T:
    return await work(supervisor)


class Guest(Host):
    """A Supervisor the caller entered (and will leave) in ``loop``."""

    def __init__(self, supervisor: Supervisor, loop: asyncio.AbstractEventLoop) -> None:
        self.supervisor = supervisor
        self.loop = loop

    def _target(self) -> tuple[asyncio.AbstractEventLoop, Supervisor]:
        if self.loop.is_closed():
            raise SupervisorClosedError("the event loop the Supervisor ran in is closed")
        if not self.loop.is_running():
            raise SupervisorClosedError("the event loop the Supervisor runs in is not running: "
                                        "call the model while 'async with Supervisor(...)' is open")
        return self.loop, self.supervisor


class Engine(Host):
    """Owns a Supervisor over ``config`` on a private event loop in a daemon thread.

    Started on first use (thread-safe); :meth:`close` leaves the Supervisor
    (in-flight requests finish, the store is flushed) and ends the thread. An
    engine never closed is closed at interpreter exit.
    """

    def __init__(self, config: Config, *, name: str = "fallback-engine") -> None:
        self.config = config
        self.name = name
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: cf.Future[Supervisor] | None = None
        self._stop: asyncio.Event | None = None  # made on the engine's loop

    @property
    def started(self) -> bool:
        """Whether its Supervisor is running now."""
        ready = self._ready
        return ready is not None and ready.done() and ready.exception() is None and not self._closed

    def _begin(self) -> tuple[asyncio.AbstractEventLoop, cf.Future[Supervisor]]:
        with self._lock:
            if self._closed:
                raise SupervisorClosedError("the FallbackChatModel is closed")
            failed = self._ready is not None and self._ready.done() and self._ready.exception() is not None
            if self._ready is None or failed:  # a failed start (say, a locked state file) is tried again
                if self._thread is not None:
                    self._thread.join()
                loop = asyncio.new_event_loop()
                ready: cf.Future[Supervisor] = cf.Future()
                thread = threading.Thread(target=self._serve, args=(loop, ready), name=self.name, daemon=True)
                self._loop, self._ready, self._thread = loop, ready, thread
                thread.start()
                atexit.register(self.close)
            assert self._loop is not None
            assert self._ready is not None
            return self._loop, self._ready

    def _target(self) -> tuple[asyncio.AbstractEventLoop, Supervisor]:
        loop, ready = self._begin()
        return loop, ready.result()

    async def _atarget(self) -> tuple[asyncio.AbstractEventLoop, Supervisor]:
        loop, ready = self._begin()
        return loop, await asyncio.wrap_future(ready)

    def start(self) -> None:
        """Start the Supervisor now (else the first call does); raises what its start raised."""
        self._target()

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: cf.Future[Supervisor]) -> None:
        with asyncio.Runner(loop_factory=lambda: loop) as runner:  # closes the loop, its tasks, its asyncgens
            runner.run(self._main(ready))

    async def _main(self, ready: cf.Future[Supervisor]) -> None:
        self._stop = asyncio.Event()
        try:
            async with Supervisor(self.config) as supervisor:
                ready.set_result(supervisor)
                await self._stop.wait()
        except BaseException as exc:
            if ready.done():
                raise
            ready.set_exception(exc)  # the caller that is waiting for the start raises it

    def close(self) -> None:
        """Leave the Supervisor and end the thread; idempotent, safe from any thread but the engine's."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, ready, thread = self._loop, self._ready, self._thread
        atexit.unregister(self.close)
        if loop is None or ready is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("close() from the engine's own loop would wait for itself")
        cf.wait([ready])
        stop = self._stop
        if ready.exception() is None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the caller's event loop."""
        await asyncio.to_thread(self.close)
