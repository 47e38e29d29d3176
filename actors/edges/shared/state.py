"""SharedState: one instance's handle on the provider state its cluster shares through Redis.

Takes in: what this instance saw or decided (a cooldown, a failure, a
restore, an admin set), its claims (a half-open probe, rate-limit budget).
Puts out: the shared answer (the cooldown end that holds, the cluster's
failure count, whether the probe is ours, whether the budget allows it), a
full read for reconcile (:meth:`SharedState.records`), and the peers'
changes as typed messages (:meth:`SharedState.changes`).
Owns: one ``redis.asyncio`` connection pool and the :class:`RedisBreaker`
around it.

Promises:

* every write is one Lua script (:mod:`.scripts`), atomic on the server: a
  cooldown is never shortened by a shorter one, each failure counts once,
  one instance holds a probe, the budget is never overspent;
* no call raises because Redis is slow or down: each is bounded by the
  breaker's timeout and returns ``None`` ("Redis did not answer: go on with
  local state"); an open breaker answers ``None`` at once;
* no password and no URL user info reaches a log line, an error or a repr.

Times are wall-clock epoch seconds from the injected clock (instances share
no monotonic clock); the failure window alone runs on the Redis server's
clock, so every instance counts in the same window.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

from actors.core.clock import Clock, SystemClock
from actors.core.config_schema import Secret
from actors.core.errors import FallbackError
from actors.core.shared_urls import describe_redis_url, shared_url_problem
from actors.core.states import ProviderState
from actors.edges.shared.breaker import BreakerStatus, RedisBreaker
from actors.edges.shared.messages import (
    ChangesResumed,
    CooldownExtended,
    HeadroomExhausted,
    PeerChange,
    SharedRecord,
    Spent,
    StateSet,
    Written,
    change_head,
    decode_change,
    encode_message,
    usage_by_instance,
)
from actors.edges.shared.scripts import (
    COUNT_FAILURE,
    EXTEND_COOLDOWN,
    READ_RECORDS,
    RELEASE_PROBE,
    RENEW_PROBE,
    SET_STATE,
    SPEND,
    USAGE,
)

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ("SharedState", "SharedStateError")

T = TypeVar("T")
_log = logging.getLogger("actors.shared")
_POLL_S = 1.0  # how often a quiet subscription looks at the breaker
_RESUBSCRIBE_S = 0.05  # the least wait between two subscription attempts
_KEEP: tuple[ProviderState, ...] = ("disabled",)  # what a cooldown never overrides: an admin's word
_Arg = str | bytes | int | float  # what a script takes as ARGV


class SharedStateError(FallbackError, ValueError):
    """Raised by :meth:`SharedState.connect` when it can't start: the URL is not one it takes, or
    redis-py is not installed. Never once connected: Redis being down is the breaker's report.
    """


def _ms(seconds: float) -> int:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"expected a positive number of seconds, got {seconds!r}")
    return max(1, round(seconds * 1000))


def _number(value: float, name: str) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of epoch seconds, got {value!r}")
    return repr(float(value))


class SharedState:
    """The cluster's shared provider state (the module docstring says what it promises).

    Open it with ``async with SharedState.connect(url, password=..., prefix=..., instance_id=...)``.
    Each method returns ``None`` when Redis did not answer (slow, down, or the breaker open): go on
    with local state. After a timeout, a write may or may not have happened; ``count_failure``'s
    ``failure_id`` makes sending it again harmless.
    """

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, instance_id: str,
                 breaker: RedisBreaker, clock: Clock) -> None:
        self._client = client
        self.prefix = prefix
        self.instance_id = instance_id
        self._breaker = breaker
        self._clock = clock
        self._channel = f"{prefix}:changes"
        self._extend = client.register_script(EXTEND_COOLDOWN)
        self._set = client.register_script(SET_STATE)
        self._read = client.register_script(READ_RECORDS)
        self._count = client.register_script(COUNT_FAILURE)
        self._renew = client.register_script(RENEW_PROBE)
        self._release = client.register_script(RELEASE_PROBE)
        self._spend = client.register_script(SPEND)
        self._usage = client.register_script(USAGE)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        password: str | Secret | None = None,
        prefix: str = "provider-fallback",
        instance_id: str,
        timeout_s: float = 0.25,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_change: Callable[[BreakerStatus], None] | None = None,
        clock: Clock | None = None,
    ) -> AsyncIterator[SharedState]:
        """One connection pool to ``url`` for the block; a Redis that is down does not stop it.

        ``password`` is the resolved value of ``[state] shared_password_env``
        (a :class:`Secret` or the text). The breaker's transitions are logged
        once each (``actors.shared``) and passed to ``on_change``.
        """
        if problem := shared_url_problem(url):
            raise SharedStateError(problem)
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError, RedisError
        except ImportError:
            raise SharedStateError("shared state needs redis-py: "
                                   "pip install 'provider-fallback[redis]'") from None
        secret = password.reveal() if isinstance(password, Secret) else password
        target = describe_redis_url(url)
        clock = clock or SystemClock()

        def report(status: BreakerStatus) -> None:
            if status.state == "closed":
                _log.warning("shared state: redis at %s reachable again", target)
            else:
                _log.warning("shared state: %s; serving on local state, retrying with backoff", status.reason)
            if on_change is not None:
                on_change(status)

        # RuntimeError: uvloop raises it where asyncio raises OSError (aiohappyeyeballs impl.py).
        breaker = RedisBreaker(target, errors=(RedisError, RuntimeError), timeout_s=timeout_s,
                               base_backoff_s=base_backoff_s, max_backoff_s=max_backoff_s, on_change=report,
                               clock=clock, secrets=(secret,))
        # One immediate retry on a fresh connection after a connection error, so that a pooled
        # connection the server (or a proxy) closed while idle is not taken for an outage. Not after a
        # timeout: the command may have run, and spend() must not run twice. The breaker's timeout
        # bounds both tries; any further retrying is the breaker's, with backoff.
        pool = aioredis.ConnectionPool.from_url(
            url, password=secret or None, decode_responses=True, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
            retry_on_error=[ConnectionError])  # redis-py 5 retries only what this lists
        client = aioredis.Redis.from_pool(pool)
        try:
            shared = cls(client, prefix=prefix, instance_id=instance_id, breaker=breaker, clock=clock)
            await shared.ping()
            yield shared
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def __repr__(self) -> str:
        return (f"SharedState(target={self._breaker.target!r}, prefix={self.prefix!r}, "
                f"instance_id={self.instance_id!r}, breaker={self._breaker.status.state!r})")

    @property
    def breaker(self) -> BreakerStatus:
        """Whether Redis answers: ``closed`` (yes), ``open`` (no; ``reason`` says why), ``half_open``."""
        return self._breaker.status

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        return await self._breaker.call(fn)

    async def ping(self) -> bool:
        """True when Redis answered now (a trial, when the breaker is open and due)."""

        async def ping() -> bool:
            return bool(await self._client.ping())  # type: ignore[misc]  # redis-py's sync/async union

        return await self._call(ping) is not None

    # ---------------------------------------------------------------- provider and deployment state

    async def extend_cooldown(self, key: str, until: float, *, state: ProviderState = "cooldown",
                              reason: str = "", origin: str = "", since: float | None = None,
                              keep: Collection[ProviderState] = _KEEP) -> Written | None:
        """Set ``key``'s cooldown to end at ``until`` unless a later end is stored: never shortens.

        Atomic, and published to peers when it changes the record. A record in
        one of the ``keep`` states (an admin's ``disabled``) is left alone, and
        so is one set unconditionally (a restore) after ``since``, when given:
        a failure seen before a restore does not undo it.
        """
        at = self._clock.now()
        change = CooldownExtended(key=key, state=state, until=until, reason=reason, origin=origin,
                                  instance=self.instance_id, at=at)
        args: list[_Arg] = [key, _number(until, "until"), state, reason, origin, self.instance_id, repr(at),
                            "" if since is None else _number(since, "since"), self._channel,
                            change_head(change), *keep]
        keys = [self._key("rec", key), f"{self.prefix}:recs", f"{self.prefix}:version"]
        reply: Any = await self._call(lambda: self._extend(keys=keys, args=args))
        if reply is None:
            return None
        stored, changed, version = reply
        return Written(until=float(stored), changed=bool(changed), version=int(version))

    async def set_state(self, key: str, state: ProviderState, *, reason: str = "", origin: str = "",
                        until: float = 0.0) -> int | None:
        """Set ``key``'s record whatever it held (admin enable/disable); publishes; the new version."""
        return await self._write(key, state, reason=reason, origin=origin, until=until, restored=False)

    async def restore(self, key: str, *, origin: str = "", reason: str = "restored") -> int | None:
        """``key`` is healthy again, its cooldown and failure count cleared, for all; the new version."""
        return await self._write(key, "healthy", reason=reason, origin=origin, until=0.0, restored=True)

    async def _write(self, key: str, state: ProviderState, *, reason: str, origin: str, until: float,
                     restored: bool) -> int | None:
        at = self._clock.now()
        change = StateSet(key=key, state=state, until=until, reason=reason, origin=origin,
                          instance=self.instance_id, at=at, restored=restored)
        args: list[_Arg] = [key, _number(until, "until"), state, reason, origin, self.instance_id, repr(at),
                            self._channel, change_head(change)]
        keys = [self._key("rec", key), f"{self.prefix}:recs", f"{self.prefix}:version"]
        if restored:
            keys.append(self._key("fail", key))
        reply: Any = await self._call(lambda: self._set(keys=keys, args=args))
        return None if reply is None else int(reply)

    async def records(self) -> dict[str, SharedRecord] | None:
        """Every shared record, by key, in one consistent read (for reconcile)."""
        reply: Any = await self._call(lambda: self._read(keys=[f"{self.prefix}:recs"],
                                                         args=[f"{self.prefix}:rec:"]))
        if reply is None:
            return None
        out: dict[str, SharedRecord] = {}
        for name, fields in zip(reply[::2], reply[1::2], strict=True):
            data = dict(zip(fields[::2], fields[1::2], strict=True))
            try:
                out[name] = msgspec.convert({**data, "key": name}, SharedRecord, strict=False)
            except msgspec.ValidationError as exc:  # written by something else: not ours to read
                _log.debug("shared state: record %r skipped: %s", name, exc)
        return out

    # ---------------------------------------------------------------- failures, counted once

    async def count_failure(self, key: str, window_s: float, *, failure_id: str | None = None) -> int | None:
        """Count one failure of ``key``; the cluster's failures within the last ``window_s`` seconds.

        ``failure_id`` (an attempt's request id, say) makes a repeated report count once.
        """
        args: list[_Arg] = [_ms(window_s), failure_id or f"{self.instance_id}:{uuid.uuid4().hex}"]
        reply: Any = await self._call(lambda: self._count(keys=[self._key("fail", key)], args=args))
        return None if reply is None else int(reply)

    async def reset_failures(self, key: str) -> bool | None:
        """Forget ``key``'s failures (a success), for the whole cluster."""

        async def reset() -> bool:
            await self._client.delete(self._key("fail", key))
            return True

        return await self._call(reset)

    # ---------------------------------------------------------------- half-open probe ownership

    async def acquire_probe(self, key: str, owner: str, ttl_s: float) -> bool | None:
        """Take ``key``'s probe for ``ttl_s`` seconds: True for exactly one contender at a time.

        The lock expires by itself if its owner dies; renew it for a longer probe.
        """
        ttl_ms = _ms(ttl_s)

        async def acquire() -> bool:
            return bool(await self._client.set(self._key("probe", key), owner, nx=True, px=ttl_ms))

        return await self._call(acquire)

    async def renew_probe(self, key: str, owner: str, ttl_s: float) -> bool | None:
        """Extend the probe lock to ``ttl_s`` from now, only while ``owner`` still holds it."""
        args: list[_Arg] = [owner, _ms(ttl_s)]
        reply: Any = await self._call(lambda: self._renew(keys=[self._key("probe", key)], args=args))
        return None if reply is None else bool(reply)

    async def release_probe(self, key: str, owner: str) -> bool | None:
        """Give the probe back; False when ``owner`` no longer holds it (it expired, another took it)."""
        reply: Any = await self._call(lambda: self._release(keys=[self._key("probe", key)], args=[owner]))
        return None if reply is None else bool(reply)

    # ---------------------------------------------------------------- rate-limit headroom

    async def spend(self, key: str, *, requests: int = 1, tokens: int = 0, window_s: float = 60.0,
                    limit_requests: int = 0, limit_tokens: int = 0) -> Spent | None:
        """Spend from ``key``'s shared budget, all or nothing; a limit <= 0 is no limit.

        The window starts with its first spend and lasts ``window_s`` seconds.
        Negative amounts give back (an estimate corrected once the usage is known).
        """
        args: list[_Arg] = [requests, tokens, _ms(window_s), limit_requests, limit_tokens]
        reply: Any = await self._call(lambda: self._spend(keys=[self._key("spend", key)], args=args))
        if reply is None:
            return None
        allowed, used_r, used_t, reset_ms = (int(v) for v in reply)
        return Spent(allowed=bool(allowed), requests_used=used_r, tokens_used=used_t,
                     remaining_requests=max(0, limit_requests - used_r) if limit_requests > 0 else None,
                     remaining_tokens=max(0, limit_tokens - used_t) if limit_tokens > 0 else None,
                     reset_s=reset_ms / 1000)

    async def add_usage(self, minute: int, sent: Mapping[str, tuple[int, int]]
                        ) -> dict[str, tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]] | None:
        """Add what this instance sent to each deployment (requests, tokens) to wall-clock minute
        ``minute``'s count, and read back every instance's count of that minute and the one before:
        ``{key: (this minute, previous minute)}``, each ``{instance: (requests, tokens)}``."""
        keys: list[str] = []
        args: list[_Arg] = [self.instance_id, 120_000]
        for key, (requests, tokens) in sent.items():
            keys += [self._key("use", f"{key}:{minute}"), self._key("use", f"{key}:{minute - 1}")]
            args += [requests, tokens]
        if not keys:
            return {}
        reply: Any = await self._call(lambda: self._usage(keys=keys, args=args))
        if reply is None:
            return None
        return {key: (usage_by_instance(reply[2 * i]), usage_by_instance(reply[2 * i + 1]))
                for i, key in enumerate(sent)}

    async def publish_exhausted(self, key: str, until: float) -> bool | None:
        """Tell the peers deployment ``key`` has no headroom until ``until`` (epoch seconds)."""
        _number(until, "until")  # finite, or ValueError
        data = encode_message(HeadroomExhausted(key=key, until=until, instance=self.instance_id,
                                                at=self._clock.now()))

        async def publish() -> bool:
            await self._client.publish(self._channel, data)
            return True

        return await self._call(publish)

    # ---------------------------------------------------------------- the peers' changes

    async def changes(self) -> AsyncGenerator[PeerChange, None]:
        """The peers' changes, as they are published; never this instance's own.

        Yields :class:`ChangesResumed` each time Redis confirms the subscription
        (the first time, and after every reconnect, redis-py's own included):
        changes may have been missed before it, so read :meth:`records` then.
        While Redis is down it waits with the breaker's backoff. Close it
        (``contextlib.aclosing``) to let its connection go.
        """
        while True:
            pubsub = self._client.pubsub()
            try:
                if await self._call(functools.partial(self._subscribe, pubsub)) is None:
                    now = self._clock.now()
                    await self._clock.sleep_until(max(self._breaker.retry_at(), now + _RESUBSCRIBE_S))
                    continue
                while self._breaker.closed:
                    try:
                        message = await pubsub.get_message(timeout=_POLL_S)
                    except self._breaker.errors as exc:
                        self._breaker.failed(exc)
                        break
                    kind = message.get("type") if message is not None else None
                    if kind == "subscribe":
                        yield ChangesResumed(at=self._clock.now())
                    elif kind == "message" and message is not None:
                        if (change := self._decode(message["data"])) is not None:
                            yield change
            finally:
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    async def _subscribe(self, pubsub: redis.asyncio.client.PubSub) -> bool:
        await pubsub.subscribe(self._channel)
        return True

    def _decode(self, data: str) -> CooldownExtended | StateSet | HeadroomExhausted | None:
        """A peer's change; None for this instance's own, or for what is not a change (logged)."""
        try:
            change = decode_change(data)
        except msgspec.DecodeError as exc:
            _log.warning("shared state: a message on %s is not a change, skipped: %s", self._channel, exc)
            return None
        return None if change.instance == self.instance_id else change

