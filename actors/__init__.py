"""provider-fallback: an LLM-provider failover engine built from actors.

::

    from actors import Supervisor, load_config

    async with Supervisor(load_config("config.toml")) as fallback:
        reply = await fallback.chat([{"role": "user", "content": "hi"}], model="chat")
"""

from .clock import Clock, SystemClock, VirtualClock
from .config import Config, ProviderConfig, Secret, load_config, parse_config
from .errors import (
    AllProvidersFailedError,
    Attempt,
    ConfigError,
    FallbackError,
    InvalidRequestError,
    StoreError,
    StreamInterruptedError,
    SupervisorClosedError,
    UnknownModelError,
    UnknownProviderError,
    UpstreamRejectedError,
)
from .request import ChatReply, ChatStream
from .supervisor import Supervisor

__all__ = (
    "AllProvidersFailedError",
    "Attempt",
    "ChatReply",
    "ChatStream",
    "Clock",
    "Config",
    "ConfigError",
    "FallbackError",
    "InvalidRequestError",
    "ProviderConfig",
    "Secret",
    "StoreError",
    "StreamInterruptedError",
    "Supervisor",
    "SupervisorClosedError",
    "SystemClock",
    "UnknownModelError",
    "UnknownProviderError",
    "UpstreamRejectedError",
    "VirtualClock",
    "load_config",
    "parse_config",
)
