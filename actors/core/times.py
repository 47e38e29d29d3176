"""Times as people write them: ISO 8601 UTC out, epoch seconds or ISO 8601 in."""

from __future__ import annotations

import datetime as dt

__all__ = ("iso", "parse_time")


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string (``2026-11-22T10:00:00Z``)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Epoch seconds, or ISO 8601 (UTC unless it says otherwise); ValueError naming both forms."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected epoch seconds or ISO 8601 (2026-11-22T10:00:00Z), got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
