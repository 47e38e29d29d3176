"""The Supervisor: starts the actors, wires their channels, owns the request path.

::

    async with Supervisor(config) as fallback:
        reply = await fallback.chat([{"role": "user", "content": "hi"}], model="chat")

On entry it opens the SQLite store, restores provider state and metrics,
starts the store's flusher and the five actors in one task group (each with
``await tg.start(...)`` so it is ready before the first request). A crashed
actor is restarted one-for-one with a growing backoff and an
:class:`ActorRestarted` event; its inbox, and so every message waiting in it,
survives the restart. On exit it stops taking requests, lets in-flight ones
finish within ``shutdown_grace_s``, drains the inboxes, fails pending asks
with :class:`SupervisorClosedError`, and flushes the store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from actors.core.actor import Actor, Bus
from actors.core.clock import Clock, SystemClock
from actors.core.config import Config
from actors.core.errors import InvalidRequestError, SupervisorClosedError
from actors.core.messages import (
    ActorRestarted,
    FallbackTriggered,
    Message,
    MetricsSnapshot,
    ProviderRecovered,
    ProviderStateChanged,
    ProviderView,
    RoutingSnapshot,
    SupervisorStarted,
    Sync,
    message_key,
)
from actors.edges.prober import Prober
from actors.edges.providers import make_adapter
from actors.edges.store.store import Store
from actors.runtime.cluster import Cluster, open_cluster
from actors.runtime.control import Control
from actors.runtime.fallback_log import FallbackLog
from actors.runtime.replies import ChatReply, ChatStream
from actors.runtime.request import RequestPath
from actors.runtime.route import Route, take_route
from actors.runtime.status import build_status
from actors.runtime.telemetry import Telemetry
from actors.runtime.validation import check_request
from actors.runtime.wiring import build_actors, load_restored, record_config

__all__ = ("Supervisor",)

log = logging.getLogger("actors.supervisor")
T = TypeVar("T")
_MAX_BACKOFF_S = 5.0


class Supervisor(Control):
    """The embeddable failover engine. Use it as an async context manager."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._own_session = session is None
        self._session = session
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._closing = False
        self._in_flight = 0
        self._idle = anyio.Event()
        self._routing: RoutingSnapshot | None = None
        self._metrics: MetricsSnapshot | None = None  # the latest the collector published
        self._prober: Prober | None = None
        self._cluster: Cluster | None = None  # [state] shared_url: the peers, through Redis
        self._persisted: MetricsSnapshot | None = None  # the last metrics written to the store
        self._routing_changed = anyio.Event()
        self._saved_views: dict[str, ProviderView] = {}
        self.restarts: dict[str, int] = {}
        self.actors: dict[str, Actor[Any]] = {}
        self.store: Store | None = None
        self.bus = Bus()
        self._path: RequestPath | None = None

    # -- lifecycle ----------------------------------------------------------
    async def __aenter__(self) -> Supervisor:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def _start(self, stack: AsyncExitStack) -> None:
        config, clock = self.config, self.clock
        store = await Store.open(
            config.state.path,
            flush_interval_s=config.state.flush_interval_s,
            retention_days=config.metrics.retention_days,
            events_retention_days=config.state.events_retention_days,
            events_max_mb=config.state.events_max_mb,
        )
        stack.push_async_callback(store.close)
        self.store = store
        fallback_log = await FallbackLog.open(config, status=self.status)  # [logging]; ConfigError: bad dir
        stack.push_async_callback(fallback_log.close)  # after the task group: queued lines, final summary
        restored = await load_restored(store, clock.now())

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),  # our clock owns every timeout
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=256),
            )
        if self._own_session:
            stack.push_async_callback(self._session.close)
        adapters = {p.name: make_adapter(p, self._session, clock) for p in config.providers if p.configured}

        bus = self.bus
        bus.log_sink = store.append
        bus.listen([RoutingSnapshot], self._on_routing)
        bus.listen([MetricsSnapshot], self._on_metrics)
        bus.listen([ProviderStateChanged, FallbackTriggered, ProviderRecovered], self._log_event)
        fallback_log.attach(bus)
        if (telemetry := Telemetry.open(config)) is not None:  # [telemetry] otel; ConfigError: no [otel]
            telemetry.attach(bus)
        actors = build_actors(config, clock=clock, restored=restored)
        snapshot = actors.start
        # Replay starts here (deployments' records are views like the providers').
        bus.tell(SupervisorStarted(at=snapshot.at, providers=(*snapshot.providers, *snapshot.deployments)))
        await record_config(store, config)
        self._on_routing(snapshot)
        self._metrics = actors.metrics.snapshot(snapshot.at)  # before it runs: what was restored
        for actor in actors.all():
            actor.connect(bus)
        self.actors = {a.name: a for a in actors.all()}
        # Shared state, if configured: open before the task group, so that it closes after it.
        cluster = await stack.enter_async_context(open_cluster(config, bus=bus, clock=clock,
                                                               routing=self._current_routing))
        self._cluster = cluster
        prober = Prober(config.providers, config.health, adapters=adapters, clock=clock, bus=bus,
                        claims=cluster)
        self._prober = prober
        self._path = RequestPath(config, adapters, clock=clock, bus=bus, snapshot=self._current_routing,
                                 changed=lambda: self._routing_changed, settle=self.settle,
                                 prefill_refused=set(restored.prefill_refused))
        if cluster is not None:
            cluster.share_headroom(self._path.admission)  # before it runs
        stack.callback(self._close_actors)  # after the task group is done: fail pending asks
        tg = await stack.enter_async_context(anyio.create_task_group())
        self._tg = tg
        stack.push_async_callback(self._shutdown)
        await tg.start(store.run)
        await tg.start(fallback_log.run)
        for actor in actors.all():
            await tg.start(self._supervise, actor)
        await tg.start(self._supervise, prober)
        if cluster is not None:
            await tg.start(cluster.run)
        tg.start_soon(self._refresh_every, 1.0)
        for name, view in ((v.name, v) for v in snapshot.providers):
            if view.state == "unconfigured":
                log.debug("provider %s is unconfigured: %s", name, view.detail)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is not None:
            return await stack.__aexit__(exc_type, exc, tb)
        return None

    async def _shutdown(self) -> None:
        """Stop taking requests, let in-flight ones finish, drain, fail asks, flush."""
        self._closing = True
        with anyio.move_on_after(self.config.server.shutdown_grace_s):
            while self._in_flight:
                await self._idle.wait()
        # Let every actor work through what is already in its inbox (bounded).
        for _ in range(1000):
            if all(a.pending() == 0 for a in self.actors.values()):
                break
            await anyio.lowlevel.checkpoint()
        with contextlib.suppress(SupervisorClosedError, TimeoutError):  # a last snapshot, read out now
            await self.actors["metrics_collector"].ask(Sync(at=self.clock.now()), wait_s=2)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        final = self._metrics  # the collector published it after draining its inbox
        if final is not None and self.store is not None:
            self._on_metrics(final)
            await self.store.set_meta("fallbacks_total", msgspec.json.encode(final.fallbacks_total).decode())

    def _close_actors(self) -> None:
        for actor in self.actors.values():
            actor.close()
        if self._prober is not None:
            self._prober.close()

    async def _refresh_every(self, interval_s: float) -> None:
        """Ask for a metrics snapshot every ``interval_s`` (the collector publishes at most that often
        by itself), so the store persists the last burst's counts even when no more traffic comes.

        Real time, like the store's batching: housekeeping, not policy (on a virtual clock it
        would add a timer to every second a test advances).
        """
        while not self._closing:
            await anyio.sleep(interval_s)
            await self.refresh()

    async def _supervise(
        self, actor: Actor[Any] | Prober, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run an actor; on a crash log it, announce it, and restart it after a backoff."""
        status = task_status
        restarts = 0
        while True:
            try:
                await actor.run(task_status=status)
                return
            except Exception as exc:
                if self._closing:
                    raise
                status = anyio.TASK_STATUS_IGNORED
                restarts += 1
                self.restarts[actor.name] = restarts
                log.error("actor %s crashed (%s: %s); restarting (#%d)", actor.name,
                          type(exc).__name__, exc, restarts)
                lost = None
                if isinstance(actor, Actor):
                    lost, actor.lost = actor.lost, None
                await self.bus.publish(ActorRestarted(at=self.clock.now(), actor=actor.name,
                                                      error=f"{type(exc).__name__}: {exc}"[:300],
                                                      restarts=restarts,
                                                      lost=None if lost is None else message_key(lost)))
                backoff = min(_MAX_BACKOFF_S, 0.0 if restarts == 1 else 0.05 * 2 ** min(restarts, 10))
                if backoff:
                    await self.clock.sleep_until(self.clock.now() + backoff)

    # -- snapshots ----------------------------------------------------------
    def _on_routing(self, message: Message) -> None:
        assert isinstance(message, RoutingSnapshot)
        self._routing = message
        if self.store is not None:
            for view in (*message.providers, *message.deployments):
                if self._saved_views.get(view.name) != view:
                    self._saved_views[view.name] = view
                    self.store.save_provider(view)
        changed, self._routing_changed = self._routing_changed, anyio.Event()
        changed.set()

    def _on_metrics(self, message: Message) -> None:
        """Keep the snapshot for readers; persist what changed since the last one (batched by the store)."""
        assert isinstance(message, MetricsSnapshot)
        self._metrics = message
        previous, self._persisted = self._persisted, message
        if self.store is None:
            return
        for name, m in message.providers.items():
            if previous is None or previous.providers.get(name) is not m:
                self.store.save_metrics(name, m, message.at)

    # -- the public API -----------------------------------------------------
    def _body(self, messages: Sequence[dict[str, Any]] | None, model: str | None,
              params: dict[str, Any]) -> dict[str, Any]:
        body = dict(params)
        if messages is not None:
            body["messages"] = list(messages) if isinstance(messages, list | tuple) else messages
        if model is not None:
            body["model"] = model
        return body

    def _checked(self, body: dict[str, Any], validated: bool,
                 headers: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str, Route]:
        model = body.get("model") or self.config.routing.default_model
        if not isinstance(model, str):
            raise InvalidRequestError("'model' must be a string", param="model")
        body = {**body, "model": model}
        body, route = take_route(body, self.config, model, headers)
        if not validated:
            check_request(body)
        return body, model, route

    async def chat(self, messages: Sequence[dict[str, Any]] | None = None, *, model: str | None = None,
                   **params: Any) -> ChatReply:
        """A chat completion from the best available provider, with failover.

        Raises InvalidRequestError (a ValueError) naming a malformed field,
        UnknownModelError, UpstreamRejectedError for a request every provider
        would refuse, and AllProvidersFailedError listing every attempt.
        """
        return await self.complete(self._body(messages, model, params))

    async def complete(self, body: dict[str, Any], *, validated: bool = False,
                       route: Mapping[str, Any] | None = None) -> ChatReply:
        """Like :meth:`chat`, from an OpenAI-shaped request body (``model`` is logical).

        ``validated=True`` skips the check when the caller already ran
        :func:`actors.runtime.validation.parse_request` on the same body (the gateway does).
        The body's ``fallback`` key (and ``route``, the gateway's x-fallback headers, which win)
        pins or reorders the chain or turns fallback off: :mod:`actors.runtime.route`.
        """
        path = self._request_path()
        body, model, chain = self._checked(body, validated, route)
        if body.get("stream"):
            raise InvalidRequestError("complete() does not stream; use stream()", param="stream")
        return await self._tracked(path.complete(body, model, chain))

    async def open_stream(self, messages: Sequence[dict[str, Any]] | None = None, *,
                          model: str | None = None, **params: Any) -> ChatStream:
        """Connect a stream, failing over until its first chunk arrives; use it with ``async with``."""
        return await self.open_stream_body(self._body(messages, model, params))

    async def open_stream_body(self, body: dict[str, Any], *, validated: bool = False,
                               route: Mapping[str, Any] | None = None) -> ChatStream:
        """Like :meth:`open_stream`, from an OpenAI-shaped request body (``route``: see complete)."""
        path = self._request_path()
        body, model, chain = self._checked({**body, "stream": True}, validated, route)
        return await self._tracked(path.open_stream(body, model, chain))

    async def stream(self, messages: Sequence[dict[str, Any]] | None = None, *, model: str | None = None,
                     **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chat.completion.chunk dicts; see :class:`ChatStream` for failures."""
        async with await self.open_stream(messages, model=model, **params) as chunks:
            async for payload in chunks:
                chunk: dict[str, Any] = msgspec.json.decode(payload)
                yield chunk

    async def _tracked(self, coro: Awaitable[T]) -> T:
        self._in_flight += 1
        try:
            return await coro
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
                self._idle = anyio.Event()

    def status(self) -> dict[str, Any]:
        """Providers, states, cooldowns, metrics and recent fallbacks (the /status JSON)."""
        status = build_status(self.config, self._current_routing(), self.metrics, self.clock.now())
        status["actors"] = {name: {"restarts": self.restarts.get(name, 0), "inbox": a.pending()}
                            for name, a in self.actors.items()}
        status["dropped_messages"] = self.bus.dropped
        for p in self.config.providers:
            # Rate-limit headroom per upstream model: configured rpm/tpm and what headers reported.
            view = status["providers"].get(p.name)
            if view is not None:
                view["headroom"] = self._path.admission.view(p) if self._path is not None else []
        status["routing"] = {"fallback": self.config.routing.fallback}
        if self._cluster is not None:
            status["shared"] = self._cluster.view()
        return status

    @property
    def routing(self) -> RoutingSnapshot:
        """The latest routing snapshot (providers by priority, with state)."""
        return self._current_routing()

    @property
    def metrics(self) -> MetricsSnapshot | None:
        """The latest metrics snapshot the collector published (None before its first)."""
        return self._metrics

    async def wait_for_state(self, name: str, *states: str, within_s: float = 10.0) -> str:
        """Wait (real time, bounded) until ``name`` is in one of ``states``; return it.

        For tests and tools: probes and health checks are real I/O, so a state
        change can land a moment after the virtual clock moved.
        """
        with anyio.fail_after(within_s):
            while (state := self.state_of(name)) not in states:
                await self._routing_changed.wait()
        return state

    @staticmethod
    def _log_event(message: Message) -> None:
        match message:
            case ProviderStateChanged():
                log.info("%s: %s -> %s (%s)", message.provider, message.old, message.new, message.reason)
            case FallbackTriggered():
                log.info("fallback %s -> %s (%s)", message.from_provider, message.to_provider or "nobody",
                         message.category)
            case ProviderRecovered():
                log.info("%s recovered after %.1f s", message.provider, message.downtime_s)
            case _:
                pass
