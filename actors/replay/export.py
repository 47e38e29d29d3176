"""``run.py events export``: the state file's event log as JSON lines, whole or an excerpt.

The state file is opened read-only (safe beside a running service) and read
in pages, so memory stays flat however long the log. An excerpt from
``since=T`` starts with the provider state at T, as a ``state_snapshot`` line
that replay starts from: it is worked out by replaying the log from the last
supervisor start before T up to the first point at or after T where nothing
was in flight between the actors (no replayed decision waiting for its
recorded line), so the excerpt replays exactly whenever the whole log does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec

from actors.core.config import Config
from actors.core.errors import UnknownProviderError
from actors.core.messages import (
    SCHEMA_VERSION,
    ActorRestarted,
    LoggedMessage,
    Message,
    StateSnapshot,
    decode_message,
)
from actors.core.public_config import CONFIG_META, public_config
from actors.edges.store import Store, StoredEvent
from actors.replay.engine import Run, lost_messages
from actors.replay.eventlog import FORMAT, EventLog, LogHeader, replay_config
from actors.replay.exact import exact

__all__ = ("export_events",)

_PAGE = 20_000


async def export_events(
    state_path: str | os.PathLike[str],
    out: IO[bytes],
    *,
    config: Config | None = None,
    since: float | None = None,
    until: float | None = None,
    provider: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the header and the events of the state file to ``out``; return how many events.

    ``progress(done, total)`` is told after each page how far through the log's rows the export is
    (the command line's progress bar).

    ``since`` starts an excerpt with the state at that time (a ``state_snapshot``
    line, not counted). ``provider`` keeps that provider's events and the ones
    that concern no single provider (starts, restarts). The header's config is
    the one the service last ran under, else ``config``.
    """
    store = await Store.open(state_path, readonly=True)
    try:
        recorded = await store.get_meta(CONFIG_META)
        payload: dict[str, Any] = msgspec.json.decode(recorded) if recorded else {}
        if not payload and config is not None:
            payload = {"config": public_config(config),
                       "configured": [p.name for p in config.providers if p.configured]}
        if provider is not None:
            await _check_provider(store, provider, payload.get("config"))
        asked = (("since", since), ("until", until), ("provider", provider))
        filters: dict[str, Any] = {k: v for k, v in asked if v is not None}
        snapshot: StateSnapshot | None = None
        after = 0
        if since is not None:
            found = await _state_at(store, payload, since)
            if found is None:
                filters["note"] = ("no supervisor start before since: the excerpt starts at since with no"
                                   " provider state; replay assumes every provider healthy there")
                first = await store.events(since=since, limit=1)
                after = first[0].id - 1 if first else 2**62
            else:
                snapshot, after = found
        header = LogHeader(format=FORMAT, schema_version=SCHEMA_VERSION, exported_at=time.time(),
                           source=os.path.basename(os.fspath(state_path)), config=payload.get("config"),
                           configured=payload.get("configured"), filters=filters)
        out.write(msgspec.json.encode(header) + b"\n")
        if snapshot is not None:
            out.write(msgspec.json.encode(snapshot) + b"\n")
        count, start = 0, after
        newest = await store.events(descending=True, limit=1) if progress is not None else []
        total = max(0, newest[0].id - start) if newest else 0
        while page := await store.events(after=after, limit=_PAGE, until=until):
            for event in page:
                if provider is None or event.provider in (None, provider):
                    out.write(event.data)
                    out.write(b"\n")
                    count += 1
            after = page[-1].id
            if progress is not None:
                progress(min(after - start, total), total)
        if progress is not None:
            progress(total, total)
        return count
    finally:
        await store.close()


async def _check_provider(store: Store, provider: str, recorded: dict[str, Any] | None) -> None:
    """``provider`` is one the service ran with, or one the log names: else UnknownProviderError."""
    known = sorted({str(p.get("name")) for p in (recorded or {}).get("providers", ()) if isinstance(p, dict)})
    if provider in known or await store.events(provider=provider, limit=1):
        return
    raise UnknownProviderError(provider, known)


async def _state_at(store: Store, payload: dict[str, Any], since: float) -> tuple[StateSnapshot, int] | None:
    """The provider state at the first quiet point at or after ``since``, and the id before it."""
    starts = await store.events(types=["supervisor_started"], until=since, descending=True, limit=1)
    if not starts or payload.get("config") is None:
        return None
    start = starts[0]
    config = replay_config(payload["config"], payload.get("configured"), source="the state file's config")
    restarts = [e.message for e in await store.events(types=["actor_restarted"], after=start.id - 1,
                                                      until=since, limit=1_000_000)]
    run = Run(EventLog(header=LogHeader(format=FORMAT, schema_version=SCHEMA_VERSION), messages=[]), config,
              lost=lost_messages([m for m in restarts if isinstance(m, ActorRestarted)]), keep=False)
    ids: dict[int, int] = {}  # id() of the message object -> its event id (to find where the cut fell)

    def lines() -> Iterator[tuple[int, LoggedMessage]]:
        after = start.id - 1
        while page := anyio.from_thread.run(_page, store, after):
            for event in page:
                message = decode_message(event.data)
                ids[id(message)] = event.id
                yield event.id, message
            after = page[-1].id

    def stop(message: Message) -> bool:
        return message.at >= since

    await anyio.to_thread.run_sync(exact, run, lines(), stop)
    engine = run.current()
    cut = run.cut
    at = since if cut is not None else engine.now
    routing = engine.selector.snapshot(at)
    views = (*routing.providers, *routing.deployments)  # a deployment's record is a view too
    after_id = ids[id(cut)] - 1 if cut is not None else 2**62
    return StateSnapshot(at=at, providers=views), after_id


async def _page(store: Store, after: int) -> list[StoredEvent]:
    return await store.events(after=after, limit=_PAGE)
