"""Per-request control of the chain: pin or reorder its providers, or turn fallback off.

A caller says it in the body (``"fallback": {"providers": ["openrouter", "kilocode"]}``,
``"fallback": {"enabled": false}`` or ``"fallback": false``) or, through the gateway, in headers
(``x-fallback-providers: openrouter,kilocode``, ``x-fallback: off``); a header wins over the body
for what it sets. :func:`take_route` removes the key from the body (no provider sees it) and
checks it: an unknown provider, one that does not serve the model, a duplicate or an empty list is
an :class:`~actors.errors.InvalidRequestError` naming where it came from.

``routing.fallback = false`` (the rollback switch) is the operator's: a request can turn fallback
off, never back on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.core.config import Config
from actors.core.errors import InvalidRequestError

__all__ = ("PROVIDERS_HEADER", "SWITCH_HEADER", "Route", "headers_route", "take_route")

PROVIDERS_HEADER = "x-fallback-providers"
SWITCH_HEADER = "x-fallback"
_OFF = {"off", "false", "0", "no"}
_ON = {"on", "true", "1", "yes"}


@dataclass(frozen=True, slots=True)
class Route:
    """How one request may travel: only ``providers`` in that order (None: all, by priority),
    and whether it may fall over at all (False: the first usable provider only)."""

    providers: tuple[str, ...] | None = None
    fallback: bool = True


def headers_route(headers: Mapping[str, str]) -> dict[str, Any]:
    """The gateway's headers as a ``fallback`` spec (only what they set)."""
    spec: dict[str, Any] = {}
    names = headers.get(PROVIDERS_HEADER)
    if names is not None:
        spec["providers"] = [n.strip() for n in names.split(",")]
    switch = headers.get(SWITCH_HEADER)
    if switch is not None:
        word = switch.strip().lower()
        if word not in _OFF | _ON:
            raise InvalidRequestError(f"header {SWITCH_HEADER} must be 'off' or 'on', got {switch[:40]!r}",
                                      param=SWITCH_HEADER)
        spec["enabled"] = word in _ON
    return spec


def _body_spec(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bool):
        return {"enabled": raw}
    if not isinstance(raw, dict):
        raise InvalidRequestError("'fallback' must be an object such as {\"providers\": [\"a\", \"b\"]} "
                                  "or {\"enabled\": false}, or false", param="fallback")
    for key in raw.keys() - {"providers", "enabled"}:
        raise InvalidRequestError(f"unknown key 'fallback.{key}': it takes providers and enabled",
                                  param=f"fallback.{key}")
    if "enabled" in raw and not isinstance(raw["enabled"], bool):
        raise InvalidRequestError("'fallback.enabled' must be true or false", param="fallback.enabled")
    return dict(raw)


def take_route(body: dict[str, Any], config: Config, model: str,
               headers: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Route]:
    """The body without its ``fallback`` key, and the checked route (``headers``: the gateway's spec)."""
    switch = config.routing.fallback
    if "fallback" not in body and not headers:
        return body, Route(fallback=switch)
    spec: dict[str, Any] = {}
    if "fallback" in body:
        spec = _body_spec(body["fallback"])
        body = {k: v for k, v in body.items() if k != "fallback"}
    spec.update(headers or {})
    where = PROVIDERS_HEADER if headers and "providers" in headers else "fallback.providers"
    providers = spec.get("providers")
    chosen: tuple[str, ...] | None = None
    if providers is not None:
        chosen = _checked_names(providers, where, config, model)
    return body, Route(providers=chosen, fallback=switch and spec.get("enabled", True))


def _checked_names(providers: Any, where: str, config: Config, model: str) -> tuple[str, ...]:
    if not isinstance(providers, list) or not all(isinstance(n, str) for n in providers):
        raise InvalidRequestError(f"{where} must be a list of provider names", param=where)
    names = [n for n in providers if n]
    if not names:
        raise InvalidRequestError(f"{where} names no provider", param=where)
    known = [p.name for p in config.providers]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidRequestError(f"{where}: unknown provider{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(repr(n[:60]) for n in unknown)}; configured are "
                                  f"{', '.join(known)}", param=where)
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"{where} names a provider twice", param=where)
    idle = [n for n in names if model not in (config.provider(n) or config.providers[0]).models]
    if idle:
        raise InvalidRequestError(f"{where}: {', '.join(idle)} do{'es' if len(idle) == 1 else ''} not serve "
                                  f"model {model!r}", param=where)
    return tuple(names)
