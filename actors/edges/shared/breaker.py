"""A circuit breaker around Redis itself: a slow or dead Redis costs a caller at most one timeout.

Takes in: each Redis call, as a function returning an awaitable. Puts out:
the call's result, or ``None`` when Redis did not answer (the caller goes on
with its local state), and one :class:`BreakerStatus` report per transition.
Owns: closed / open / half-open, and when the next try is due.

Promises:

* every call is bounded by ``timeout_s`` (real time: it guards real I/O);
* a failure opens the breaker; while open, calls return ``None`` at once
  without touching the network;
* once the backoff is over, the next call is a trial (half-open; concurrent
  calls still get ``None``): success closes, failure reopens with a doubled
  backoff (capped at ``max_backoff_s``, jittered so that instances don't
  come back in step);
* transitions are reported once each: ``on_change`` is called when it opens
  and when it closes, not for each failed trial. The reason names the target
  (``host:port``) and the error's class, never the password or the URL.

Backoff deadlines are read from the injected :class:`~actors.core.clock.Clock`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Collection
from typing import Literal, TypeVar

import anyio
import msgspec

from actors.core.clock import Clock, SystemClock
from actors.core.shared_urls import scrub

__all__ = ("BreakerState", "BreakerStatus", "RedisBreaker", "describe_failure")

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]


class BreakerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The breaker as of ``since``; ``reason`` says why it is open ("" when closed)."""

    state: BreakerState
    reason: str = ""
    since: float = 0.0
    failures: int = 0  # consecutive failed calls or trials


def describe_failure(exc: BaseException, target: str, secrets: Collection[str | None] = ()) -> str:
    """``redis unreachable at host:port: ConnectionRefusedError``, with no secret in it.

    The class is the root cause's (redis-py wraps the socket's error); a
    Redis-level refusal (a wrong password, a script error) adds its message,
    scrubbed of ``secrets`` and of any URL's user info.
    """
    if isinstance(exc, TimeoutError):  # ours (the breaker's timeout): its context is a cancellation
        return f"redis unreachable at {target}: TimeoutError (no answer in time)"
    root: BaseException = exc
    seen = {id(exc)}
    while isinstance(cause := root.__cause__ or root.__context__, Exception) and id(cause) not in seen:
        seen.add(id(cause))
        root = cause
    name = type(root).__name__
    if isinstance(root, OSError):
        return f"redis unreachable at {target}: {name}"
    detail = scrub(str(root), secrets)[:200]
    return f"redis unreachable at {target}: {name}" + (f": {detail}" if detail else "")


class RedisBreaker:
    """Bounds, counts and short-circuits Redis calls (the module docstring says how)."""

    def __init__(
        self,
        target: str,
        *,
        errors: tuple[type[BaseException], ...],
        timeout_s: float = 0.25,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_change: Callable[[BreakerStatus], None] | None = None,
        clock: Clock | None = None,
        secrets: Collection[str | None] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        #: What counts as "Redis did not answer".
        self.errors: tuple[type[BaseException], ...] = (*errors, OSError, TimeoutError)
        self._base, self._cap = base_backoff_s, max_backoff_s
        self._on_change = on_change
        self._clock = clock or SystemClock()
        self._secrets = tuple(secrets)
        self._rng = rng or random.Random()
        self._status = BreakerStatus(state="closed", since=self._clock.now())
        self._retry_at = 0.0
        self._trial = False

    @property
    def status(self) -> BreakerStatus:
        return self._status

    @property
    def closed(self) -> bool:
        return self._status.state == "closed"

    def retry_at(self) -> float:
        """When an open breaker lets the next trial through (clock time; now or earlier when closed)."""
        return self._retry_at if self._status.state != "closed" else self._clock.now()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        """``await fn()`` within the timeout, or ``None`` (open, a trial in flight, or it failed now)."""
        trial = False
        if self._status.state != "closed":
            if self._trial or self._clock.now() < self._retry_at:
                return None
            self._trial = trial = True
            self._status = msgspec.structs.replace(self._status, state="half_open")
        try:
            with anyio.fail_after(self.timeout_s):
                result = await fn()
        except self.errors as exc:
            self.failed(exc, trial=trial)
            return None
        except BaseException:
            if trial:  # cancelled from outside: no verdict on Redis, the next call tries again
                self._trial = False
                self._status = msgspec.structs.replace(self._status, state="open")
            raise
        self.succeeded()
        return result

    def failed(self, exc: BaseException, *, trial: bool = False) -> None:
        """Count a failed call (also one made outside :meth:`call`, like a subscription's read).

        Only the failure that opens a closed breaker, or the trial's own, counts:
        calls begun before it opened change neither the backoff nor the report.
        """
        if self._status.state != "closed" and not trial:
            return
        self._trial = False
        failures = self._status.failures + 1
        delay = min(self._cap, self._base * 2 ** (failures - 1))
        self._retry_at = self._clock.now() + delay * (0.5 + self._rng.random() / 2)
        if self._status.state == "closed":
            self._status = BreakerStatus(state="open", since=self._clock.now(), failures=failures,
                                         reason=describe_failure(exc, self.target, self._secrets))
            self._report()
        else:
            self._status = msgspec.structs.replace(self._status, state="open", failures=failures)

    def succeeded(self) -> None:
        """Count a successful call: an open breaker closes (and says so)."""
        self._trial = False
        if self._status.state != "closed":
            self._status = BreakerStatus(state="closed", since=self._clock.now())
            self._report()

    def _report(self) -> None:
        if self._on_change is not None:
            self._on_change(self._status)
