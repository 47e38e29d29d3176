"""Upstream adapters: one per API dialect. They translate; they decide nothing.

``vertex`` and ``snowflake`` need an extra each (google-auth; PyJWT and cryptography), imported only
when a provider of that kind is built: a missing one is a ConfigError naming the pip command.
"""

from __future__ import annotations

import aiohttp

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.core.errors import ConfigError
from actors.edges.providers.base import Adapter, UpstreamFailure
from actors.edges.providers.openai import OpenAIAdapter

__all__ = ("Adapter", "OpenAIAdapter", "UpstreamFailure", "make_adapter")


def make_adapter(config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock) -> Adapter:
    """The adapter for a provider's ``kind`` (openai and azure share one dialect)."""
    if config.kind == "anthropic":
        from actors.edges.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter(config, session, clock)
    if config.kind == "vertex":
        try:
            from actors.edges.providers.vertex import VertexAdapter
        except ImportError as exc:
            raise _missing_extra(config, exc, ("google",)) from None
        return VertexAdapter(config, session, clock)
    if config.kind == "snowflake":
        try:
            from actors.edges.providers.snowflake import SnowflakeAdapter
        except ImportError as exc:
            raise _missing_extra(config, exc, ("jwt", "cryptography")) from None
        return SnowflakeAdapter(config, session, clock)
    return OpenAIAdapter(config, session, clock)


def _missing_extra(config: ProviderConfig, exc: ImportError, packages: tuple[str, ...]) -> Exception:
    """A ConfigError naming the extra a kind needs; any other ImportError as it was."""
    if not (exc.name or "").startswith(packages):
        return exc
    return ConfigError(f'kind = "{config.kind}" needs the {config.kind} extra ({exc.name} is not '
                       f"installed): pip install 'provider-fallback[{config.kind}]'",
                       key=f"providers ({config.name}).kind")
