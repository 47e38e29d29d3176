"""Rate-limit admission: a deployment with no headroom left is skipped before it answers 429.

Two sources, per deployment (provider, upstream model):

- **Configured limits**: ``rpm`` / ``tpm`` of the provider or of one model (``models = { chat = {
  model = "llama-3.3-70b-versatile", rpm = 30 } }``). Every request sent counts in a sliding
  60-second window; a deployment whose window is full is not asked until a slot frees.
- **Reported headroom** (``routing.rate_limit_headers``, on by default): what the last answer's
  headers said remains (:mod:`actors.core.ratelimits`), less what this process has sent since the
  request that brought that answer started (the provider had not counted those yet). Out of
  requests, or of tokens for this request's estimate, it is skipped until the reported reset.

A request's tokens are estimated as a quarter of its messages' JSON length (input) plus its
``max_tokens`` (output): OpenAI and Groq count ``max_tokens`` against TPM when a request arrives.

:meth:`Admission.until` is the gate the request path reads (no await, no I/O); :meth:`Admission.admit`
counts a request and returns the :class:`Ticket` whose ``seen`` reads the answer's headers. State is
this process's own: it is not logged (it changes no provider state) and starts empty.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.core.clock import Clock
from actors.core.config import Config, ProviderConfig
from actors.core.deployments import deployment_key
from actors.core.ratelimits import Bucket, Reported, parse_rate_limits

__all__ = ("Admission", "Need", "Ticket", "estimate")

WINDOW_S = 60.0  # rpm / tpm are per minute
_MAX_PENDING = 10_000  # requests sent since the last report, kept to discount it (bounded)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Need:
    """What one request is expected to spend: input and output tokens."""

    input: int = 0
    output: int = 0

    @property
    def tokens(self) -> int:
        return self.input + self.output


def estimate(body: Mapping[str, Any]) -> Need:
    """A request's tokens: its messages' JSON length / 4, and max_tokens (or max_completion_tokens)."""
    messages = body.get("messages")
    try:
        size = len(_encode(messages)) if messages is not None else 0
    except (TypeError, ValueError, OverflowError):
        size = 0
    out = body.get("max_completion_tokens", body.get("max_tokens"))
    output = out if isinstance(out, int) and not isinstance(out, bool) and out > 0 else 0
    return Need(input=math.ceil(size / 4), output=output)


@dataclass(slots=True)
class _Deployment:
    rpm: int | None
    tpm: int | None
    window: deque[tuple[float, int]] = field(default_factory=deque)  # (sent at, tokens) in 60 s
    seq: int = 0  # requests counted so far
    reported: Reported | None = None
    reported_seq: int = 0  # the request whose answer brought `reported`
    reported_at: float = 0.0
    #: (seq, tokens) of the latest requests: those after ``reported_seq`` discount the report.
    pending: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=_MAX_PENDING))

    def prune(self, now: float) -> None:
        while self.window and self.window[0][0] <= now - WINDOW_S:
            self.window.popleft()

    def since(self) -> tuple[int, int]:
        """Requests and tokens sent after the request whose answer was last reported."""
        return len(self.pending), sum(tokens for _, tokens in self.pending)


class Ticket:
    """One request counted at one deployment; ``seen`` takes its answer's headers."""

    __slots__ = ("_admission", "_key", "seq")

    def __init__(self, admission: Admission, key: str, seq: int) -> None:
        self._admission, self._key, self.seq = admission, key, seq

    def seen(self, headers: Mapping[str, str]) -> None:
        self._admission.report(self._key, self.seq, headers)


