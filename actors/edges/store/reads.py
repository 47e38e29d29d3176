"""The state file's reads: provider state, metrics, rollups, the event log and meta values.

A mixin of :class:`~actors.edges.store.store.Store`: every read goes through
its ``_fetch``, which flushes the buffers first, so a read sees every write
buffered before it.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import msgspec

from actors.core.messages import ProviderMetrics, ProviderView
from actors.edges.store.schema import MetricRollup, StoredEvent

__all__ = ("StoreReads",)

_log = logging.getLogger("actors.edges.store")
_view_decoder = msgspec.json.Decoder(ProviderView)
_metrics_decoder = msgspec.json.Decoder(ProviderMetrics)
_HOUR_S = 3600.0


class StoreReads(ABC):
    """Queries over the state file; the Store supplies ``_fetch`` (flush, then read under its lock)."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of ``sql`` once everything buffered before the call is written."""

    async def load_providers(self) -> dict[str, ProviderView]:
        """The last saved state of every provider."""
        rows = await self._fetch("SELECT name, data FROM provider_state ORDER BY name")
        return _decode_rows(rows, _view_decoder, "provider state")

    async def load_metrics(self) -> dict[str, ProviderMetrics]:
        """The last saved metrics snapshot of every provider."""
        rows = await self._fetch("SELECT name, data FROM provider_metrics ORDER BY name")
        return _decode_rows(rows, _metrics_decoder, "provider metrics")

    async def rollups(self, *, since: float | None = None) -> list[MetricRollup]:
        """Hourly counts of every provider, from the hour holding ``since`` on, oldest first."""
        start = -math.inf if since is None else since - since % _HOUR_S
        sql = "SELECT * FROM metric_rollups WHERE bucket_start >= ? ORDER BY bucket_start, provider"
        return [MetricRollup(*row) for row in await self._fetch(sql, (start,))]

    async def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
        provider: str | None = None,
        types: Sequence[str] | None = None,
        before: int | None = None,
        descending: bool = False,
        request_id: str | None = None,
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with ``after < id < before`` and ``since <= at < until``, by id.

        ``descending`` gives the newest first (page on with ``before`` = the last id seen).
        """
        if limit < 0:  # SQLite reads a negative LIMIT as "no limit"
            raise ValueError(f"limit must not be negative, not {limit}")
        where, params = ["id > ?"], list[Any]([after])
        for clause, value in (
            ("id < ?", before),
            ("at >= ?", since),
            ("at < ?", until),
            ("provider = ?", provider),
            ("json_extract(data, '$.request_id') = ?", request_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if types is not None:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        sql = (
            f"SELECT id, at, type, provider, data FROM events WHERE {' AND '.join(where)}"
            f" ORDER BY id {'DESC' if descending else 'ASC'} LIMIT ?"
        )
        return [StoredEvent(*row) for row in await self._fetch(sql, [*params, limit])]

    async def iter_events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        provider: str | None = None,
        batch: int = 5000,
    ) -> AsyncIterator[StoredEvent]:
        """Every event logged before the call, in id order, ``batch`` rows in memory at a time."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        ((end,),) = await self._fetch("SELECT coalesce(max(id), 0) + 1 FROM events")
        after = 0
        while page := await self.events(
            after=after, limit=batch, since=since, until=until, provider=provider, before=end
        ):
            for event in page:
                yield event
            after = page[-1].id

    async def first_id_since(self, since: float) -> int | None:
        """The smallest id of an event at or after ``since`` (None: there is none), from the ``at`` index.

        :meth:`events` walks ids, so ``since`` alone makes it scan the log from its start; with
        ``after=first_id_since(t) - 1`` it reads only the window (the status page's history).
        """
        ((first,),) = await self._fetch("SELECT min(id) FROM events INDEXED BY events_at WHERE at >= ?",
                                        (since,))
        return None if first is None else int(first)

    async def count_events(self) -> int:
        """How many events the log holds."""
        ((count,),) = await self._fetch("SELECT count(*) FROM events")
        return int(count)


def _decode_rows(rows: Iterable[Any], decoder: msgspec.json.Decoder[Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data in rows:
        try:
            out[name] = decoder.decode(data)
        except msgspec.DecodeError as exc:
            # One unreadable row must not stop a restart: that provider starts fresh.
            _log.warning("ignoring the stored %s of %r: %s", what, name, exc)
    return out
