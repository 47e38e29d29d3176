"""The one owner of the SQLite state file.

Takes in: messages for the event log (:meth:`Store.append`), provider state
(:meth:`Store.save_provider`), metric snapshots (:meth:`Store.save_metrics`).
These only buffer, in O(1): the request path never waits for the disk.
Puts out: what was stored, for a restart, for ``/events`` and for replay.
Owns: one aiosqlite connection (itself an actor: one worker thread reading a
queue) and the write buffers. :meth:`Store.run` is the flusher: every
``flush_interval_s``, or at once when provider state changes, it writes all
that is buffered in one transaction; messages are encoded on the worker thread.

Promises: a commit is in the WAL when :meth:`Store.flush` returns, and with
``synchronous=NORMAL`` it survives ``kill -9`` (not a power cut, which would
need an fsync per commit); reads see every write buffered before them;
cancelling :meth:`Store.run` loses nothing (writes are shielded and
:meth:`Store.close` writes the rest); a failed write stays buffered for the
next try; every problem with the file is a :class:`~actors.errors.StoreError`
naming the path, the problem and a fix. Batching and retention run on real
time, not on the injected clock: they are housekeeping, not policy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosqlite
import anyio
import anyio.abc
import msgspec

from actors.core.errors import StoreError
from actors.core.messages import (
    Message,
    ProviderMetrics,
    ProviderView,
)
from actors.edges.store.opening import OwnerLock, connect_readonly, connect_writable
from actors.edges.store.reads import StoreReads
from actors.edges.store.schema import (
    INSERT_EVENT,
    MIGRATIONS,
    UPSERT_META,
    UPSERT_ROLLUP,
    UPSERT_STATE,
    Counts,
    MetricRollup,
    StoredEvent,
    close_quietly,
    event_row,
    translated,
)

__all__ = ("MIGRATIONS", "MetricRollup", "Store", "StoredEvent")

_log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_HOUR_S = 3600.0
_PRUNE_EVERY_S = 3600.0
_PRUNE_BATCH = 10_000  # rows deleted per transaction
_WAKE_AT_EVENTS = 20_000  # a burst this large is written without waiting for the interval

class Store(StoreReads):
    """The SQLite state file: provider state, event log, metrics. Create it with :meth:`open`."""

    def __init__(self, db: aiosqlite.Connection, path: str, busy_timeout_s: float) -> None:
        self._db = db
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._flush_interval_s = 0.25
        self._retention_s = 30 * 86_400.0
        self._events_retention_s = 30 * 86_400.0
        self._events_max_bytes = math.inf
        self._baselines: dict[str, Counts] = {}  # counts at the last save_metrics
        self._events: list[Message] = []
        self._providers: dict[str, tuple[ProviderView, float]] = {}
        self._metrics: dict[str, tuple[ProviderMetrics, float]] = {}
        self._rollups: dict[tuple[str, float], Counts] = {}
        self._lock = anyio.Lock()  # one transaction at a time on the one connection
        self._wake = anyio.Event()
        self._committed = anyio.Event()
        self._closed = False
        self._readonly = False  # opened read-only
        self._owner: OwnerLock | None = None  # held while open for writing
        self._started = self._finished = 0  # writes begun, and the last one committed

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        flush_interval_s: float = 0.25,
        retention_days: float = 30,
        events_retention_days: float | None = None,
        events_max_mb: float = math.inf,
        busy_timeout_s: float = 2.0,
        readonly: bool = False,
    ) -> Store:
        """Open, create or migrate the state file; raise StoreError if it can't be used.

        ``retention_days`` bounds the metric rollups, and the event log unless
        ``events_retention_days`` is given; ``events_max_mb`` bounds the event
        log's data (the oldest events go first). ``math.inf`` keeps everything. ``readonly=True``
        only reads an existing file (export, offline status) and never writes
        to it, so it is safe beside a running service.
        """
        where = os.fspath(path)
        if readonly:
            store = cls(await connect_readonly(where, busy_timeout_s), where, busy_timeout_s)
            store._readonly = True
            return store
        if await anyio.Path(where).is_dir():  # before its lock file lands beside it
            raise StoreError(f"is a directory, not a database file; use a file path such as "
                             f"{os.path.join(where, 'fallback.db')}", path=where)
        try:
            await anyio.Path(where).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create its directory ({exc}); create it or choose another state path",
                             path=where) from exc
        owner = OwnerLock.take(where)
        try:
            db, baselines = await connect_writable(where, busy_timeout_s)
        except BaseException:
            owner.release()
            raise
        store = cls(db, where, busy_timeout_s)
        store._owner = owner
        store._flush_interval_s = flush_interval_s
        store._retention_s = retention_days * 86_400.0
        store._events_retention_s = (retention_days if events_retention_days is None
                                     else events_retention_days) * 86_400.0
        store._events_max_bytes = events_max_mb * 1_000_000
        store._baselines.update(baselines)
        return store

    @property
    def path(self) -> str:
        return self._path

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- writes: buffer only

    def append(self, message: Message) -> None:
        """Buffer ``message`` for the event log; messages whose class is not logged are ignored."""
        if not type(message).logged:
            return
        self._check_writable()
        self._check_open()
        self._events.append(message)
        if len(self._events) == _WAKE_AT_EVENTS:
            self._wake.set()

    def save_provider(self, view: ProviderView) -> None:
        """Buffer a provider's state (latest wins) and wake the flusher to write it promptly."""
        self._check_open()
        self._check_writable()
        self._providers[view.name] = (view, time.time())
        self._wake.set()

    def save_metrics(self, provider: str, metrics: ProviderMetrics, at: float) -> None:
        """Buffer a metrics snapshot; add what it counted since the last save to the hour of ``at``.

        Counts below those of the last save mean the counters restarted: they count in full.
        """
        self._check_open()
        self._check_writable()
        counts = (metrics.requests_total, metrics.requests_success, metrics.requests_failed)
        last = self._baselines.get(provider, (0, 0, 0))
        delta = (counts[0] - last[0], counts[1] - last[1], counts[2] - last[2])
        if min(delta) < 0:
            delta = counts
        self._baselines[provider] = counts
        self._metrics[provider] = (metrics, at)
        if any(delta):
            key = (provider, at - at % _HOUR_S)
            t, s, f = self._rollups.get(key, (0, 0, 0))
            self._rollups[key] = (t + delta[0], s + delta[1], f + delta[2])

    # ---------------------------------------------------------------- flushing

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Prune, report ready, write the buffers every interval, or when woken, until closed."""
        await self.prune()
        task_status.started()
        next_prune = anyio.current_time() + _PRUNE_EVERY_S
        failing = False
        while not self._closed:
            with anyio.move_on_after(self._flush_interval_s):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
                if anyio.current_time() >= next_prune:
                    next_prune = anyio.current_time() + _PRUNE_EVERY_S
                    await self.prune()
            except StoreError as exc:
                if self._closed:
                    return
                if not failing:  # the batch stays buffered; the next round retries it
                    _log.error("writing the state file failed, will retry: %s", exc)
                failing = True
            else:
                if failing:
                    _log.warning("writing the state file works again: %s", self._path)
                failing = False

    async def flush(self) -> None:
        """Write everything buffered now, and return once it is committed."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._check_open()
                if not self._readonly:
                    await self._write_buffers()

    async def commit(self, *, within_s: float = 5.0) -> bool:
        """Return once everything buffered before the call is committed to the WAL (no fsync).

        The flusher is woken and every caller waits for the first write that
        began after its call, so a burst of callers shares one transaction.
        False when that took longer than ``within_s`` (the disk is failing: the
        flusher keeps retrying; the caller is not held hostage to it).
        """
        if self._readonly or self._closed:
            return not self._closed
        target = self._started + 1
        self._wake.set()
        with anyio.move_on_after(within_s):
            while self._finished < target and not self._closed:
                await self._committed.wait()
            return True
        return False

    async def wait_for_commit(self) -> None:
        """Return after the next batch is committed (or the store is closed)."""
        await self._committed.wait()

    async def close(self) -> None:
        """Write what is buffered, then close the connection; calling it again does nothing."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if self._closed:
                    return
                try:
                    while self._events or self._providers or self._metrics or self._rollups:
                        await self._write_buffers()
                finally:
                    self._closed = True  # no await since the check above: nothing is left behind
                    self._wake.set()
                    self._committed.set()
                    await close_quietly(self._db)
                    if self._owner is not None:
                        self._owner.release()

    async def prune(self, *, now: float | None = None) -> int:
        """Enforce retention; return how many events went.

        Events older than ``events_retention_days`` go, then the oldest events
        while the log's data is over ``events_max_mb``; rollups older than
        ``retention_days`` go. Deletes run in batches of :data:`_PRUNE_BATCH`
        rows, each its own short transaction, so a commit a request waits for
        (:meth:`commit`) is never stuck behind a long delete.
        """
        at = time.time() if now is None else now
        deleted = await self._delete_events("at < ?", at - self._events_retention_s)
        if not math.isinf(self._events_max_bytes):
            deleted += await self._shrink_to(self._events_max_bytes)
        if not math.isinf(cutoff := at - self._retention_s):
            await self._locked_write("DELETE FROM metric_rollups WHERE bucket_start < ?", (cutoff,))
        return deleted

    async def _locked_write(self, sql: str, params: Sequence[Any]) -> int:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._check_open()
                self._check_writable()
                await self._write_buffers()  # buffered events are subject to the same rules
                async with self._transaction() as db:
                    cursor = await db.execute(sql, params)
        return int(cursor.rowcount)

    async def _delete_events(self, where: str, value: float) -> int:
        if math.isinf(value):
            return 0
        deleted = 0
        while True:
            batch = await self._locked_write(
                f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE {where} ORDER BY id LIMIT ?)",
                (value, _PRUNE_BATCH))
            deleted += batch
            if batch < _PRUNE_BATCH:
                return deleted
            await anyio.lowlevel.checkpoint()  # let waiting commits through between batches

    async def _shrink_to(self, max_bytes: float) -> int:
        """Delete the oldest events until their data is at most ~90 % of ``max_bytes``."""
        ((total, count),) = await self._fetch("SELECT coalesce(sum(length(data)), 0), count(*) FROM events")
        if total <= max_bytes or not count:
            return 0
        excess = total - 0.9 * max_bytes
        rows = min(count, int(excess / (total / count)) + 1)
        ((last,),) = await self._fetch("SELECT coalesce(max(id), 0) FROM (SELECT id FROM events ORDER BY id"
                                       " LIMIT ?)", (rows,))
        _log.warning("state file %s: the event log holds %.0f MB, over events_max_mb; dropping its oldest"
                     " %d events", self._path, total / 1e6, rows)
        return await self._delete_events("id <= ?", last)

    async def _write_buffers(self) -> None:
        """Commit the buffers in one transaction (lock held); on failure, put them back."""
        events, self._events = self._events, []
        providers, self._providers = self._providers, {}
        metrics, self._metrics = self._metrics, {}
        rollups, self._rollups = self._rollups, {}
        self._started += 1
        if not (events or providers or metrics or rollups):
            self._finish()
            return
        try:
            async with self._transaction() as db:
                # map(): messages are encoded lazily, on aiosqlite's worker thread.
                await db.executemany(INSERT_EVENT, map(event_row, events))
                await db.executemany(
                    UPSERT_STATE.format("provider_state"),
                    [(n, _encoder.encode(v), t) for n, (v, t) in providers.items()],
                )
                await db.executemany(
                    UPSERT_STATE.format("provider_metrics"),
                    [(n, _encoder.encode(m), t) for n, (m, t) in metrics.items()],
                )
                await db.executemany(UPSERT_ROLLUP, [(*k, *c) for k, c in rollups.items()])
        except BaseException:
            self._events[:0] = events
            self._providers = providers | self._providers
            self._metrics = metrics | self._metrics
            for key, (t, s, f) in self._rollups.items():
                t0, s0, f0 = rollups.get(key, (0, 0, 0))
                rollups[key] = (t0 + t, s0 + s, f0 + f)
            self._rollups = rollups
            raise
        self._finish()

    def _finish(self) -> None:
        self._finished = self._started
        self._committed.set()
        self._committed = anyio.Event()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (the caller holds the lock); sqlite3 errors become StoreError."""
        with translated(self._path, self._busy_timeout_s):
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.rollback()
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed; open it again to use it", path=self._path)

    def _check_writable(self) -> None:
        if self._readonly:
            raise StoreError("was opened read-only; nothing can be written to it", path=self._path)

    # ---------------------------------------------------------------- reads: flush first

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        await self.flush()
        async with self._lock:
            self._check_open()
            with translated(self._path, self._busy_timeout_s):
                return list(await self._db.execute_fetchall(sql, params))

    async def set_meta(self, key: str, value: str) -> None:
        """Store a small value (e.g. the config a log ran under); ``store.*`` keys are the store's."""
        self._check_writable()
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._check_open()
                async with self._transaction() as db:
                    await db.execute(UPSERT_META, (key, value))

    async def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, if any."""
        rows = await self._fetch("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None
