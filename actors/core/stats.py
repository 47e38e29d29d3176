"""Small statistics over immutable windows, shared by the collector and its readers."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ("percentile",)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
