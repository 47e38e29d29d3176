"""Every message that crosses a channel.

Messages are frozen, keyword-only msgspec Structs with an explicit, stable
``type`` tag: the tag is what the event log stores, so renaming a class must
never change it, and a tag is never reused. New fields get defaults; a field's
type never changes (msgspec ``docs/schema-evolution.rst``).

Two families:

* **inputs**, facts observed at the edges: :class:`AttemptSucceeded`,
  :class:`AttemptFailed`, :class:`HealthChecked`, :class:`FallbackTriggered`,
  the admin commands :class:`DisableProvider` / :class:`EnableProvider`, and
  :class:`SupervisorStarted` (the provider state a start began from), and
  what peers share through Redis (:mod:`actors.core.peer_messages`):
  :class:`PeerStateChanged`, :class:`FailuresCounted`, :class:`ProbeSkipped`;
* **decisions**, what the actors conclude from them:
  :class:`ErrorClassified`, :class:`ProviderStateChanged`,
  :class:`ProbeRequested`, :class:`RestoreProvider`,
  :class:`ProviderRecovered`.

:class:`RoutingSnapshot` and :class:`MetricsSnapshot` are published state
views (not logged); :class:`Tick` is an actor's own timer (not logged).
Replay feeds the inputs, at their recorded times, into fresh actors and
compares the decisions.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from actors.core.message_base import Message
from actors.core.peer_messages import FailuresCounted, PeerChangeKind, PeerStateChanged, ProbeSkipped
from actors.core.states import Action, Category, FailureKind, ProviderState, Severity, Tier
from actors.core.views import LastError, ProviderMetrics, ProviderView

__all__ = (
    "ADDED_FIELDS",
    "DECISION_TYPES",
    "INPUT_TYPES",
    "SCHEMA_VERSION",
    "ActorRestarted",
    "AttemptFailed",
    "AttemptSucceeded",
    "CheckDue",
    "DisableProvider",
    "EnableProvider",
    "ErrorClassified",
    "FailuresCounted",
    "FallbackTriggered",
    "HealthChecked",
    "LastError",
    "LoggedMessage",
    "Message",
    "MetricsSnapshot",
    "PeerChangeKind",
    "PeerStateChanged",
    "PrefillRefused",
    "ProbeRequested",
    "ProbeSkipped",
    "ProviderMetrics",
    "ProviderRecovered",
    "ProviderStateChanged",
    "ProviderView",
    "RestoreProvider",
    "RoutingSnapshot",
    "StateSnapshot",
    "SupervisorStarted",
    "Sync",
    "Tick",
    "TimerFired",
    "decode_message",
    "encode_message",
    "message_key",
)

#: The version of the logged messages' schema (exported logs carry it).
#: 1: before SupervisorStarted and ActorRestarted.lost; decisions were dated
#: when an actor handled them. 2: decisions are dated by their cause.
#: 3: typed fields where 2 had text: ``ErrorClassified.check`` (was the
#: ``health-<tier>`` request id), ``ProviderStateChanged.cause`` and ``probe``
#: (were the ``probe_failed:<category>`` reason).
#: 4: timers that decide are logged as they fire (``timer_fired``), so replay
#: uses the time they really fired at instead of their deadline.
#: 5: ``ProviderStateChanged.cooldown_since`` and ``ProbeRequested.tier`` (early,
#: evidence-driven recovery probes); a log from before has neither.
#: 7: shared state (issue 15): the inputs ``peer_state_changed``, ``failures_counted`` and
#: ``probe_skipped``, and ``ProviderStateChanged.peer``.
SCHEMA_VERSION = 7

#: Decision fields a version added: replay of an older log does not compare them
#: (the recorded decision could not carry them).
ADDED_FIELDS: dict[int, frozenset[str]] = {5: frozenset({"cooldown_since", "tier"}),
                                           6: frozenset({"undecided"}), 7: frozenset({"peer"})}


# ---------------------------------------------------------------- inputs


class AttemptSucceeded(Message, frozen=True, kw_only=True, tag="attempt_succeeded"):
    """A provider answered a request attempt."""

    provider: str
    model: str
    request_id: str
    latency_ms: float
    stream: bool = False
    #: Sent although routing had the provider down, because nothing else could answer.
    last_resort: bool = False
    #: The routing snapshot the request read had this provider healthy with no failure
    #: counted, so this success changes no routing state: the selector is not told of it
    #: (the log and the metrics are). Replay delivers it exactly as live did.
    routine: bool = False
    #: Malformed stream events skipped (one is tolerated; a second is garbage).
    bad_chunks: int = 0
    #: The deployment's record (``provider/upstream``) when the provider serves several models.
    deployment: str = ""
    #: A stream's whole time, from its attempt's start to its end (its ``latency_ms`` is the time to
    #: its first token); None for an answer that was not streamed (its latency is its whole time).
    duration_ms: float | None = None


class AttemptFailed(Message, frozen=True, kw_only=True, tag="attempt_failed"):
    """A request attempt failed. ``attempt`` counts tries on this provider."""

    provider: str
    model: str
    request_id: str
    kind: FailureKind
    latency_ms: float = 0.0
    status: int | None = None
    code: str | None = None  # the upstream's error code, e.g. context_length_exceeded
    message: str = ""
    retry_after_s: float | None = None
    attempt: int = 1
    stream: bool = False
    last_resort: bool = False
    param: str | None = None  # the request field a 400 names (OpenAI's error.param)
    #: Whose fault a 400 of unclear origin was, as the next provider showed: "provider" (it
    #: answered the same request) or "caller" (it refused it too). Such a 400 is told only then.
    whose: Literal["provider", "caller"] | None = None
    #: The deployment's record (``provider/upstream``) when the provider serves several models:
    #: a model-scoped fault (actors.core.deployments.MODEL_SCOPED) goes to it, not the provider.
    deployment: str = ""


class PrefillRefused(Message, frozen=True, kw_only=True, tag="prefill_refused"):
    """A deployment answered a continuation's assistant prefill with a 400: it restarts and splices instead.

    With ``prefill = "auto"`` the refusal is remembered (the state file's event log) for ``model``.
    """

    provider: str
    model: str  # the upstream model that refused
    request_id: str
    message: str = ""


class HealthChecked(Message, frozen=True, kw_only=True, tag="health_checked"):
    """The result of one health check. ``probe`` marks a half-open recovery probe."""

    provider: str
    tier: Tier
    ok: bool
    latency_ms: float = 0.0
    kind: FailureKind | None = None
    status: int | None = None
    message: str = ""
    probe: bool = False


class FallbackTriggered(Message, frozen=True, kw_only=True, tag="fallback_triggered"):
    """A request left ``from_provider`` for the next candidate (None: none left)."""

    request_id: str
    from_provider: str
    to_provider: str | None
    category: Category
    reason: str = ""


class DisableProvider(Message, frozen=True, kw_only=True, tag="disable_provider"):
    """Admin command: take a provider out of routing until enabled."""

    provider: str


class EnableProvider(Message, frozen=True, kw_only=True, tag="enable_provider"):
    """Admin command: put a disabled provider back into routing."""

    provider: str


class TimerFired(Message, frozen=True, kw_only=True, tag="timer_fired"):
    """An actor's timer fired at ``at`` (on the real clock, a little after its deadline).

    Logged for the actors whose timers decide (the RecoveryManager's cooldown
    ends and probe timeouts): replay delivers the Tick at this recorded time.
    """

    actor: str


class SupervisorStarted(Message, frozen=True, kw_only=True, tag="supervisor_started"):
    """A supervisor started; ``providers`` is the routing state it began with
    (restored from the state file). Replay starts fresh actors from it."""

    providers: tuple[ProviderView, ...]


# ---------------------------------------------------------------- decisions


class ErrorClassified(Message, frozen=True, kw_only=True, tag="error_classified"):
    """The classifier's verdict on one failure."""

    provider: str
    request_id: str
    category: Category
    severity: Severity
    recoverable: bool
    action: Action
    penalize: bool
    cooldown_s: float
    retry_after_s: float | None = None
    status: int | None = None
    message: str = ""
    suggested_action: str = ""
    #: The health-check tier that failed, for a verdict on a check (None: on a request attempt).
    check: Tier | None = None
    #: A 400 that may be the caller's or the provider's: the next provider decides (not logged).
    undecided: bool = False


class ProviderStateChanged(Message, frozen=True, kw_only=True, tag="provider_state_changed"):
    """A provider moved from ``old`` to ``new`` (``reason`` says why)."""

    provider: str
    old: ProviderState
    new: ProviderState
    reason: str  # for people: the logs, the timeline
    cooldown_until: float | None = None
    failure_count: int = 0
    cooldown_level: int = 0
    #: The failure category behind a move out of routing (None for any other move).
    cause: Category | None = None
    #: True when the move came from a half-open probe's answer.
    probe: bool = False
    #: When the current cooldown began (see ProviderView.cooldown_since).
    cooldown_since: float | None = None
    #: The instance whose shared change this move follows ("": decided here): not sent back to Redis.
    peer: str = ""


class ProbeRequested(Message, frozen=True, kw_only=True, tag="probe_requested"):
    """Recovery asks for one half-open probe of a provider."""

    provider: str
    reason: str = "cooldown_expired"
    #: The check to run: the cheapest that can prove recovery from the failure (None: the probe_tier).
    tier: Tier | None = None


class RestoreProvider(Message, frozen=True, kw_only=True, tag="restore_provider"):
    """Recovery tells the selector to put a provider back into routing."""

    provider: str
    reason: str = "probe_succeeded"


class ProviderRecovered(Message, frozen=True, kw_only=True, tag="provider_recovered"):
    """A provider is healthy again after ``downtime_s`` out of routing."""

    provider: str
    downtime_s: float


class StateSnapshot(Message, frozen=True, kw_only=True, tag="state_snapshot"):
    """Every provider's routing state at ``at``: the first line of an excerpt (``export --since``).

    Never logged by a live service: the exporter works it out by replaying the
    log up to a point where nothing was in flight between the actors, and
    replay starts from it exactly (a probe in flight stays in flight).
    """

    providers: tuple[ProviderView, ...]


class ActorRestarted(Message, frozen=True, kw_only=True, tag="actor_restarted"):
    """The supervisor restarted a crashed actor.

    ``lost`` is :func:`message_key` of the message the actor was handling when
    it crashed (that message had no effect): replay skips it for that actor.
    """

    actor: str
    error: str
    restarts: int
    lost: str | None = None


# ---------------------------------------------------------------- views


class RoutingSnapshot(Message, frozen=True, kw_only=True, tag="routing_snapshot"):
    """The selector's view of every provider, sorted by priority."""

    logged: ClassVar[bool] = False
    version: int
    providers: tuple[ProviderView, ...]
    #: Each multi-model provider's deployments (named ``provider/upstream``), in provider order.
    deployments: tuple[ProviderView, ...] = ()


class MetricsSnapshot(Message, frozen=True, kw_only=True, tag="metrics_snapshot"):
    """The metrics collector's aggregates, for /status and /metrics."""

    logged: ClassVar[bool] = False
    providers: dict[str, ProviderMetrics]
    recent_fallbacks: tuple[FallbackTriggered, ...]  # newest last, at most 50
    fallbacks_total: dict[str, int]  # "from->to" -> count, since the state file began
    fallbacks_last_24h: int
    recovery_times_s: tuple[float, ...]  # newest last, at most 1000
    #: "from->to" -> the failure category that caused it -> count, since this process started.
    fallbacks_by_category: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


class Tick(Message, frozen=True, kw_only=True, tag="tick"):
    """An actor's own timer fired."""

    logged: ClassVar[bool] = False


class Sync(Message, frozen=True, kw_only=True, tag="sync"):
    """A barrier: an actor that answers an ask of it has handled everything queued before it (not logged)."""

    logged: ClassVar[bool] = False


class CheckDue(Message, frozen=True, kw_only=True, tag="check_due"):
    """The health monitor asks the prober to run one check now (not logged: its result is)."""

    logged: ClassVar[bool] = False
    provider: str
    tier: Tier
    probe: bool = False


LoggedMessage = (
    AttemptSucceeded
    | AttemptFailed
    | HealthChecked
    | PrefillRefused
    | FallbackTriggered
    | DisableProvider
    | EnableProvider
    | ErrorClassified
    | ProviderStateChanged
    | ProbeRequested
    | RestoreProvider
    | ProviderRecovered
    | ActorRestarted
    | SupervisorStarted
    | TimerFired
    | StateSnapshot
    | PeerStateChanged
    | FailuresCounted
    | ProbeSkipped
)

INPUT_TYPES: tuple[type[Message], ...] = (
    AttemptSucceeded,
    AttemptFailed,
    HealthChecked,
    FallbackTriggered,
    DisableProvider,
    EnableProvider,
    SupervisorStarted,
    TimerFired,
    PeerStateChanged,
    FailuresCounted,
    ProbeSkipped,
)
DECISION_TYPES: tuple[type[Message], ...] = (
    ErrorClassified,
    ProviderStateChanged,
    ProbeRequested,
    RestoreProvider,
    ProviderRecovered,
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[LoggedMessage] = msgspec.json.Decoder(LoggedMessage)


def encode_message(message: Message) -> bytes:
    """The JSON form stored in the event log (tag included)."""
    return _encoder.encode(message)


def message_key(message: Message) -> str:
    """A short identity for one message: its tag, time and subject (provider, request)."""
    tag = type(message).__struct_config__.tag
    subject = getattr(message, "provider", None) or getattr(message, "version", "")
    return f"{tag}|{message.at!r}|{subject}|{getattr(message, 'request_id', '')}"


def decode_message(data: bytes | str) -> LoggedMessage:
    """Decode one stored message; raises ``msgspec.ValidationError`` naming the field."""
    return _decoder.decode(data)
