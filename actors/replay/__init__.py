"""Replay: a recorded incident through fresh actors, on a virtual clock, every time the same.

::

    from actors.replay import replay

    result = replay("tests/incidents/groq-429-storm.jsonl")
    assert result.matches, result.divergence
    assert result.final_state["litellm"] == "healthy"

The real actor classes (ErrorClassifier, PrioritySelector, RecoveryManager,
MetricsCollector) are built as the supervisor builds them, from the log's
``supervisor_started`` line, and their pure ``handle(message, now)`` is called
directly: no network, no event loop, no waiting (:mod:`actors.replay_engine`).
HealthMonitor is the one actor left out: all it decides is when to do I/O, and
the results of that I/O are the ``health_checked`` inputs in the log.

Two schedules:

* **exact** (``replay(log)``): every actor gets its messages in the order the
  live system delivered them, which the log records: a replayed decision is
  placed where the log has the recorded one, and compared with it. Timers fire
  when the log says they fired (``timer_fired``, schema 4 on; older logs: at
  their deadlines). Races between concurrent requests replay as they happened.
* **what if** (``replay(log, config=other)``): the same inputs under another
  config, each one's consequences worked out before the next; where the other
  config would have routed differently the inputs are adjusted
  (:mod:`actors.whatif`). ``matches`` is False: there is nothing to match.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import msgspec

from actors.core.config import Config, Secret
from actors.core.errors import EventLogError
from actors.core.messages import ActorRestarted, LoggedMessage, Message, ProviderView, SupervisorStarted
from actors.replay.engine import DECISIONS, Divergence, Run
from actors.replay.eventlog import EventLog, read_log, replay_config
from actors.replay.exact import exact
from actors.replay.summary import Summary, Tally, TimelineEntry, timeline
from actors.replay.whatif import what_if

__all__ = ("Divergence", "ReplayResult", "replay")


@dataclass
class ReplayResult:
    """What a replay decided, and whether that is what the log recorded."""

    matches: bool
    divergence: Divergence | None
    decisions: list[Message]  # replayed decisions (and actor restarts), in order
    recorded: list[Message]  # the log's decisions
    timeline: list[TimelineEntry]  # replayed state changes and actor restarts
    final_providers: dict[str, ProviderView]
    summary: Summary  # of the replay
    recorded_summary: Summary  # of the log, as recorded
    config: Config
    inputs: int = 0
    mode: str = "exact"
    notes: list[str] = field(default_factory=list)

    @property
    def final_state(self) -> dict[str, str]:
        """Each provider's state at the end of the log."""
        return {name: view.state for name, view in self.final_providers.items()}

    @property
    def events(self) -> int:
        """Lines replayed (inputs and recorded decisions)."""
        return self.inputs + len(self.recorded)


def replay(
    log: EventLog | str | os.PathLike[str] | Iterable[str | bytes],
    config: Config | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay a log (a path, its lines, or a read :class:`EventLog`) and compare.

    ``progress(n)`` is told how many of the log's messages an exact replay has gone through, now
    and then (the command line's progress bar).

    Without ``config`` the log's own config (from its header) is used and the
    schedule is exact. With one, the result is what that config would have
    decided; compare ``result.summary`` with ``result.recorded_summary``.
    Raises :class:`~actors.errors.EventLogError` for a log that can't be read.
    """
    if not isinstance(log, EventLog):
        log = read_log(log)
    header = log.header
    notes: list[str] = []
    mode = "exact" if config is None else "what-if"
    if config is None:
        if header.config is None:
            raise EventLogError("its header has no config; pass config= to replay it", path=log.path, line=1)
        config = replay_config(header.config, header.configured, source=f"{log.path} (header)")
    tolerance = 1.0 if header.migrated_from == 1 else 0.0
    if tolerance:
        notes.append("a schema-1 log: its decisions were dated when handled, so times match within 1 s")
    else:
        config = _as_recorded_config(config, log, notes)
    run = Run(log, config, tolerance=tolerance)
    if mode == "exact":
        recorded = exact(run, None if progress is None else _counted(log.messages, progress))
    else:
        recorded = [m for m in log.messages if type(m) in DECISIONS]
        notes.extend(what_if(run))
    engine = run.current()
    end = max(engine.now, max((m.at for m in log.messages), default=engine.now))
    return ReplayResult(
        matches=mode == "exact" and run.divergence is None,
        divergence=run.divergence,
        decisions=run.decisions,
        recorded=recorded,
        timeline=timeline(run.decisions),
        final_providers={v.name: v for v in engine.selector.snapshot(end).providers},
        summary=run.tally.finish(end),
        recorded_summary=_as_recorded(log, end),
        config=config,
        inputs=run.inputs,
        mode=mode,
        notes=notes,
    )


def _counted(messages: Sequence[LoggedMessage], progress: Callable[[int], None],
             every: int = 2000) -> Iterator[tuple[int, LoggedMessage]]:
    """The log's numbered lines (as exact() numbers them), telling ``progress`` every ``every``."""
    for n, message in enumerate(messages):
        if n % every == 0:
            progress(n)
        yield n + 2, message
    progress(len(messages))


def _as_recorded_config(config: Config, log: EventLog, notes: list[str]) -> Config:
    """``config`` with each provider configured as the log says it was, whatever this shell's environment.

    A replay never turns a provider ``unconfigured`` because a key variable is
    unset here: which providers had keys comes from the log's header. Where the
    two disagree, a note says what was assumed.
    """
    recorded = set(log.header.configured) if log.header.configured is not None else None
    in_log = {name for m in log.messages if isinstance(name := getattr(m, "provider", None), str)}
    providers = []
    for p in config.providers:
        was = (p.name in recorded) if recorded is not None else (p.name in in_log or p.configured)
        if was and not p.configured:
            p = msgspec.structs.replace(p, api_key=Secret("replay"))  # a stand-in key: replay calls no one
        elif not was and p.configured:
            notes.append(f"{p.name} was not configured when the log was recorded: it has no recorded"
                         " traffic, so what-if cannot say how it would have answered")
            p = msgspec.structs.replace(p, api_key=None)
        providers.append(p)
    names = {p.name for p in config.providers}
    recorded_providers = (log.header.config or {}).get("providers", ())
    header_names = {p.get("name") for p in recorded_providers if isinstance(p, dict)}
    for gone in sorted(n for n in (in_log | header_names) - names if isinstance(n, str)):
        notes.append(f"the log's provider {gone} is not in this config: its recorded events are ignored")
    return msgspec.structs.replace(config, providers=tuple(providers))


def _as_recorded(log: EventLog, end: float) -> Summary:
    tally = Tally()
    for m in log.messages:
        if isinstance(m, SupervisorStarted):
            tally.start(m.at, {v.name: v.state for v in m.providers})
        elif type(m) in DECISIONS or isinstance(m, ActorRestarted):
            tally.decision(m)
        else:
            tally.input(m)
    return tally.finish(end)
