"""What if: the inputs of a recorded incident under another config.

The inputs are facts about the providers (this attempt failed with a 503 at
10:02:07, that health check passed at 10:04:30), but some of them exist only
because of what the recorded config decided. Replaying under another config
adjusts exactly those, and nothing else:

* **attempts it would not have made**: an attempt recorded on a provider that
  the replayed routing had taken out (and that the recorded routing had not)
  is skipped and counted as *spared*, with the fallback it caused;
* **probes it would have made**: recorded half-open probe results answer the
  recorded config's probes, so they are dropped; each probe the replayed
  RecoveryManager asks for is answered from the log's evidence about that
  provider at that moment: the latest observation at or before it (an attempt
  or a health check as strong as the probe tier), else the first one after.

Attempts the other config would have sent to a provider the recorded one had
taken out were never made, so nothing is known of them: they are not invented.
The result is a model of the incident under the other config, good for
comparing thresholds and cooldowns, not a prediction of every request.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

from actors.core.config import RoutingConfig
from actors.core.messages import (
    ActorRestarted,
    AttemptFailed,
    AttemptSucceeded,
    FallbackTriggered,
    HealthChecked,
    LoggedMessage,
    Message,
    ProbeRequested,
    ProviderStateChanged,
    StateSnapshot,
    SupervisorStarted,
    TimerFired,
)
from actors.core.states import USABLE_STATES
from actors.policy.error_classifier import classify
from actors.replay.engine import DECISIONS, Run

__all__ = ("Observations", "what_if")


class Observations:
    """Per provider, when it was seen working or failing, from the log."""

    def __init__(self, messages: Sequence[LoggedMessage], policy: RoutingConfig, probe_tier: str) -> None:
        tiers = {"ping": {"ping", "full", "api"}, "full": {"full", "api"}, "api": {"api"}}[probe_tier]
        seen: dict[str, list[tuple[float, HealthChecked | None]]] = {}
        for m in messages:
            match m:
                case AttemptSucceeded():
                    seen.setdefault(m.provider, []).append((m.at, None))
                case AttemptFailed():
                    verdict = classify(m, policy)
                    failed = None if not verdict.penalize else HealthChecked(
                        at=m.at, provider=m.provider, tier="api", ok=False, kind=m.kind, status=m.status,
                        message=m.message)
                    seen.setdefault(m.provider, []).append((m.at, failed))
                case HealthChecked() if m.probe or m.tier in tiers:
                    seen.setdefault(m.provider, []).append((m.at, None if m.ok else m))
                case _:
                    pass
        self._times = {name: [t for t, _ in obs] for name, obs in seen.items()}
        self._seen = seen

    def probe(self, provider: str, at: float, tier: str) -> HealthChecked:
        """What a half-open probe of ``provider`` at ``at`` would most likely have seen."""
        times = self._times.get(provider)
        failure: HealthChecked | None = None
        if times:
            i = bisect.bisect_right(times, at) - 1
            failure = self._seen[provider][max(i, 0)][1]
        if failure is None:
            return HealthChecked(at=at, provider=provider, tier=tier, ok=True, probe=True,  # type: ignore[arg-type]
                                 message="what-if: inferred from the log")
        return HealthChecked(at=at, provider=provider, tier=tier, ok=False, kind=failure.kind,  # type: ignore[arg-type]
                             status=failure.status, message=failure.message, probe=True)


def what_if(run: Run) -> list[str]:
    """Feed the log's inputs through ``run``'s actors, adjusted as the module says; return notes."""
    config = run.config
    seen = Observations(run.log.messages, config.routing, config.health.probe_tier)
    recorded_states: dict[str, str] = {}
    spared_requests: set[tuple[str, str]] = set()
    dropped_probes = 0

    def cascade(batch: list[Message]) -> None:
        queue = deque(batch)
        engine = run.current()
        while queue:
            m = queue.popleft()
            if type(m) in DECISIONS:
                run.decided(m)
            queue.extend(engine.deliver(m))
            if isinstance(m, ProbeRequested):
                queue.append(seen.probe(m.provider, m.at, engine.probe_tier))

    def fire(until: float) -> None:
        engine = run.current()
        while (deadline := engine.due(until)) is not None:
            cascade(engine.tick(deadline))

    high = -float("inf")
    for message in run.log.messages:
        if run.engine is None and isinstance(message, StateSnapshot):
            run.begin(message)  # an excerpt's checkpoint: the state it starts from
            recorded_states = {v.name: v.state for v in message.providers}
            continue
        if isinstance(message, SupervisorStarted):
            if run.engine is not None:
                fire(high)
            run.begin(message)
            recorded_states = {v.name: v.state for v in message.providers}
            continue
        if isinstance(message, ProviderStateChanged):
            recorded_states[message.provider] = message.new
        if type(message) in DECISIONS or isinstance(message, ActorRestarted | TimerFired):
            continue  # this config's own timers fire where its own deadlines fall
        high = max(high, message.at)
        fire(message.at)
        engine = run.current()
        engine.at(message.at)
        match message:
            case HealthChecked(probe=True):
                dropped_probes += 1
                continue
            case AttemptSucceeded() | AttemptFailed():
                ours = engine.views.get(message.provider)
                if (ours is not None and ours.state not in USABLE_STATES
                        and recorded_states.get(message.provider, "healthy") in USABLE_STATES):
                    run.tally.provider(message.provider).spared += 1
                    spared_requests.add((message.request_id, message.provider))
                    continue
            case FallbackTriggered() if (message.request_id, message.from_provider) in spared_requests:
                continue
            case _:
                pass
        run.fed(message)
        cascade(engine.deliver(message))
    fire(high)
    notes = [f"{dropped_probes} recorded probe results were replaced by probes inferred from the log"]
    spared = sum(p.spared for p in run.tally.summary.providers.values())
    if spared:
        notes.append(f"{spared} recorded attempts went to a provider this config had taken out: skipped")
    return notes
