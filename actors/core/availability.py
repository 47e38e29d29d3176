"""Uptime from a provider's state history: the share of observed time it was usable.

A provider is *up* while ``healthy`` or ``degraded``, *down* while ``cooldown``,
``probing`` or ``unhealthy``; ``disabled`` and ``unconfigured`` time is not
observed (an admin's choice or a missing key is not an outage), and neither is
time the service was not running. :class:`Availability` is immutable: the
MetricsCollector builds a new one on each state change, readers compute the
figures at the time they read (:func:`uptime`), so the request path pays nothing.
"""

from __future__ import annotations

import msgspec

from actors.core.states import DOWN_STATES, USABLE_STATES, ProviderState

__all__ = ("Availability", "Segment", "advance", "carried_over", "uptime")

_WINDOW_KEEP_S = 86_400.0
_MAX_SEGMENTS = 2_000  # a flapping provider can't grow this without bound


class Segment(msgspec.Struct, frozen=True, array_like=True):
    """A closed stretch of observed time: [start, end), up or down."""

    start: float
    end: float
    up: bool


class Availability(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's observed up and down time: closed segments of the last day, and the open one."""

    segments: tuple[Segment, ...] = ()  # oldest first, ending within the last day
    up_s: float = 0.0  # closed up time since this service started
    observed_s: float = 0.0  # closed observed time since this service started
    since: float | None = None  # start of the open segment (None: not observed now)
    up: bool = False  # whether the open segment is up
    started: float | None = None  # when this service started observing
    as_of: float | None = None  # when this was read out (a persisted copy is good up to here)


def _observed(state: ProviderState) -> bool | None:
    """True: up, False: down, None: not observed."""
    if state in USABLE_STATES:
        return True
    if state in DOWN_STATES:
        return False
    return None


def carried_over(avail: Availability | None) -> Availability:
    """What a restarted service keeps of a persisted availability: the day's segments.

    The open segment is closed where the copy was read out (``as_of``); the
    time after it, while the service was not running, was not observed. The
    since-start sums begin again.
    """
    if avail is None:
        return Availability()
    if avail.since is not None and avail.as_of is not None and avail.as_of > avail.since:
        avail = advance(avail, "unconfigured", avail.as_of)  # closes it; nothing observed after
    return Availability(segments=avail.segments)


def advance(avail: Availability, state: ProviderState, at: float) -> Availability:
    """The availability after the provider entered ``state`` at ``at``."""
    segments = avail.segments
    up_s, observed_s = avail.up_s, avail.observed_s
    if avail.since is not None and at > avail.since:
        segments = (*segments, Segment(avail.since, at, avail.up))
        observed_s += at - avail.since
        if avail.up:
            up_s += at - avail.since
    cut = at - _WINDOW_KEEP_S
    first = 0
    while first < len(segments) and segments[first].end <= cut:
        first += 1
    segments = segments[max(first, len(segments) - _MAX_SEGMENTS):]
    observed = _observed(state)
    return Availability(segments=segments, up_s=up_s, observed_s=observed_s,
                        since=None if observed is None else at, up=bool(observed),
                        started=avail.started if avail.started is not None else at)


def uptime(avail: Availability | None, now: float, window_s: float | None = None) -> float | None:
    """Percent of observed time up: over the last ``window_s`` seconds, or since start (None).

    None when nothing was observed in that span.
    """
    if avail is None:
        return None
    if window_s is None:
        up, seen = avail.up_s, avail.observed_s
        if avail.since is not None and now > avail.since:
            seen += now - avail.since
            up += (now - avail.since) if avail.up else 0.0
        return round(100.0 * up / seen, 3) if seen > 0 else None
    start = now - window_s
    up = seen = 0.0
    spans = [(s.start, s.end, s.up) for s in avail.segments]
    if avail.since is not None:
        spans.append((avail.since, now, avail.up))
    for a, b, is_up in spans:
        length = min(b, now) - max(a, start)
        if length > 0:
            seen += length
            up += length if is_up else 0.0
    return round(100.0 * up / seen, 3) if seen > 0 else None
