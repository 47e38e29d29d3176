"""Upstream adapters: one per API dialect. They translate; they decide nothing."""

from __future__ import annotations

import aiohttp

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.edges.providers.base import Adapter, UpstreamFailure
from actors.edges.providers.openai import OpenAIAdapter

__all__ = ("Adapter", "OpenAIAdapter", "UpstreamFailure", "make_adapter")


def make_adapter(config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock) -> Adapter:
    """The adapter for a provider's ``kind`` (openai and azure share one dialect)."""
    if config.kind == "anthropic":
        from actors.edges.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter(config, session, clock)
    return OpenAIAdapter(config, session, clock)
