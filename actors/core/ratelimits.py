"""What a provider says about its rate limits, read from the headers of any answer.

:func:`parse_rate_limits` turns response headers into a :class:`Reported`:
per bucket (requests, tokens, input/output tokens) the limit, what remains and
when it resets, on the caller's clock. The dialects it reads, as documented:

- OpenAI, Groq, Azure OpenAI, Together, vLLM, LiteLLM's proxy:
  ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as Go-style
  durations (``6m0s``, ``7.66s``, ``2ms``, ``1h2m3s``) or plain seconds.
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
  {limit,remaining,reset}``, resets as RFC 3339 times.
- OpenRouter (and other gateways): ``x-ratelimit-{limit,remaining,reset}``,
  the reset an epoch time in milliseconds or seconds, or a duration.

A header that can't be parsed is ignored (garbage from an upstream never
breaks an answer); a bucket with no ``remaining`` is not reported. A negative
``remaining`` is 0 (LiteLLM's proxy counts below zero past a deployment's
``rpm``). A bucket reported without a reset is taken to reset
:data:`DEFAULT_RESET_S` later: these limits are per minute (OpenAI, Groq,
Azure OpenAI, LiteLLM's ``rpm``/``tpm``), and Azure and LiteLLM send no reset.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping

import msgspec

__all__ = ("DEFAULT_RESET_S", "Bucket", "Reported", "parse_duration", "parse_rate_limits")

DEFAULT_RESET_S = 60.0  # a bucket reported with no reset: a minute's window

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """One limit as last reported: ``remaining`` until ``reset_at`` (clock time)."""

    remaining: float
    limit: float | None = None
    reset_at: float = math.inf


class Reported(msgspec.Struct, frozen=True, kw_only=True):
    """Every bucket one answer reported; ``None``: that bucket was not in the headers."""

    requests: Bucket | None = None
    tokens: Bucket | None = None
    input_tokens: Bucket | None = None
    output_tokens: Bucket | None = None

    def __bool__(self) -> bool:
        return any(b is not None for b in (self.requests, self.tokens, self.input_tokens, self.output_tokens))


def parse_duration(text: str) -> float | None:
    """``"6m0s"`` -> 360.0, ``"7.66s"`` -> 7.66, ``"2ms"`` -> 0.002, ``"12"`` -> 12.0; None if not one."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def _finite(value: str | None) -> float | None:
    """A header's number, or None when it is missing or not a finite number."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _number(value: str | None) -> float | None:
    number = _finite(value)
    return number if number is not None and number >= 0 else None


def _remaining(value: str | None) -> float | None:
    number = _finite(value)
    return None if number is None else max(0.0, number)  # below zero: none left (LiteLLM)


def _reset_at(value: str | None, now: float, wall: float) -> float:
    """A reset as clock time, from a duration, an RFC 3339 time or an epoch (s or ms); a minute if none."""
    if not value:
        return now + DEFAULT_RESET_S
    value = value.strip()
    if "T" in value or value.count("-") >= 2:  # RFC 3339 (Anthropic)
        try:
            when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return now + DEFAULT_RESET_S
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return now + max(0.0, when.timestamp() - wall)
    seconds = parse_duration(value)
    if seconds is None:
        return now + DEFAULT_RESET_S
    if seconds > 1e12:  # an epoch in milliseconds (OpenRouter)
        return now + max(0.0, seconds / 1000.0 - wall)
    if seconds > 1e9:  # an epoch in seconds
        return now + max(0.0, seconds - wall)
    return now + seconds


def _bucket(headers: Mapping[str, str], remaining: str, limit: str, reset: str,
            now: float, wall: float) -> Bucket | None:
    left = _remaining(headers.get(remaining))
    if left is None:
        return None
    return Bucket(remaining=left, limit=_number(headers.get(limit)),
                  reset_at=_reset_at(headers.get(reset), now, wall))


def parse_rate_limits(headers: Mapping[str, str], now: float, wall: float) -> Reported:
    """The rate limits an answer's headers report (``headers`` case-insensitive, as aiohttp's).

    ``now`` is the caller's clock (resets are returned on it); ``wall`` the wall-clock time now,
    for resets given as absolute times.
    """
    def openai(kind: str) -> Bucket | None:
        return _bucket(headers, f"x-ratelimit-remaining-{kind}", f"x-ratelimit-limit-{kind}",
                       f"x-ratelimit-reset-{kind}", now, wall)

    def anthropic(kind: str) -> Bucket | None:
        prefix = f"anthropic-ratelimit-{kind}"
        return _bucket(headers, f"{prefix}-remaining", f"{prefix}-limit", f"{prefix}-reset", now, wall)

    requests = openai("requests") or anthropic("requests") or _bucket(
        headers, "x-ratelimit-remaining", "x-ratelimit-limit", "x-ratelimit-reset", now, wall)
    return Reported(requests=requests, tokens=openai("tokens") or anthropic("tokens"),
                    input_tokens=anthropic("input-tokens"), output_tokens=anthropic("output-tokens"))
