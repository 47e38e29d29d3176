"""Small statistics over immutable windows, shared by the collector and its readers."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = ("TTFT_BUCKETS_S", "percentile", "ttft_bucket")

#: The upper bounds (seconds) of the time-to-first-token histogram the collector keeps per provider;
#: one more bucket past the last counts the rest (/metrics: ``fallback_provider_ttft_seconds``).
TTFT_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def ttft_bucket(seconds: float) -> int:
    """The index of the bucket a time to first token falls in (``len(TTFT_BUCKETS_S)``: above them all)."""
    return bisect.bisect_left(TTFT_BUCKETS_S, seconds)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