class Admission:
    """Which deployments may take a request now (see the module doc)."""

    def __init__(self, config: Config, clock: Clock, *, wall: Callable[[], float] | None = None) -> None:
        self._clock = clock
        #: Epoch seconds now, for resets given as times (RFC 3339): the clock's own, as both
        #: SystemClock and VirtualClock count epoch seconds.
        self._wall = wall or clock.now
        self._headers = config.routing.rate_limit_headers
        self._state: dict[str, _Deployment] = {}
        self._tokens = False  # some deployment has a tpm, or reported a token budget
        for p in config.providers:
            for logical, upstream in p.models.items():
                limits = p.model_limits.get(logical)
                rpm = limits.rpm if limits is not None and limits.rpm is not None else p.rpm
                tpm = limits.tpm if limits is not None and limits.tpm is not None else p.tpm
                key = deployment_key(p.name, upstream)
                known = self._state.get(key)
                if known is not None:  # two logical names for one upstream model: the tighter limit
                    rpm = _tighter(known.rpm, rpm)
                    tpm = _tighter(known.tpm, tpm)
                self._state[key] = _Deployment(rpm, tpm)
                self._tokens = self._tokens or tpm is not None

    @property
    def counts_tokens(self) -> bool:
        """Whether a request's tokens matter anywhere (a tpm, or a token budget reported): if not,
        the request path skips estimating them."""
        return self._tokens

    def _get(self, key: str) -> _Deployment:
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = _Deployment(None, None)
        return state

    def until(self, provider: str, upstream: str, need: Need, now: float) -> float:
        """When this deployment may take the request (``<= now``: now)."""
        state = self._state.get(deployment_key(provider, upstream))
        if state is None:
            return 0.0
        when = 0.0
        if state.rpm is not None or state.tpm is not None:
            state.prune(now)
            when = _window_until(state, need.tokens, now)
        if state.reported is not None:
            when = max(when, self._reported_until(state, need, now))
        return when

    def _reported_until(self, state: _Deployment, need: Need, now: float) -> float:
        reported = state.reported
        assert reported is not None
        sent, spent = state.since()
        when, live = 0.0, False
        for bucket, used, wanted in ((reported.requests, sent, 1), (reported.tokens, spent, need.tokens),
                                     (reported.input_tokens, spent, need.input),
                                     (reported.output_tokens, 0, 1)):
            if bucket is None or bucket.reset_at <= now:
                continue
            live = True
            if math.isfinite(bucket.reset_at) and bucket.remaining - used < max(wanted, 1):
                when = max(when, bucket.reset_at)
        if not live:  # every reported bucket has reset: what it said is over
            state.reported = None
        return when

    def admit(self, provider: str, upstream: str, need: Need) -> Ticket:
        """Count one request sent to this deployment now."""
        key = deployment_key(provider, upstream)
        state = self._get(key)
        state.seq += 1
        if state.rpm is not None or state.tpm is not None:
            state.window.append((self._clock.now(), need.tokens))
        if self._headers:
            state.pending.append((state.seq, need.tokens))
        return Ticket(self, key, state.seq)

    def report(self, key: str, seq: int, headers: Mapping[str, str]) -> None:
        """An answer to request ``seq`` arrived with these headers."""
        if not self._headers:
            return
        state = self._get(key)
        if seq < state.reported_seq:
            return  # an older request's answer: a newer one has reported already
        now = self._clock.now()
        reported = parse_rate_limits(headers, now, self._wall())
        if not reported:
            return
        state.reported, state.reported_seq, state.reported_at = reported, seq, now
        if not self._tokens and (reported.tokens or reported.input_tokens or reported.output_tokens):
            self._tokens = True
        while state.pending and state.pending[0][0] <= seq:
            state.pending.popleft()

    def view(self, provider: ProviderConfig) -> list[dict[str, Any]]:
        """The /status headroom of each of a provider's upstream models."""
        now = self._clock.now()
        rows = []
        for upstream in dict.fromkeys(provider.models.values()):
            state = self._state.get(deployment_key(provider.name, upstream))
            if state is None:
                continue
            state.prune(now)
            row: dict[str, Any] = {"model": upstream}
            if state.rpm is not None or state.tpm is not None:
                row["rpm"], row["tpm"] = state.rpm, state.tpm
                row["last_minute"] = {"requests": len(state.window),
                                      "tokens": sum(t for _, t in state.window)}
            if state.reported is not None:
                sent, spent = state.since()
                row["reported"] = {name: _shown(bucket, used, now) for name, bucket, used in (
                    ("requests", state.reported.requests, sent), ("tokens", state.reported.tokens, spent),
                    ("input_tokens", state.reported.input_tokens, spent),
                    ("output_tokens", state.reported.output_tokens, 0)) if bucket is not None}
                row["reported_s_ago"] = round(now - state.reported_at, 3)
            blocked = self.until(provider.name, upstream, Need(), now)
            row["skipped_for_s"] = round(blocked - now, 3) if blocked > now else 0
            if len(row) > 2:
                rows.append(row)
        return rows


def _tighter(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _window_until(state: _Deployment, tokens: int, now: float) -> float:
    """When the sliding window has room for one more request of ``tokens``."""
    window = state.window
    when = 0.0
    if state.rpm is not None and len(window) >= state.rpm:
        when = window[len(window) - state.rpm][0] + WINDOW_S
    if state.tpm is not None and window:
        used = sum(t for _, t in window)
        if used + tokens > state.tpm:
            if tokens >= state.tpm:  # more than a minute's budget alone: once the window is empty
                return max(when, window[-1][0] + WINDOW_S)
            for sent_at, spent in window:  # the oldest leave first
                used -= spent
                if used + tokens <= state.tpm:
                    when = max(when, sent_at + WINDOW_S)
                    break
    return when


def _shown(bucket: Bucket, used: int, now: float) -> dict[str, Any]:
    left = bucket.remaining - used if bucket.reset_at > now else bucket.limit
    return {"limit": bucket.limit, "remaining": None if left is None else max(0.0, left),
            "resets_in_s": round(bucket.reset_at - now, 3) if math.isfinite(bucket.reset_at) and
            bucket.reset_at > now else None}
