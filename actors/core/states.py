"""The shared vocabulary: provider states, failure kinds and categories, check tiers.

Every layer reads these words; they live here, on the ground floor, so that no
module imports an actor to learn what "usable" means.
"""

from __future__ import annotations

from typing import Literal

__all__ = (
    "DAY_S",
    "DOWN_STATES",
    "TRANSIENT_CATEGORIES",
    "USABLE_STATES",
    "Action",
    "Category",
    "FailureKind",
    "ProviderState",
    "Severity",
    "Tier",
)

DAY_S = 86_400.0

ProviderState = Literal[
    "healthy", "degraded", "cooldown", "probing", "unhealthy", "disabled", "unconfigured"
]

#: States in which routing sends traffic to a provider.
USABLE_STATES: frozenset[ProviderState] = frozenset({"healthy", "degraded"})
#: States in which a provider is out of routing until it recovers.
DOWN_STATES: frozenset[ProviderState] = frozenset({"cooldown", "probing", "unhealthy"})

#: How an attempt or a health check failed, as seen at the edge.
FailureKind = Literal[
    "connect",  # refused, reset, DNS: never reached an HTTP answer
    "timeout",  # no answer within the attempt's timeout
    "http",  # an HTTP error status (see ``status``)
    "bad_response",  # 2xx with garbage: invalid JSON, HTML, wrong shape, truncated
    "stream_cut",  # the stream ended before [DONE]
    "stream_stall",  # no chunk within the stream idle timeout
]

#: What a failure means: the classifier's verdict (DESIGN.md's decision matrix).
Category = Literal[
    "connection_error",
    "timeout",
    "bad_response",
    "stream_interrupted",
    "unknown",
    "auth_failure",
    "quota_exhausted",
    "rate_limit",
    "model_not_found",
    "context_length",
    "invalid_request",
    "server_error",
    "service_unavailable",
    "client_error",
    "proxy_error",  # a proxy in front of the model is misconfigured (its own 400: actors.policy.proxy_faults)
]

#: What the request path does about a failure: retry the same provider, fall back,
#: return the error to the caller, or try the next provider without penalty.
Action = Literal["retry", "fallback", "return", "next"]
Severity = Literal["low", "medium", "high", "critical"]

#: The three health-check tiers: any HTTP answer, an authenticated model list, a 1-token completion.
Tier = Literal["ping", "full", "api"]

#: Categories of failure that may pass by themselves: a provider down for one of
#: these is still worth a last-resort try when nothing else can answer.
#: Not here: auth_failure, quota_exhausted, model_not_found and client_error
#: (the same request fails again) and rate_limit (the provider asked us to wait:
#: the request path tries it once that wait is over).
TRANSIENT_CATEGORIES: frozenset[Category] = frozenset({
    "connection_error", "timeout", "bad_response", "stream_interrupted", "unknown",
    "server_error", "service_unavailable",
})
