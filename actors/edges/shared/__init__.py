"""Provider state shared by several instances through Redis (``[state] shared_url``, issue 15).

Local-first: each instance routes on its own state; :class:`SharedState`
makes its cooldowns, failure counts, probe claims and rate-limit spending
count for the whole cluster, and brings the peers' changes in as typed
messages. A slow or dead Redis never slows a caller (:class:`RedisBreaker`).
Needs the ``redis`` extra; imports without it.
"""

from actors.edges.shared.breaker import BreakerState, BreakerStatus, RedisBreaker, describe_failure
from actors.edges.shared.messages import (
    ChangesResumed,
    CooldownExtended,
    HeadroomExhausted,
    PeerChange,
    SharedChange,
    SharedRecord,
    Spent,
    StateSet,
    Written,
    decode_change,
)
from actors.edges.shared.state import SharedState, SharedStateError

__all__ = (
    "BreakerState",
    "BreakerStatus",
    "ChangesResumed",
    "CooldownExtended",
    "HeadroomExhausted",
    "PeerChange",
    "RedisBreaker",
    "SharedChange",
    "SharedRecord",
    "SharedState",
    "SharedStateError",
    "Spent",
    "StateSet",
    "Written",
    "decode_change",
    "describe_failure",
)
