"""The status page's history as a pure function of a window's messages: bands, restarts, waits, buckets."""

from __future__ import annotations

from actors.core.messages import (
    AttemptFailed,
    AttemptSucceeded,
    FallbackTriggered,
    LoggedMessage,
    ProviderStateChanged,
    ProviderView,
    RoutingSnapshot,
    SupervisorStarted,
)
from actors.core.states import ProviderState
from actors.runtime.history import bucket_for, build_history

NOW = 1_800_000_000.0
SINCE = NOW - 3600


def _routing(state: ProviderState = "healthy") -> RoutingSnapshot:
    return RoutingSnapshot(at=NOW, version=1, providers=(ProviderView(name="a", priority=1, state=state),
                                                         ProviderView(name="b", priority=2, state="healthy")))


def test_bands_start_with_the_state_before_the_first_change() -> None:
    """The first change's ``old`` covers the window up to it; each change opens the next band."""
    changes = [
        ProviderStateChanged(at=SINCE + 600, provider="a", old="degraded", new="cooldown", reason="timeout"),
        ProviderStateChanged(at=SINCE + 900, provider="a", old="cooldown", new="healthy", reason="probe_succeeded"),
    ]
    doc = build_history(_routing(), changes, [], since=SINCE, now=NOW, hours=1, observed_from=SINCE - 10)
    bands = [(b["from"] - SINCE, b["to"] - SINCE, b["state"], b["reason"]) for b in doc["providers"]["a"]["bands"]]
    assert bands == [(0, 600, "degraded", ""), (600, 900, "cooldown", "timeout"),
                     (900, 3600, "healthy", "probe_succeeded")]
    assert [b["state"] for b in doc["providers"]["b"]["bands"]] == ["healthy"]  # no change: as it is now


def test_nothing_before_the_log_began_is_drawn() -> None:
    """A state file younger than the window: bands start at its first event."""
    doc = build_history(_routing(), [], [], since=SINCE, now=NOW, hours=1, observed_from=NOW - 60)
    ((band),) = doc["providers"]["a"]["bands"]
    assert (band["from"], band["to"], doc["observed_from"]) == (NOW - 60, NOW, NOW - 60)


def test_a_restart_is_marked_and_may_change_the_state() -> None:
    """A supervisor start is a mark on the timeline, and its providers' states a change where they differ."""
    start = SupervisorStarted(at=SINCE + 1200, providers=(ProviderView(name="a", priority=1, state="cooldown"),))
    doc = build_history(_routing("cooldown"), [start], [], since=SINCE, now=NOW, hours=1, observed_from=SINCE)
    assert doc["restarts"] == [SINCE + 1200]
    assert [b["state"] for b in doc["providers"]["a"]["bands"]] == ["cooldown"]  # the state it began with


def test_the_wait_runs_from_the_first_attempt_to_the_answer() -> None:
    """A 503 after 200 ms, the fallback, an answer 300 ms later: the caller waited 500 ms."""
    fell = FallbackTriggered(at=SINCE + 10.2, request_id="r1", from_provider="a", to_provider="b",
                             category="service_unavailable", reason="overloaded")
    attempts: list[LoggedMessage] = [
        AttemptFailed(at=SINCE + 10.2, provider="a", model="m", request_id="r1", kind="http", status=503,
                      latency_ms=200.0),
        AttemptSucceeded(at=SINCE + 10.5, provider="b", model="m", request_id="r1", latency_ms=300.0),
        AttemptSucceeded(at=SINCE + 20, provider="b", model="m", request_id="r2", latency_ms=100.0, stream=True),
    ]
    doc = build_history(_routing(), [fell], attempts, since=SINCE, now=NOW, hours=1, observed_from=SINCE)
    (row,) = doc["fallbacks"]
    assert (row["request_id"], row["waited_ms"], row["error"]) == ("r1", 500.0, "overloaded")
    b = doc["providers"]["b"]
    assert (b["latency"], b["ttft"]) == ([[SINCE, 300.0, 300.0, 1]], [[SINCE, 100.0, 100.0, 1]])
    assert doc["providers"]["a"]["fallbacks"] == [SINCE + 10.2]


def test_a_fallback_to_nobody_waits_until_the_last_failure() -> None:
    """Nobody answered: the wait ends at the last failure, and ``to`` is null."""
    fell = FallbackTriggered(at=SINCE + 11, request_id="r1", from_provider="b", to_provider=None,
                             category="timeout")
    attempts: list[LoggedMessage] = [AttemptFailed(at=SINCE + 10, provider="a", model="m", request_id="r1", kind="connect", latency_ms=0.0),
                AttemptFailed(at=SINCE + 11, provider="b", model="m", request_id="r1", kind="timeout",
                              latency_ms=1000.0)]
    doc = build_history(_routing(), [fell], attempts, since=SINCE, now=NOW, hours=1, observed_from=SINCE)
    (row,) = doc["fallbacks"]
    assert (row["to"], row["waited_ms"]) == (None, 1000.0)


def test_buckets_are_whole_minutes_and_at_most_288_a_window() -> None:
    """1 h: 1 min; 24 h: 5 min; 168 h: 35 min."""
    assert [bucket_for(h) for h in (1, 24, 168)] == [60, 300, 2100]
