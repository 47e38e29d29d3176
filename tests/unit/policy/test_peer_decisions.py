"""What the selector and the recovery manager decide from what peers share (issue 15), through ``handle``."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core.clock import VirtualClock
from actors.core.config import Config, parse_config
from actors.core.messages import (
    DisableProvider,
    ErrorClassified,
    FailuresCounted,
    Message,
    PeerStateChanged,
    ProbeRequested,
    ProbeSkipped,
    ProviderStateChanged,
    Tick,
)
from actors.policy.health_monitor import HealthMonitor
from actors.policy.priority_selector import PrioritySelector
from actors.policy.recovery_manager import RecoveryManager

T0 = 1_800_000_000.0


def config(**routing: Any) -> Config:
    return parse_config({"routing": routing, "providers": [
        {"name": "a", "base_url": "http://127.0.0.1:1", "models": {"chat": "m"}, "priority": 1},
        {"name": "b", "base_url": "http://127.0.0.1:2", "models": {"chat": "m"}, "priority": 2}]}, env={})


def selector(**routing: Any) -> PrioritySelector:
    cfg = config(**routing)
    return PrioritySelector(cfg.providers, cfg.routing, clock=VirtualClock(T0))


def peer(change: str = "cooldown", *, at: float = T0 + 1, **kw: Any) -> PeerStateChanged:
    kw.setdefault("state", {"cooldown": "cooldown", "disable": "disabled"}.get(change, "healthy"))
    return PeerStateChanged(at=at, provider="a", change=change, instance="peer-1", version=1,  # type: ignore[arg-type]
                            peer_at=at, **kw)


def moves(out: list[Message]) -> list[tuple[str, str, str]]:
    return [(m.new, m.reason, m.peer) for m in out if isinstance(m, ProviderStateChanged)]


def state(sel: PrioritySelector, name: str = "a") -> Any:
    return next(v for v in sel.snapshot(T0).providers if v.name == name)


def verdict(at: float, cooldown_s: float = 300.0) -> ErrorClassified:
    return ErrorClassified(at=at, provider="a", request_id="r", category="server_error", severity="high",
                           recoverable=True, action="fallback", penalize=True, cooldown_s=cooldown_s)


def test_a_peers_cooldown_takes_the_provider_out() -> None:
    """A peer's cooldown moves a healthy provider into cooldown until the peer's end, marked as the peer's."""
    sel = selector()
    out = sel.handle(peer(until=T0 + 300, cause="server_error"), T0 + 1)
    assert moves(out) == [("cooldown", "peer_cooldown", "peer-1")]
    view = state(sel)
    assert (view.cooldown_until, view.cooldown_since, view.last_error.category) == (T0 + 300, T0 + 1,
                                                                                     "server_error")


@pytest.mark.parametrize("until", [pytest.param(T0 + 100, id="shorter"), pytest.param(T0 + 300, id="same")])
def test_a_peers_shorter_cooldown_never_shortens(until: float) -> None:
    """A peer's cooldown ending no later than the local one changes nothing."""
    sel = selector()
    sel.handle(verdict(T0), T0)  # local: 300 s
    assert sel.handle(peer(until=until), T0 + 1) == []
    assert state(sel).cooldown_until == T0 + 300


def test_a_peers_longer_cooldown_extends_without_a_move() -> None:
    """A longer one extends the local cooldown: the routing snapshot says so, no state changes."""
    sel = selector()
    sel.handle(verdict(T0), T0)
    out = sel.handle(peer(until=T0 + 900), T0 + 1)
    assert moves(out) == []
    assert out
    assert state(sel).cooldown_until == T0 + 900


def test_an_expired_peer_cooldown_is_ignored() -> None:
    """A record whose cooldown is already over (a reconcile after a long time) does nothing."""
    assert selector().handle(peer(until=T0 - 5), T0 + 1) == []


