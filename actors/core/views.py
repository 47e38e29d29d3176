"""The records messages carry: a provider's routing view, its last error, its metrics.

Plain frozen Structs, not messages (no tag of their own): they travel inside
:class:`~actors.core.messages.RoutingSnapshot`, ``SupervisorStarted``,
``StateSnapshot`` and ``MetricsSnapshot``, and are stored in the state file.
They evolve as messages do: new fields get defaults, a type never changes.
"""

from __future__ import annotations

import msgspec

from actors.core.availability import Availability
from actors.core.states import Category, ProviderState

__all__ = ("LastError", "ProviderMetrics", "ProviderView")


class LastError(msgspec.Struct, frozen=True, kw_only=True):
    category: Category
    status: int | None
    message: str
    at: float
    #: A 429's "not before": its Retry-After, else the rate_limit cooldown, from ``at``.
    retry_at: float | None = None


class ProviderView(msgspec.Struct, frozen=True, kw_only=True):
    """One provider as routing sees it."""

    name: str
    priority: int
    state: ProviderState
    failure_count: int = 0
    cooldown_until: float | None = None
    cooldown_level: int = 0
    last_error: LastError | None = None
    healthy_since: float | None = None
    down_since: float | None = None
    detail: str = ""
    #: When the probe now in flight was asked for (state ``probing``): its answer is due by then + timeout.
    probing_since: float | None = None
    #: When the current cooldown began: recovery probes come at set times after it.
    cooldown_since: float | None = None


class ProviderMetrics(msgspec.Struct, frozen=True, kw_only=True):
    requests_total: int = 0
    requests_success: int = 0
    requests_failed: int = 0
    failures_by_category: dict[str, int] = {}
    bad_chunks: int = 0  # malformed stream events skipped
    latencies_ms: tuple[float, ...] = ()
    last_success: float | None = None
    last_failure: float | None = None
    #: Observed up and down time, from the state history (see :mod:`actors.core.availability`).
    availability: Availability | None = None
    #: What each of the last ``[health] history`` health checks counted (see actors.core.reliability).
    health_scores: tuple[float, ...] = ()
    #: Streams' times to first token: a count per bucket of actors.core.stats.TTFT_BUCKETS_S (and
    #: one for the rest; () before the first), and their sum in ms, since the state file began.
    ttft_buckets: tuple[int, ...] = ()
    ttft_sum_ms: float = 0.0
