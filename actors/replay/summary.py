"""What a stream of inputs and decisions amounts to: timeline rows and a summary.

Replay builds one :class:`Summary` from the decisions as recorded and one from
the decisions it made itself, the same way, so the two can be set side by side
(what a changed config would have done differently: :func:`compare`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from actors.core.messages import (
    ActorRestarted,
    AttemptFailed,
    AttemptSucceeded,
    FallbackTriggered,
    Message,
    ProbeRequested,
    ProviderRecovered,
    ProviderStateChanged,
)
from actors.core.states import DOWN_STATES

__all__ = ("ProviderSummary", "Summary", "Tally", "TimelineEntry", "compare", "render_summary",
           "render_timeline", "timeline")


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the timeline: a provider's state change, or an actor restart."""

    at: float
    provider: str
    old: str
    new: str
    reason: str
    cooldown_until: float | None = None


class ProviderSummary(msgspec.Struct, kw_only=True):
    attempts: int = 0
    failures: int = 0
    spared: int = 0  # attempts the replayed routing would not have sent here (what-if)
    state_changes: int = 0
    cooldowns: int = 0  # times it was taken out of routing
    probes: int = 0
    recoveries: int = 0
    downtime_s: float = 0.0
    recovery_times_s: list[float] = []
    final_state: str = "healthy"

    @property
    def mean_recovery_s(self) -> float | None:
        times = self.recovery_times_s
        return sum(times) / len(times) if times else None


class Summary(msgspec.Struct, kw_only=True):
    fallbacks: int = 0
    decisions: int = 0
    restarts: int = 0
    providers: dict[str, ProviderSummary] = {}


class Tally:
    """Builds a :class:`Summary` one message at a time (constant memory per provider)."""

    def __init__(self, states: dict[str, str] | None = None) -> None:
        self.summary = Summary()
        self._down_since: dict[str, float] = {}
        for name, state in (states or {}).items():
            self.provider(name).final_state = state

    def provider(self, name: str) -> ProviderSummary:
        p = self.summary.providers.get(name)
        if p is None:
            p = self.summary.providers[name] = ProviderSummary()
        return p

    def start(self, at: float, states: dict[str, str]) -> None:
        """A supervisor (re)started with these states."""
        for name, state in states.items():
            self.provider(name).final_state = state
            if state in DOWN_STATES:
                self._down_since.setdefault(name, at)

    def input(self, m: Message) -> None:
        match m:
            case AttemptSucceeded():
                self.provider(m.provider).attempts += 1
            case AttemptFailed():
                p = self.provider(m.provider)
                p.attempts += 1
                p.failures += 1
            case FallbackTriggered():
                self.summary.fallbacks += 1
            case _:
                pass

    def decision(self, m: Message) -> None:
        s = self.summary
        match m:
            case ProviderStateChanged():
                s.decisions += 1
                p = self.provider(m.provider)
                p.state_changes += 1
                p.final_state = m.new
                if m.new in DOWN_STATES and m.old not in DOWN_STATES:
                    p.cooldowns += 1
                    self._down_since[m.provider] = m.at
                elif m.new not in DOWN_STATES and m.provider in self._down_since:
                    p.downtime_s += m.at - self._down_since.pop(m.provider)
            case ProbeRequested():
                s.decisions += 1
                self.provider(m.provider).probes += 1
            case ProviderRecovered():
                s.decisions += 1
                p = self.provider(m.provider)
                p.recoveries += 1
                p.recovery_times_s.append(round(m.downtime_s, 3))
            case ActorRestarted():
                s.restarts += 1
            case _:
                s.decisions += 1

    def finish(self, end: float) -> Summary:
        """The summary with providers still down counted as down until ``end``."""
        for name, since in self._down_since.items():
            self.provider(name).downtime_s += max(0.0, end - since)
        self._down_since.clear()
        for p in self.summary.providers.values():
            p.downtime_s = round(p.downtime_s, 3)
        return self.summary


def timeline(decisions: Iterable[Message]) -> list[TimelineEntry]:
    rows: list[TimelineEntry] = []
    for m in decisions:
        if isinstance(m, ProviderStateChanged):
            rows.append(TimelineEntry(at=m.at, provider=m.provider, old=m.old, new=m.new, reason=m.reason,
                                      cooldown_until=m.cooldown_until))
        elif isinstance(m, ActorRestarted):
            rows.append(TimelineEntry(at=m.at, provider=f"({m.actor})", old="", new="restarted",
                                      reason=m.error))
    return rows


def _time(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def render_timeline(rows: list[TimelineEntry], *, limit: int = 200) -> str:
    if not rows:
        return "(no state changes)"
    lines = [f"{'time (UTC)':23}  {'provider':20}  {'change':26}  reason"]
    shown = rows if len(rows) <= limit else rows[: limit // 2] + rows[-limit // 2:]
    for i, r in enumerate(shown):
        if len(rows) > limit and i == limit // 2:
            lines.append(f"... {len(rows) - limit} more rows ...")
        change = f"{r.old} -> {r.new}" if r.old else r.new
        until = f" (until {_time(r.cooldown_until)[11:19]})" if r.cooldown_until else ""
        lines.append(f"{_time(r.at):23}  {r.provider:20}  {change:26}  {r.reason}{until}")
    return "\n".join(lines)


def _fmt(value: float | int | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _rows(s: Summary) -> dict[str, float | int | str | None]:
    rows: dict[str, float | int | str | None] = {"fallbacks": s.fallbacks}
    for name, p in sorted(s.providers.items()):
        rows[f"{name}: cooldowns"] = p.cooldowns
        rows[f"{name}: downtime s"] = p.downtime_s
        rows[f"{name}: recoveries"] = p.recoveries
        rows[f"{name}: mean recovery s"] = p.mean_recovery_s
        rows[f"{name}: probes"] = p.probes
        rows[f"{name}: attempts"] = p.attempts
        if p.spared:
            rows[f"{name}: attempts spared"] = p.spared
        rows[f"{name}: final state"] = p.final_state
    return rows


def render_summary(s: Summary) -> str:
    return "\n".join(f"  {k:32} {_fmt(v)}" for k, v in _rows(s).items())


def compare(before: Summary, after: Summary, *, labels: tuple[str, str] = ("recorded", "what-if")) -> str:
    """A side-by-side table of two summaries; changed rows are marked with ``*``."""
    a, b = _rows(before), _rows(after)
    keys = list(a) + [k for k in b if k not in a]
    lines = [f"  {'':32} {labels[0]:>12} {labels[1]:>12}"]
    for k in keys:
        x, y = _fmt(a.get(k)), _fmt(b.get(k))
        lines.append(f"{'*' if x != y else ' '} {k:32} {x:>12} {y:>12}")
    return "\n".join(lines)
