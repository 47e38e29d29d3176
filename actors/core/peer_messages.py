"""The inputs that shared state (``[state] shared_url``, issue 15) brings into an instance.

What an instance learns from its peers through Redis is logged like any other
input (:mod:`actors.core.messages` re-exports these and puts them in its
unions), so one instance's log replays on its own, with no Redis.
"""

from __future__ import annotations

from typing import Literal

from actors.core.message_base import Message
from actors.core.states import Category, ProviderState

__all__ = ("FailuresCounted", "PeerChangeKind", "PeerStateChanged", "ProbeSkipped")


#: What a peer did to a shared record: set or extended a cooldown, restored it after a probe,
#: or an admin's enable / disable.
PeerChangeKind = Literal["cooldown", "restore", "enable", "disable"]


class PeerStateChanged(Message, frozen=True, kw_only=True, tag="peer_state_changed"):
    """Another instance of the cluster changed a provider's or deployment's shared record.

    Dated with this instance's clock when it arrived (pub/sub or a reconcile);
    ``until`` and ``peer_at`` are the peer's wall-clock times (instances keep
    their clocks in step).
    """

    provider: str  # the record: a provider, or ``provider/upstream`` for a deployment
    change: PeerChangeKind
    state: ProviderState
    until: float = 0.0  # the cooldown's end (0: none)
    cause: Category | None = None  # the failure behind a cooldown, when the peer named one
    instance: str = ""  # the peer that wrote it
    version: int = 0  # the cluster's change counter: a higher one is a later change
    peer_at: float = 0.0  # when the peer wrote it, by its clock


class FailuresCounted(Message, frozen=True, kw_only=True, tag="failures_counted"):
    """The cluster's count of a provider's recent failures, after this instance counted one.

    ``failure_threshold`` means the same with 1 or 10 instances: the selector
    takes the larger of its own count and this one.
    """

    provider: str
    request_id: str
    count: int
    category: Category
    cooldown_s: float = 0.0
    retry_after_s: float | None = None


class ProbeSkipped(Message, frozen=True, kw_only=True, tag="probe_skipped"):
    """A half-open probe was not run here: another instance holds the probe (its outcome arrives as a
    :class:`PeerStateChanged`, or the probe is asked for again after its timeout)."""

    provider: str
    owner: str = ""
