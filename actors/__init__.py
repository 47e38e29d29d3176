"""provider-fallback: an LLM-provider failover engine built from actors.

::

    from actors import Supervisor, load_config

    async with Supervisor(load_config("config.toml")) as fallback:
        reply = await fallback.chat([{"role": "user", "content": "hi"}], model="chat")

    from actors.replay import replay            # an exported incident log, replayed

    assert replay("tests/incidents/groq-429-storm.jsonl").matches
"""

from actors.core.clock import Clock, SystemClock, VirtualClock
from actors.core.config import Config, ProviderConfig, Secret, load_config, parse_config
from actors.core.errors import (
    AllProvidersFailedError,
    Attempt,
    ConfigError,
    EventLogError,
    FallbackError,
    InvalidRequestError,
    StoreError,
    StreamInterruptedError,
    SupervisorClosedError,
    UnknownModelError,
    UnknownProviderError,
    UpstreamRejectedError,
)
from actors.runtime.replies import ChatReply, ChatStream
from actors.runtime.supervisor import Supervisor

__all__ = (
    "AllProvidersFailedError",
    "Attempt",
    "ChatReply",
    "ChatStream",
    "Clock",
    "Config",
    "ConfigError",
    "EventLogError",
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
