"""A rate limit for :class:`~actors.testing.FakeUpstream`: N requests per window, told in headers.

::

    FakeUpstream("groq", limit=RateLimit(requests=30, clock=clock))                 # OpenAI/Groq headers
    FakeUpstream("claude", limit=RateLimit(requests=50, style="anthropic", clock=clock))

Each completion request inside the limit counts in a sliding window and its answer carries the
headers the provider documents: ``x-ratelimit-limit/remaining/reset-requests`` (reset as a Go
duration, ``7.66s``) for ``style="openai"``, ``anthropic-ratelimit-requests-limit/remaining/reset``
(reset as RFC 3339) for ``"anthropic"``, none for ``"none"`` (a provider that only says 429).
Past the limit it answers 429 with ``Retry-After`` and the same headers, and counts ``refused``.
Time comes from ``clock`` (a VirtualClock in tests), read as epoch seconds as both clocks give
them, so an RFC 3339 reset means the same instant to the fake and to the service.
"""

from __future__ import annotations

import datetime
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from actors.core.clock import Clock, SystemClock
from actors.testing.faults import Fault, error

__all__ = ("RateLimit", "go_duration")

Style = Literal["openai", "anthropic", "none"]


def go_duration(seconds: float) -> str:
    """360.0 -> ``6m0s``, 7.66 -> ``7.66s``, 0.002 -> ``2ms``: how OpenAI and Groq write resets."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.2f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass
class RateLimit:
    """``requests`` per ``window_s``, enforced and reported as ``style`` says."""

    requests: int
    window_s: float = 60.0
    style: Style = "openai"
    clock: Clock = field(default_factory=SystemClock)
    sent: deque[float] = field(default_factory=deque)
    admitted: int = 0
    refused: int = 0

    def take(self) -> tuple[Fault | None, dict[str, str]]:
        """Count one request: (a 429 to answer instead, or None) and the headers to send."""
        now = self.clock.now()
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()
        refusal: Fault | None = None
        if len(self.sent) >= self.requests:
            self.refused += 1
            wait = self.sent[0] + self.window_s - now
            refusal = error(429, "Rate limit reached for requests", code="rate_limit_exceeded",
                            retry_after=math.ceil(wait))
        else:
            self.sent.append(now)
            self.admitted += 1
        return refusal, self.headers(now)

    def headers(self, now: float) -> dict[str, str]:
        remaining = max(0, self.requests - len(self.sent))
        reset = self.sent[0] + self.window_s - now if self.sent else 0.0
        if self.style == "openai":
            return {"x-ratelimit-limit-requests": str(self.requests),
                    "x-ratelimit-remaining-requests": str(remaining),
                    "x-ratelimit-reset-requests": go_duration(reset)}
        if self.style == "anthropic":
            when = datetime.datetime.fromtimestamp(math.ceil(now + reset), datetime.UTC)
            return {"anthropic-ratelimit-requests-limit": str(self.requests),
                    "anthropic-ratelimit-requests-remaining": str(remaining),
                    "anthropic-ratelimit-requests-reset": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return {}
