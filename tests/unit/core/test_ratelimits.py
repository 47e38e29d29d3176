"""Rate-limit headers as the providers document them, read into headroom (actors.core.ratelimits)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from actors.core.ratelimits import DEFAULT_RESET_S, parse_duration, parse_rate_limits

NOW = 1_800_000_000.0  # the caller's clock, here equal to the wall time


def _parse(headers: dict[str, str], now: float = NOW, wall: float = NOW):  # type: ignore[no-untyped-def]
    return parse_rate_limits(CIMultiDict(headers), now, wall)


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("7.66s", 7.66), ("2m59.56s", 179.56), ("1s", 1.0), ("2ms", 0.002),
    ("1h2m3s", 3723.0), ("12", 12.0), ("0.5", 0.5), ("0s", 0.0),
])
def test_durations_as_openai_and_groq_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "6m0", "m5s", "-3", "nan", "inf", "1e400", "5s 3"])
def test_a_duration_that_is_not_one_is_none(text: str) -> None:
    assert parse_duration(text) is None


def test_openai_documented_sample() -> None:
    """platform.openai.com/docs/guides/rate-limits: the example response headers."""
    got = _parse({
        "x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s",
    })
    assert got.requests is not None and got.tokens is not None
    assert (got.requests.limit, got.requests.remaining, got.requests.reset_at) == (60, 59, NOW + 1)
    assert (got.tokens.limit, got.tokens.remaining, got.tokens.reset_at) == (150000, 149984, NOW + 360)


def test_groq_documented_sample() -> None:
    """console.groq.com/docs/rate-limits: its example (header names in any case)."""
    got = _parse({
        "retry-after": "2", "X-RateLimit-Limit-Requests": "14400", "x-ratelimit-limit-tokens": "18000",
        "x-ratelimit-remaining-requests": "14370", "x-ratelimit-remaining-tokens": "17997",
        "x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-reset-tokens": "7.66s",
    }, now=100.0)  # a clock that is not the wall clock: durations are relative to it
    assert got.requests is not None and got.tokens is not None
    assert got.requests.remaining == 14370 and got.requests.reset_at == pytest.approx(279.56)
    assert got.tokens.remaining == 17997 and got.tokens.reset_at == pytest.approx(107.66)


def test_anthropic_documented_sample() -> None:
    """docs.anthropic.com/en/api/rate-limits: RFC 3339 resets, input and output token buckets."""
    got = _parse({
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:30Z",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": "2027-01-15T08:00:12+00:00",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
        "anthropic-ratelimit-tokens-remaining": "47000",
        "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:12Z",
    }, now=500.0, wall=1_800_000_000.0)  # 2027-01-15T08:00:00Z
    assert got.requests is not None and got.input_tokens is not None and got.tokens is not None
    assert (got.requests.remaining, got.requests.reset_at) == (0, 530.0)
    assert (got.input_tokens.remaining, got.input_tokens.reset_at) == (39000, 512.0)
    assert got.output_tokens is not None and got.output_tokens.reset_at == 500.0 + DEFAULT_RESET_S  # none said
    assert got.tokens.reset_at == 512.0


def test_openrouter_epoch_milliseconds() -> None:
    """openrouter.ai/docs/api-reference/limits: X-RateLimit-Reset in epoch milliseconds."""
    got = _parse({"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0",
                  "X-RateLimit-Reset": str(int((NOW + 42) * 1000))})
    assert got.requests is not None and got.requests.reset_at == pytest.approx(NOW + 42)


def test_litellm_proxy_counts_below_zero_and_sends_no_reset() -> None:
    """What litellm 1.106.2's proxy sends for a deployment with rpm = 3, the 5th request in a minute
    (seen from the real proxy: remaining 2, 1, 0, -1, -2, and no reset header)."""
    got = _parse({"x-ratelimit-remaining-requests": "-2", "x-ratelimit-limit-requests": "3"})
    assert got.requests is not None
    assert (got.requests.remaining, got.requests.limit, got.requests.reset_at) == (0, 3, NOW + DEFAULT_RESET_S)


def test_garbage_is_ignored_and_no_headers_report_nothing() -> None:
    assert not _parse({"content-type": "application/json"})
    got = _parse({"x-ratelimit-remaining-requests": "many", "x-ratelimit-remaining-tokens": "nan",
                  "anthropic-ratelimit-requests-remaining": "3",
                  "anthropic-ratelimit-requests-reset": "next tuesday"})
    assert got.tokens is None
    assert got.requests is not None and got.requests.remaining == 3
    assert got.requests.reset_at == NOW + DEFAULT_RESET_S  # a reset that can't be read: a minute
