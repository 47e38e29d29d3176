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
this process's own: it is not logged (it changes no provider state, and replay doesn't model it) and
starts empty.

**Shared with peers** (``[state] shared_url``, :mod:`actors.runtime.shared_headroom`): two hooks and
two inputs, none of them awaited here. :attr:`Admission.on_admit` hears each request counted against a
configured rpm / tpm, and :meth:`Admission.peer_usage` takes what the other instances sent in the last
minute, so the window is full when this instance's count plus theirs reaches the limit (as stale as
the last sync). When peers' usage is unknown (Redis down), :meth:`Admission.peers_unknown` makes each
limit ``limit // instances`` (the instances last seen spending from it; 1: the local count alone).
:attr:`Admission.on_exhausted` hears a report that left no requests (or no tokens) until a finite
reset, once per (deployment, reset), and :meth:`Admission.peer_exhausted` takes a peer's such report
as a requests bucket with nothing left until then.
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
    peer_requests: float = 0.0  # what the other instances sent in the last minute (shared state)
    peer_tokens: float = 0.0
    share: int = 1  # peers' usage unknown: this instance's part of the limit is 1 / share of it

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
        #: Shared state's hooks (see the module doc): a request counted against an rpm / tpm
        #: (key, tokens), and a report that left nothing until a reset (key, epoch seconds).
        self.on_admit: Callable[[str, int], None] | None = None
        self.on_exhausted: Callable[[str, float], None] | None = None
        #: Peers' usage fills the window: ask again after this long (the next sync).
        self.peer_recheck_s = 1.0
        self._published: dict[str, float] = {}  # the latest reset told to or by peers, per key
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

    def limited(self) -> list[str]:
        """The deployments with a configured rpm or tpm."""
        return [key for key, state in self._state.items() if state.rpm is not None or state.tpm is not None]

    def peer_usage(self, key: str, requests: float, tokens: float) -> None:
        """What the OTHER instances sent to ``key`` in the current minute (from the shared count)."""
        state = self._state.get(key)
        if state is not None:
            state.peer_requests, state.peer_tokens, state.share = max(0.0, requests), max(0.0, tokens), 1

    def peers_unknown(self, instances: int) -> None:
        """Redis did not answer: peers' usage is unknown. Each limit counts as ``limit // instances``
        (``instances``: those last seen spending, this one included; 1 leaves the local count alone)."""
        for key in self.limited():
            state = self._state[key]
            state.peer_requests = state.peer_tokens = 0.0
            state.share = max(1, instances)

    def peer_exhausted(self, key: str, until: float) -> None:
        """A peer's answer left ``key`` without requests until ``until`` (epoch seconds)."""
        state = self._state.get(key)
        if state is None or not self._headers:
            return
        now = self._clock.now()
        reset_at = now + (until - self._wall())
        if reset_at <= now:
            return
        self._published[key] = max(until, self._published.get(key, 0.0))
        old = state.reported
        if old is not None and old.requests is not None and old.requests.remaining < 1 and \
                old.requests.reset_at >= reset_at:
            return
        bucket = Bucket(remaining=0, reset_at=reset_at)
        state.reported = (Reported(requests=bucket) if old is None
                          else msgspec.structs.replace(old, requests=bucket))
        state.reported_at = now

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
            when = _window_until(state, need.tokens, now, self.peer_recheck_s)
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
            if self.on_admit is not None:
                self.on_admit(key, need.tokens)
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
        if self.on_exhausted is not None:
            self._tell_exhausted(key, reported, now)

    def _tell_exhausted(self, key: str, reported: Reported, now: float) -> None:
        """Nothing left until a finite reset (no requests, or under one token): tell peers, once."""
        ends = [b.reset_at for b in (reported.requests, reported.tokens, reported.input_tokens)
                if b is not None and b.remaining < 1 and math.isfinite(b.reset_at) and b.reset_at > now]
        if not ends or self.on_exhausted is None:
            return
        until = self._wall() + (max(ends) - now)
        if until > self._published.get(key, 0.0) + 1.0:  # a new reset, not the one already told
            self._published[key] = until
            self.on_exhausted(key, until)

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
                if state.peer_requests or state.peer_tokens:
                    row["peers_last_minute"] = {"requests": round(state.peer_requests, 1),
                                                "tokens": round(state.peer_tokens)}
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


def _window_until(state: _Deployment, tokens: int, now: float, recheck_s: float) -> float:
    """When the sliding window has room for one more request of ``tokens``: this instance's own
    count against its part of the limit (all of it, or 1 / share while peers are unknown), and
    with the peers' usage against the whole limit (full: ask again after ``recheck_s``)."""
    window = state.window
    when = 0.0
    rpm = None if state.rpm is None else max(1, state.rpm // state.share)
    tpm = None if state.tpm is None else max(1, state.tpm // state.share)
    if rpm is not None and len(window) >= rpm:
        when = window[len(window) - rpm][0] + WINDOW_S
    elif state.rpm is not None and state.peer_requests and len(window) + state.peer_requests >= state.rpm:
        when = now + recheck_s
    if tpm is not None and window:
        used = sum(t for _, t in window)
        if used + tokens > tpm:
            if tokens >= tpm:  # more than a minute's budget alone: once the window is empty
                return max(when, window[-1][0] + WINDOW_S)
            for sent_at, spent in window:  # the oldest leave first
                used -= spent
                if used + tokens <= tpm:
                    when = max(when, sent_at + WINDOW_S)
                    break
        elif state.tpm is not None and state.peer_tokens and tokens < state.tpm and \
                used + state.peer_tokens + tokens > state.tpm:
            when = max(when, now + recheck_s)
    elif state.tpm is not None and state.peer_tokens and tokens < state.tpm and \
            state.peer_tokens + tokens > state.tpm:
        when = max(when, now + recheck_s)
    return when


def _shown(bucket: Bucket, used: int, now: float) -> dict[str, Any]:
    left = bucket.remaining - used if bucket.reset_at > now else bucket.limit
    return {"limit": bucket.limit, "remaining": None if left is None else max(0.0, left),
            "resets_in_s": round(bucket.reset_at - now, 3) if math.isfinite(bucket.reset_at) and
            bucket.reset_at > now else None}
