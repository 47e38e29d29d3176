"""400s that are not the caller's: what proxies and gateways in front of a model say when *they* are broken.

A 400 normally means the request is wrong and goes back to the caller. But a
LiteLLM proxy reports its own configuration failures as 400, and so do some
gateways: the same request would succeed elsewhere, so these are the
provider's fault (fall over, cool the deployment, count it). One table, one
entry per known body, each with where it comes from; the classifier reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.core.states import Category

__all__ = ("PROXY_FAULTS", "ProxyFault", "proxy_fault")


@dataclass(frozen=True, slots=True)
class ProxyFault:
    """A body a proxy sends for a fault of its own: ``marker`` appears in the error message."""

    marker: str
    category: Category
    source: str  # who sends it and why, for the next reader


PROXY_FAULTS: tuple[ProxyFault, ...] = (
    # LiteLLM proxy, key not its master key and no database to look virtual keys up in:
    # {"error":{"message":"No connected db.","type":"no_db_connection","param":null,"code":"400"}}
    # (BerriAI/litellm#12273). A wrong key, reported as a 400: provider-wide, like a 401.
    ProxyFault("No connected db", "auth_failure", "LiteLLM: a key it can't check without a database"),
    # LiteLLM proxy, the model is not in its model_list:
    # "/chat/completions: Invalid model name passed in model=groq-missing. Call `/v1/models` ..."
    ProxyFault("Invalid model name passed in model=", "model_not_found",
               "LiteLLM: a model not in its model_list"),
    # LiteLLM, a model_list entry without a provider prefix ("litellm.BadRequestError: LLM Provider
    # NOT provided. Pass in the LLM provider you are trying to call. You passed model=...").
    ProxyFault("LLM Provider NOT provided", "proxy_error", "LiteLLM: a model_list entry it can't route"),
    # OpenRouter, no upstream serves the model right now ("No endpoints found for <model>.");
    # usually a 404, sometimes a 400 through other gateways.
    ProxyFault("No endpoints found", "model_not_found", "OpenRouter: no endpoint serves the model now"),
)


def proxy_fault(message: str) -> ProxyFault | None:
    """The known proxy fault this error message reports, if any."""
    for fault in PROXY_FAULTS:
        if fault.marker in message:
            return fault
    return None
