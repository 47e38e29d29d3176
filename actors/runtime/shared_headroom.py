"""Rate-limit headroom shared by a cluster's instances through Redis (issue 15).

Takes in: from :class:`~actors.runtime.admission.Admission`'s hooks, each request this instance
counted against a configured ``rpm`` / ``tpm`` (added up per deployment in a dict: bounded by the
deployments configured) and each answer whose headers left a deployment with nothing until a reset;
from Redis, the cluster's per-minute usage and the peers' :class:`HeadroomExhausted` messages (the
latter through :class:`~actors.runtime.cluster.Cluster`'s subscription).
Puts out: to Admission, the OTHER instances' usage of each deployment in the last minute
(:meth:`Admission.peer_usage`) and the peers' exhausted budgets (:meth:`Admission.peer_exhausted`);
to Redis, this instance's usage (``P:use:<deployment>:<minute>``, see :mod:`actors.edges.shared.scripts`)
and its own exhaustions, once per (deployment, reset).

Every ``[state] shared_headroom_s`` (0.5 s; at once when there is an exhaustion to tell) one script
call adds what was sent since the last one to this wall-clock minute's count and reads this minute's
and the previous one's back. Peers' usage is a sliding-minute estimate: this minute's count plus the
previous minute's weighted by the part of it still inside the last 60 s. It is at most two intervals
stale (one for the sender to write it, one for this instance to read it): that many requests per
instance can pass a limit. When Redis does not answer, what was sent in the meantime is not counted
(it is lost, not replayed into a later minute), and each limit counts as ``limit // instances``
(those last seen spending from the deployment, this one included) until Redis answers again.

Nothing here is awaited by a request, and nothing goes to the event log: admission is per-process
state that replay does not model, and none of this changes a provider's state.
"""

from __future__ import annotations

import anyio

from actors.core.clock import Clock
from actors.core.config import Config
from actors.edges.shared import HeadroomExhausted, SharedState
from actors.runtime.admission import Admission

__all__ = ("HeadroomSync",)

_MAX_EXHAUSTED = 1024  # exhaustions waiting to be told (bounded; one per deployment in practice)
_MINUTE_S = 60


class HeadroomSync:
    """One instance's rate-limit headroom, shared (see the module doc)."""

    def __init__(self, config: Config, shared: SharedState, admission: Admission, *, clock: Clock) -> None:
        self._interval = config.state.shared_headroom_s
        self._shared = shared
        self._admission = admission
        self._clock = clock
        self._sent: dict[str, list[int]] = {}  # requests, tokens sent since the last sync, per deployment
        self._exhausted: dict[str, float] = {}  # resets to tell the peers, per deployment
        self._wake = anyio.Event()
        self._instances = 1  # those last seen spending from some deployment, this one included
        self.published = 0  # HeadroomExhausted messages sent ...
        self.received = 0  # ... and taken from peers
        admission.on_admit = self._admitted
        admission.on_exhausted = self._exhaust
        admission.peer_recheck_s = self._interval

    # -- Admission's hooks: no await, no I/O ---------------------------------------
    def _admitted(self, key: str, tokens: int) -> None:
        counts = self._sent.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += tokens

    def _exhaust(self, key: str, until: float) -> None:
        if key in self._exhausted or len(self._exhausted) < _MAX_EXHAUSTED:
            self._exhausted[key] = max(until, self._exhausted.get(key, 0.0))
            self._wake.set()

    def learn(self, message: HeadroomExhausted) -> None:
        """A peer's exhausted deployment (its own messages never come here)."""
        self.received += 1
        self._admission.peer_exhausted(message.key, message.until)

    # -- the loop ------------------------------------------------------------------
    async def run(self) -> None:
        # Real time, like the cluster's reconcile: housekeeping, not policy.
        while True:
            with anyio.move_on_after(self._interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.sync()

    async def sync(self) -> None:
        """Tell the peers' exhaustions waiting, then write this instance's usage and read the cluster's."""
        exhausted, self._exhausted = self._exhausted, {}
        for key, until in exhausted.items():
            if await self._shared.publish_exhausted(key, until):
                self.published += 1
        keys = self._admission.limited()
        if not keys:
            return
        sent, self._sent = self._sent, {}
        now = self._clock.now()  # epoch seconds, like all shared state
        counts = {key: (sent[key][0], sent[key][1]) if key in sent else (0, 0) for key in keys}
        usage = await self._shared.add_usage(int(now // _MINUTE_S), counts)
        if usage is None:
            self._admission.peers_unknown(self._instances)
            return
        me = self._shared.instance_id
        weight = 1.0 - (now % _MINUTE_S) / _MINUTE_S  # the previous minute's part still in the last 60 s
        seen = {me}
        for key, (current, previous) in usage.items():
            seen.update(current, previous)
            requests = sum(r for i, (r, _) in current.items() if i != me) + weight * sum(
                r for i, (r, _) in previous.items() if i != me)
            tokens = sum(t for i, (_, t) in current.items() if i != me) + weight * sum(
                t for i, (_, t) in previous.items() if i != me)
            self._admission.peer_usage(key, requests, tokens)
        self._instances = len(seen)
