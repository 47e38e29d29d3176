"""``GET /events``: the event log, for a person asking what just happened.

::

    /events?order=desc&limit=20                      the 20 newest
    /events?type=fallback_triggered,provider_state_changed&provider=litellm&since=2026-11-22T10:00:00Z
    /events?request_id=req-ab12cd-42                 everything one request caused
    /events?after=1200                               the next page, oldest first (next_after)
    /events?order=desc&before=1200                   the next page, newest first (next_before)

``type`` takes tags (comma-separated), ``provider`` a provider name; an
unknown one is a 400 naming the known ones. ``since`` and ``until`` take
epoch seconds or ISO 8601. ``limit`` is 1 to 1000 (default 100).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from actors.core.errors import InvalidRequestError, SupervisorClosedError
from actors.core.messages import LoggedMessage
from actors.core.times import parse_time
from actors.gateway.http import json_response
from actors.runtime.supervisor import Supervisor

__all__ = ("TAGS", "events_route")

#: Every tag an event in the log can have.
TAGS: tuple[str, ...] = tuple(sorted(str(t.__struct_config__.tag) for t in LoggedMessage.__args__))
_MAX_ID = 2**63 - 1


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be an integer from {low} to {high}, got {raw!r}",
                                  param=name)
    return value


def _time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise InvalidRequestError(f"'{name}': {exc}", param=name) from None


def _types(request: web.Request) -> list[str] | None:
    raw = request.query.get("type")
    if raw is None:
        return None
    asked = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in asked if t not in TAGS]
    if unknown or not asked:
        raise InvalidRequestError(f"unknown event type {', '.join(map(repr, unknown)) or repr(raw)}:"
                                  f" known types are {', '.join(TAGS)}", param="type")
    return asked


def events_route(supervisor: Supervisor) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The ``/events`` handler for ``supervisor``."""
    known = [p.name for p in supervisor.config.providers]

    async def events(request: web.Request) -> web.StreamResponse:
        descending = request.query.get("order", "asc")
        if descending not in ("asc", "desc"):
            raise InvalidRequestError(f"'order' must be asc or desc, got {descending!r}", param="order")
        provider = request.query.get("provider")
        if provider is not None and provider not in known:
            raise InvalidRequestError(f"unknown provider {provider!r}: configured are {', '.join(known)}",
                                      param="provider")
        after = _int(request, "after", 0, 0, _MAX_ID)
        before = _int(request, "before", _MAX_ID, 1, _MAX_ID)
        limit = _int(request, "limit", 100, 1, 1000)
        since, until = _time(request, "since"), _time(request, "until")
        store = supervisor.store
        if store is None:
            raise SupervisorClosedError("the supervisor is not running")
        await store.flush()  # so that what just happened is there
        found = await store.events(after=after, before=before, limit=limit, since=since, until=until,
                                   provider=provider, types=_types(request), descending=descending == "desc",
                                   request_id=request.query.get("request_id"))
        page: dict[str, Any] = {"events": [{"id": e.id, "at": e.at, "type": e.type, "provider": e.provider,
                            "data": msgspec.Raw(e.data)} for e in found]}
        if descending == "desc":
            page["next_before"] = found[-1].id if found else before
        else:
            page["next_after"] = found[-1].id if found else after
        return json_response(page)

    return events
