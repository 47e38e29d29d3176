"""Uptime from the state history: the share of observed time a provider was usable."""

from __future__ import annotations

import pytest

from actors.core.availability import Availability, advance, uptime
from actors.core.states import ProviderState

T0 = 1_800_000_000.0
DAY = 86_400.0


def history(*steps: tuple[float, ProviderState]) -> Availability:
    avail = Availability()
    for offset, state in steps:
        avail = advance(avail, state, T0 + offset)
    return avail


@pytest.mark.parametrize(("steps", "now", "window", "expected"), [
    pytest.param([(0, "healthy")], 100, DAY, 100.0, id="up-all-along"),
    pytest.param([(0, "healthy"), (600, "cooldown"), (900, "healthy")], 1000, DAY, 70.0, id="down-300-of-1000"),
    pytest.param([(0, "healthy"), (600, "cooldown"), (900, "healthy")], 1000, None, 70.0, id="since-start"),
    pytest.param([(0, "degraded"), (500, "probing"), (750, "unhealthy")], 1000, DAY, 50.0,
                 id="degraded-is-up-probing-and-unhealthy-are-down"),
    pytest.param([(0, "healthy"), (500, "disabled"), (900, "healthy")], 1000, DAY, 100.0,
                 id="disabled-time-is-not-observed"),
    pytest.param([(0, "unconfigured")], 1000, DAY, None, id="never-observed"),
    pytest.param([(0, "cooldown"), (DAY, "healthy")], DAY + 3600, DAY, 100 * (1 - (DAY - 3600) / DAY),
                 id="the-window-cuts-the-old-outage"),
])
def test_uptime(steps: list[tuple[float, ProviderState]], now: float, window: float | None,
                expected: float | None) -> None:
    """The percent of observed time up, over the window or since start."""
    got = uptime(history(*steps), T0 + now, window)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=0.01)


def test_success_is_not_uptime() -> None:
    """No traffic while down does not hide the downtime (the old 'uptime' was a success share)."""
    avail = history((0, "healthy"), (100, "cooldown"), (455, "healthy"))  # down 355 s
    assert uptime(avail, T0 + 780, DAY) == pytest.approx(100 * (780 - 355) / 780, abs=0.01)


def test_segments_older_than_a_day_are_dropped() -> None:
    """A day-old history does not grow: closed segments that ended before the last day go."""
    avail = history((0, "healthy"), (10, "cooldown"), (20, "healthy"), (2 * DAY, "cooldown"))
    assert [s.start for s in avail.segments] == [T0 + 20]


def test_a_flapping_provider_keeps_a_bounded_history() -> None:
    """Thousands of flaps within a day keep at most 2,000 segments."""
    avail = Availability()
    for i in range(5_000):
        avail = advance(avail, "healthy" if i % 2 else "cooldown", T0 + i)
    assert len(avail.segments) == 2_000
