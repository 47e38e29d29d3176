"""What telemetry knows of a request once it is over: its attempts, how each went, who answered.

Plain records (no OpenTelemetry in them): :mod:`actors.runtime.telemetry` builds them from the bus,
:mod:`actors.runtime.otel` turns them into spans and metrics. Also the semantic conventions'
provider name (``gen_ai.provider.name``'s well-known values) a provider's kind or host gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from actors.core.config import ProviderConfig

__all__ = ("AttemptKind", "AttemptRecord", "Finished", "provider_system")

AttemptKind = Literal["first", "retry", "fallback", "continuation"]

#: ``gen_ai.provider.name``'s well-known values by API host, for ``kind = "openai"`` (an
#: OpenAI-compatible server could be anyone: only a known host says who).
_HOSTS = {"api.openai.com": "openai", "api.groq.com": "groq", "api.deepseek.com": "deepseek",
          "api.mistral.ai": "mistral_ai", "api.x.ai": "x_ai", "api.perplexity.ai": "perplexity"}
_KINDS = {"anthropic": "anthropic", "azure": "azure.ai.openai", "vertex": "gcp.vertex_ai"}


def provider_system(provider: ProviderConfig) -> str | None:
    """The semantic conventions' provider name for this provider's API, when its kind or host says."""
    if provider.kind in _KINDS:
        return _KINDS[provider.kind]
    if provider.kind == "openai":
        host = (urlsplit(provider.base_url).hostname or "").lower()
        return _HOSTS.get(host)
    return None


@dataclass(slots=True)
class AttemptRecord:
    """One attempt of a finished request, as its span shows it."""

    provider: str
    kind: AttemptKind
    start: float  # clock seconds
    end: float
    ok: bool
    category: str | None = None
    status: int | None = None
    last_resort: bool = False


@dataclass(slots=True)
class Finished:
    """A request that is over: what its span and its metrics say."""

    request_id: str
    model: str
    stream: bool
    attempts: list[AttemptRecord]
    error_type: str | None = None  # None: answered
    ttft_s: float | None = None  # a stream's time from the request's start to its first chunk

    @property
    def start(self) -> float:
        return min(a.start for a in self.attempts)

    @property
    def end(self) -> float:
        return max(a.end for a in self.attempts)

    @property
    def provider(self) -> str:
        """Who answered (or, on failure, who was tried last)."""
        return self.attempts[-1].provider
