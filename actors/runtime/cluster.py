"""The cluster edge: this instance's provider state shared with its peers through Redis (issue 15).

Takes in: from the bus, this instance's :class:`ProviderStateChanged`
decisions, its :class:`RoutingSnapshot` views and the penalising
:class:`ErrorClassified` verdicts that take no cooldown at once (those count
toward ``failure_threshold``) (a bounded queue: the request path only
ever ``tell``\\ s, never waits on Redis); from Redis, the peers' changes
(pub/sub) and the whole shared state (a reconcile).
Puts out: :class:`PeerStateChanged` for each peer change this instance did
not know (a higher version than it has seen), and :class:`FailuresCounted`
when the cluster's failures of a provider reach ``failure_threshold``; both
are logged inputs, dated by this clock on arrival, so this instance's log
replays alone. Half-open probes are claimed through it (:class:`ProbeClaims`), and rate-limit
headroom is shared through it (:mod:`.shared_headroom`; the peers' ``HeadroomExhausted`` come in on
the same subscription; not logged: admission is per-process state).
Owns: the shared-state connection, the highest version seen per record, and
the latest cooldown end it pushed or learned per record.
Promises: nothing here is awaited by a request; a slow or dead Redis costs
one timeout, then the breaker answers at once (``None``: go on locally),
says so once, retries with backoff, and on its return this instance reads
the shared state again and pushes its own cooldowns back (a Redis restarted
without persistence comes back empty). Never a secret in a log or a view.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, get_args

import anyio
from anyio.abc import TaskStatus

from actors.core.actor import Bus
from actors.core.clock import Clock
from actors.core.config import Config
from actors.core.messages import (
    ErrorClassified,
    FailuresCounted,
    Message,
    PeerChangeKind,
    PeerStateChanged,
    ProviderStateChanged,
    ProviderView,
    RoutingSnapshot,
)
from actors.core.shared_urls import describe_redis_url
from actors.core.states import DOWN_STATES, Category, ProviderState
from actors.core.times import iso
from actors.edges.shared import (
    BreakerStatus,
    ChangesResumed,
    CooldownExtended,
    HeadroomExhausted,
    SharedRecord,
    SharedState,
    StateSet,
)
from actors.runtime.admission import Admission
from actors.runtime.shared_headroom import HeadroomSync

__all__ = ("Cluster", "instance_id", "open_cluster")

log = logging.getLogger("actors.cluster")
_QUEUE = 4096  # decisions waiting to be written; beyond, dropped and counted (a reconcile repairs)
_COOLING: frozenset[ProviderState] = frozenset({"cooldown", "unhealthy"})
_CATEGORIES: frozenset[str] = frozenset(get_args(Category))


def instance_id() -> str:
    """``host:pid:random``: unique per process, readable in logs and in the shared records."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _cause(reason: str) -> Category | None:
    return reason if reason in _CATEGORIES else None  # type: ignore[return-value]  # checked just now