def test_a_peers_restore_brings_it_back() -> None:
    """A peer's passing probe restores the provider here too, failure count cleared."""
    sel = selector()
    sel.handle(verdict(T0), T0)
    out = sel.handle(peer("restore", at=T0 + 10), T0 + 10)
    assert moves(out) == [("healthy", "peer_restore", "peer-1")]
    assert state(sel).failure_count == 0


def test_a_restore_from_before_the_local_cooldown_is_stale() -> None:
    """A restore written before this instance's cooldown began does not undo it."""
    sel = selector()
    sel.handle(verdict(T0 + 20), T0 + 20)
    assert moves(sel.handle(peer("restore", at=T0 + 10), T0 + 21)) == []
    assert state(sel).state == "cooldown"


def test_admin_commands_reach_every_instance() -> None:
    """A peer's admin disable takes it out here; its enable brings it back."""
    sel = selector()
    assert moves(sel.handle(peer("disable"), T0 + 1)) == [("disabled", "admin_disable", "peer-1")]
    assert sel.handle(peer(until=T0 + 500), T0 + 2) == []  # a cooldown never overrides a disable
    assert moves(sel.handle(peer("enable", at=T0 + 3), T0 + 3)) == [("healthy", "admin_enable", "peer-1")]


def test_a_local_disable_is_not_undone_by_a_peers_restore() -> None:
    """Only an enable lifts a disable."""
    sel = selector()
    sel.handle(DisableProvider(at=T0, provider="a"), T0)
    assert sel.handle(peer("restore", at=T0 + 5), T0 + 5) == []


def test_the_clusters_failure_count_reaches_the_threshold() -> None:
    """Failures counted across the cluster make it unhealthy although this instance saw one."""
    sel = selector(failure_threshold=3)
    sel.handle(verdict(T0, cooldown_s=0), T0)
    assert state(sel).state == "degraded"
    counted = FailuresCounted(at=T0 + 1, provider="a", request_id="r", count=3, category="server_error",
                              cooldown_s=60)
    out = sel.handle(counted, T0 + 1)
    assert moves(out) == [("unhealthy", "cluster_failures", "")]
    assert state(sel).cooldown_until == T0 + 61


def test_a_count_below_the_threshold_changes_nothing() -> None:
    """Two failures in the cluster with a threshold of three: still routed."""
    sel = selector(failure_threshold=3)
    counted = FailuresCounted(at=T0, provider="a", request_id="r", count=2, category="server_error")
    assert sel.handle(counted, T0) == []


def test_a_skipped_probe_is_asked_again_after_its_timeout() -> None:
    """A peer holds the probe: the manager asks again only once that probe would have timed out."""
    cfg = config()
    clock = VirtualClock(T0)
    sel = PrioritySelector(cfg.providers, cfg.routing, clock=clock)
    rec = RecoveryManager(sel.snapshot(T0).providers, health=cfg.health, clock=clock)
    for m in sel.handle(verdict(T0, cooldown_s=10), T0):
        if isinstance(m, ProviderStateChanged):
            rec.handle(m, T0)
    asked = [m for m in rec.handle(Tick(at=T0 + 10), T0 + 10) if isinstance(m, ProbeRequested)]
    assert asked
    assert rec.handle(ProbeSkipped(at=T0 + 11, provider="a", owner="peer-1"), T0 + 11) == []
    deadline = rec.next_deadline()
    assert deadline is not None
    assert deadline > T0 + 11 + cfg.health.timeout_of(asked[0].tier or "api")


def test_a_skipped_probe_frees_the_monitors_slot() -> None:
    """The health monitor takes the next probe request at once after a skip."""
    cfg = config()
    mon = HealthMonitor(cfg.providers, cfg.health, states={"a": "cooldown"}, clock=VirtualClock(T0))
    ask = ProbeRequested(at=T0, provider="a", tier="ping")
    assert mon.handle(ask, T0)
    assert mon.handle(ask, T0) == []
    mon.handle(ProbeSkipped(at=T0, provider="a"), T0)
    assert mon.handle(ask, T0)