class Cluster:
    """One instance's link to the shared state (the module docstring says what it promises)."""

    name = "cluster"

    def __init__(self, config: Config, shared: SharedState, *, bus: Bus, clock: Clock,
                 routing: Callable[[], RoutingSnapshot]) -> None:
        self.config = config
        self.shared = shared
        self.bus = bus
        self.clock = clock
        self._routing = routing
        self._versions: dict[str, int] = {}  # the highest version seen per record
        self._pushed: dict[str, float] = {}  # the latest cooldown end pushed or learned per record
        self._send, self._receive = anyio.create_memory_object_stream[Message](_QUEUE)
        self._latest_snapshot = 0
        self._resumed = anyio.Event()
        self.dropped = 0
        self.peer_changes = 0
        self.headroom: HeadroomSync | None = None  # rate-limit headroom, once share_headroom() is called

    # -- taking decisions in, off the request path ------------------------------
    def attach(self, bus: Bus) -> None:
        bus.listen([ProviderStateChanged, RoutingSnapshot, ErrorClassified], self._queue)

    def _queue(self, message: Message) -> None:
        if isinstance(message, RoutingSnapshot):
            self._latest_snapshot = message.version
        elif isinstance(message, ProviderStateChanged) and message.peer:
            return  # a peer's change, already in Redis
        elif isinstance(message, ErrorClassified) and not (
                message.penalize and message.check is None and not message.undecided
                and message.cooldown_s == 0):
            return  # only failures that count toward failure_threshold (the others cool it at once)
        try:
            self._send.send_nowait(message)
        except anyio.WouldBlock:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:
                log.warning("shared state: %d decisions not written (queue full); the next reconcile "
                            "repairs it", self.dropped)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def on_breaker(self, status: BreakerStatus) -> None:
        """The breaker closed again: read the shared state and push ours back."""
        if status.state == "closed":
            self._resumed.set()

    def share_headroom(self, admission: Admission) -> None:
        """Share this instance's rate-limit headroom with the peers (:mod:`.shared_headroom`)."""
        self.headroom = HeadroomSync(self.config, self.shared, admission, clock=self.clock)

    # -- probe ownership (the prober's ProbeClaims) ------------------------------
    async def acquire_probe(self, key: str, ttl_s: float) -> bool | None:
        return await self.shared.acquire_probe(key, self.shared.instance_id, ttl_s)

    async def release_probe(self, key: str) -> None:
        await self.shared.release_probe(key, self.shared.instance_id)

    # -- the loops ---------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._guarded, self._write_loop)
            tg.start_soon(self._guarded, self._read_loop)
            tg.start_soon(self._guarded, self._reconcile_loop)
            if self.headroom is not None:
                tg.start_soon(self._guarded, self.headroom.run)
            task_status.started()

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def _guarded(self, loop: Callable[[], Any]) -> None:
        """Run ``loop``; a bug in it is logged and it starts again (serving never depends on it)."""
        while True:
            try:
                await loop()
                return
            except Exception:
                log.exception("shared state: %s failed; restarting it", loop.__name__)
                await anyio.sleep(1.0)

    async def _read_loop(self) -> None:
        async with contextlib.aclosing(self.shared.changes()) as changes:
            async for change in changes:
                if isinstance(change, ChangesResumed):
                    # (Re)subscribed: maybe to a Redis that restarted empty, its version counter from 0
                    # again. Forget the versions seen, and let the reconcile learn every record anew
                    # (the selector ignores what it already has: a cooldown no later, a stale restore).
                    self._versions.clear()
                    self._resumed.set()
                elif isinstance(change, CooldownExtended | StateSet):
                    await self._learn(change.key, change.state, until=change.until, reason=change.reason,
                                      instance=change.instance, version=change.version, peer_at=change.at,
                                      restored=isinstance(change, StateSet) and change.restored)
                elif isinstance(change, HeadroomExhausted) and self.headroom is not None:
                    self.headroom.learn(change)

    async def _reconcile_loop(self) -> None:
        # Real time, like the store's batching: housekeeping against missed messages, not policy.
        while True:
            with anyio.move_on_after(self.config.state.shared_reconcile_s):
                await self._resumed.wait()
            self._resumed = anyio.Event()
            await self.reconcile()

    async def reconcile(self) -> None:
        """Learn every record newer than known, then push back local cooldowns Redis lacks."""
        records = await self.shared.records()
        if records is None:
            return
        for key, rec in records.items():
            await self._learn_record(key, rec)
        now = self.clock.now()
        routing = self._routing()
        for view in (*routing.providers, *routing.deployments):
            stored = records.get(view.name)
            if view.state in _COOLING and (view.cooldown_until or 0.0) > now and (
                    stored is None or stored.until < (view.cooldown_until or 0.0)):
                self._pushed.pop(view.name, None)
                await self._push_cooldown(view)

    async def _learn_record(self, key: str, rec: SharedRecord) -> None:
        await self._learn(key, rec.state, until=rec.until, reason=rec.reason, instance=rec.instance,
                          version=rec.version, peer_at=rec.at, restored=rec.state == "healthy")

    async def _learn(self, key: str, state: ProviderState, *, until: float, reason: str, instance: str,
                     version: int, peer_at: float, restored: bool) -> None:
        if version <= self._versions.get(key, 0) or instance == self.shared.instance_id:
            self._versions[key] = max(version, self._versions.get(key, 0))
            return
        self._versions[key] = version
        change: PeerChangeKind
        if state in _COOLING:
            change = "cooldown"
            self._pushed[key] = max(until, self._pushed.get(key, 0.0))
        elif state == "disabled":
            change = "disable"
        elif state == "healthy":
            change = "restore" if restored else "enable"
            self._pushed.pop(key, None)
        else:
            return
        self.peer_changes += 1
        await self.bus.publish(PeerStateChanged(
            at=self.clock.now(), provider=key, change=change, state=state, until=until, cause=_cause(reason),
            instance=instance, version=version, peer_at=peer_at))

    async def _write_loop(self) -> None:
        async for message in self._receive:
            match message:
                case RoutingSnapshot():
                    if message.version < self._latest_snapshot:
                        continue  # a newer one is queued: it says everything this one does
                    for view in (*message.providers, *message.deployments):
                        if view.state in _COOLING and (view.cooldown_until or 0.0) > self._pushed.get(
                                view.name, 0.0):
                            await self._push_cooldown(view)
                case ProviderStateChanged():
                    await self._push_move(message)
                case ErrorClassified():
                    await self._count(message)
                case _:
                    pass

    async def _push_cooldown(self, view: ProviderView) -> None:
        until = view.cooldown_until or 0.0
        self._pushed[view.name] = until
        reason = view.last_error.category if view.last_error is not None else ""
        written = await self.shared.extend_cooldown(view.name, until, state=view.state, reason=reason,
                                                    origin=reason, since=view.cooldown_since)
        if written is None:
            return  # Redis did not answer: the reconcile on its return pushes it again
        if written.changed:
            self._versions[view.name] = max(written.version, self._versions.get(view.name, 0))
        elif written.until > until and written.version > self._versions.get(view.name, 0):
            # A peer's longer cooldown was there first and its message has not come yet.
            records = await self.shared.records()
            if records is not None and (rec := records.get(view.name)) is not None:
                await self._learn_record(view.name, rec)

    async def _push_move(self, move: ProviderStateChanged) -> None:
        key, version = move.provider, None
        if move.reason == "admin_enable" and move.new == "healthy":
            version = await self.shared.set_state(key, "healthy", reason="admin_enable", origin="admin")
            await self.shared.reset_failures(key)
        elif move.new == "disabled" and move.reason == "admin_disable":
            version = await self.shared.set_state(key, "disabled", reason="admin_disable", origin="admin")
        elif move.new == "healthy" and move.old in DOWN_STATES:
            version = await self.shared.restore(key, origin=move.reason, reason=move.reason)
        elif move.new == "healthy" and move.old == "degraded":
            await self.shared.reset_failures(key)
        if move.new == "healthy":
            self._pushed.pop(key, None)
        if version is not None:
            self._versions[key] = max(version, self._versions.get(key, 0))

    async def _count(self, verdict: ErrorClassified) -> None:
        state = self.config.state
        count = await self.shared.count_failure(verdict.provider, state.shared_failure_window_s,
                                                failure_id=f"{verdict.request_id}|{verdict.at!r}")
        if count is not None and count >= self.config.routing.failure_threshold:
            await self.bus.publish(FailuresCounted(
                at=self.clock.now(), provider=verdict.provider, request_id=verdict.request_id, count=count,
                category=verdict.category, cooldown_s=verdict.cooldown_s,
                retry_after_s=verdict.retry_after_s))

    # -- the view ----------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """For /status: where (host:port/db, never a password), whether it answers, since when, who."""
        status = self.shared.breaker
        return {"url": describe_redis_url(self.config.state.shared_url),
                "state": "connected" if status.state == "closed" else "unreachable",
                "reason": status.reason or None, "since": iso(status.since),
                "instance": self.shared.instance_id,
                "peer_changes": self.peer_changes, "dropped": self.dropped,
                **({"headroom_sent": self.headroom.published, "headroom_received": self.headroom.received}
                   if self.headroom is not None else {})}


@asynccontextmanager
async def open_cluster(config: Config, *, bus: Bus, clock: Clock,
                       routing: Callable[[], RoutingSnapshot]) -> AsyncIterator[Cluster | None]:
    """The cluster edge when ``[state] shared_url`` is set (else None); a Redis down does not stop it."""
    state = config.state
    if not state.shared_url:
        yield None
        return
    holder: list[Cluster] = []

    def changed(status: BreakerStatus) -> None:
        if holder:
            holder[0].on_breaker(status)

    async with SharedState.connect(state.shared_url, password=state.shared_password,
                                   prefix=state.shared_prefix, instance_id=instance_id(),
                                   timeout_s=state.shared_timeout_s,
                                   on_change=changed, clock=clock) as shared:
        cluster = Cluster(config, shared, bus=bus, clock=clock, routing=routing)
        holder.append(cluster)
        cluster.attach(bus)  # a Redis that did not answer the first ping was logged once, by the breaker
        try:
            yield cluster
        finally:
            cluster.close()
