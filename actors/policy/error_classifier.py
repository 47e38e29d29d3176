"""ErrorClassifier: turns every failure into a decision.

Takes in: :class:`AttemptFailed` (a request attempt failed) and
:class:`HealthChecked` with ``ok=False`` and ``probe=False`` (a scheduled
health check failed).
Puts out: :class:`ErrorClassified` (category, severity, recoverable, action,
cooldown, suggested action).
Owns: the decision matrix (DESIGN.md), read from ``[routing]`` config.
Promises: :func:`classify` is pure and total: any failure, however odd,
gets a category; nothing an upstream sends can make it raise.

The request path calls :func:`classify` itself to decide at once whether to
retry, fall back or return the error (no actor round-trip on the request
path); the actor produces the same verdict as the logged decision that the
PrioritySelector acts on.
"""

from __future__ import annotations

import re
from typing import ClassVar, assert_never

import msgspec

from actors.core.actor import Actor
from actors.core.clock import Clock
from actors.core.config import RoutingConfig
from actors.core.deployments import MODEL_SCOPED
from actors.core.messages import AttemptFailed, ErrorClassified, HealthChecked, Message, Sync
from actors.core.states import Action, Category, Severity
from actors.policy.proxy_faults import proxy_fault

__all__ = ("ClassifierInbox", "ErrorClassifier", "classify")


_CONTEXT_MARKERS = (
    "context_length",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "reduce the length",
)


def _verdict(
    failure: AttemptFailed | HealthChecked,
    *,
    category: Category,
    severity: Severity,
    action: Action,
    cooldown_s: float,
    penalize: bool = True,
    recoverable: bool = True,
    suggested: str = "",
    retry_after: float | None = None,
    undecided: bool = False,
) -> ErrorClassified:
    return ErrorClassified(
        at=failure.at,
        provider=failure.provider,
        request_id=failure.request_id if isinstance(failure, AttemptFailed) else f"health-{failure.tier}",
        category=category,
        severity=severity,
        recoverable=recoverable,
        action=action,
        penalize=penalize,
        cooldown_s=cooldown_s,
        retry_after_s=retry_after,
        status=failure.status,
        message=failure.message[:500],
        suggested_action=suggested,
        check=None if isinstance(failure, AttemptFailed) else failure.tier,
        undecided=undecided,
    )


def _is_context_error(failure: AttemptFailed | HealthChecked) -> bool:
    code = failure.code if isinstance(failure, AttemptFailed) else None
    if code and "context" in code:
        return True
    text = failure.message.lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


#: A 400 message that starts with the request field it is about (Anthropic's ``max_tokens: ...``,
#: ``messages.0.content: ...``, Groq's ``'messages[1].role': ...``) names the caller's mistake.
_FIELD_FIRST = re.compile(r"^'?[a-z_]+(\[\d+\]|\.\d+)?(\.[a-z_]+(\[\d+\]|\.\d+)?)*'?: ")
#: Content-policy refusals: the caller's, returned with the provider's reason.
_POLICY_MARKERS = ("content_filter", "content_policy", "content management policy", "safety system")


def _callers_fault(failure: AttemptFailed) -> bool:
    """A 400 that is surely about the request: it names a field, or it is a content-policy refusal."""
    if failure.param:
        return True
    text = f"{failure.code or ''} {failure.message}".lower()
    return bool(_FIELD_FIRST.match(failure.message)) or any(m in text for m in _POLICY_MARKERS)


def classify(failure: AttemptFailed | HealthChecked, policy: RoutingConfig) -> ErrorClassified:
    """The decision matrix: what this failure means and what to do about it."""
    cd = policy.cooldown_s
    kind, status = failure.kind, failure.status
    attempt = failure.attempt if isinstance(failure, AttemptFailed) else 1
    retry_after = failure.retry_after_s if isinstance(failure, AttemptFailed) else None
    v = failure
    if kind == "connect":
        return _verdict(v, category="connection_error", severity="high", action="fallback",
                        cooldown_s=cd.connection_error, suggested="check the provider is running")
    if kind in ("timeout", "stream_stall") or status in (408, 504):
        return _verdict(v, category="timeout", severity="medium", action="fallback",
                        cooldown_s=cd.timeout, suggested="raise timeout_s if the model is slow")
    if kind == "bad_response":
        return _verdict(v, category="bad_response", severity="high", action="fallback",
                        cooldown_s=cd.bad_response, suggested="the provider sent garbage; check base_url")
    if kind == "stream_cut":
        return _verdict(v, category="stream_interrupted", severity="medium", action="fallback",
                        cooldown_s=cd.server_error)
    if status is None:  # an "http" failure always has a status; be total anyway
        return _verdict(v, category="unknown", severity="medium", action="fallback",
                        cooldown_s=cd.server_error)
    if status in (401, 403):
        return _verdict(v, category="auth_failure", severity="critical", action="fallback",
                        cooldown_s=cd.auth_failure, recoverable=False,
                        suggested="check the provider's API key variable")
    if status == 402:
        return _verdict(v, category="quota_exhausted", severity="critical", action="fallback",
                        cooldown_s=cd.auth_failure, suggested="add credits at the provider")
    # A short Retry-After on the provider the priority order prefers is worth waiting for, once:
    # the second 429 on it in one request falls over (a persistent 429 is never hammered).
    short = retry_after is not None and 0 < retry_after <= policy.retry_after_wait_s and attempt <= 1
    if status == 429:
        cooldown = retry_after if retry_after is not None and retry_after > 0 else cd.rate_limit
        return _verdict(v, category="rate_limit", severity="medium", action="retry" if short else "fallback",
                        cooldown_s=cooldown, retry_after=retry_after,
                        suggested="lower the request rate or add a provider")
    if status == 404:
        return _verdict(v, category="model_not_found", severity="high", action="fallback",
                        cooldown_s=cd.model_not_found, suggested="check the provider's models table")
    if status == 413 or (status in (400, 422) and _is_context_error(failure)):
        # The prompt is too large for this provider; another may take it. Not its fault.
        return _verdict(v, category="context_length", severity="low", action="next",
                        cooldown_s=0, penalize=False, suggested="shorten the prompt")
    if status in (400, 422):
        known = proxy_fault(failure.message)
        if known is not None:
            cooldown = {"auth_failure": cd.auth_failure, "model_not_found": cd.model_not_found}.get(
                known.category, cd.server_error)
            return _verdict(v, category=known.category, severity="high", action="fallback",
                            cooldown_s=cooldown, recoverable=known.category != "auth_failure",
                            suggested=f"the provider's proxy is broken: {known.source}")
        if isinstance(failure, HealthChecked):
            # A check is our own request: its 400 can't be the caller's fault.
            return _verdict(v, category="proxy_error", severity="high", action="fallback",
                            cooldown_s=cd.server_error, suggested="the provider refuses a minimal request")
        if failure.whose == "provider":
            # Inferred from one request, so counted (failure_threshold of them take it out), not
            # cooled at once: a provider stricter about an argument than the next is not broken.
            return _verdict(v, category="proxy_error", severity="medium", action="fallback", cooldown_s=0,
                            suggested="the next provider answered the same request: check this one")
        if failure.whose == "caller" or _callers_fault(failure):
            return _verdict(v, category="invalid_request", severity="low", action="return",
                            cooldown_s=0, penalize=False, suggested="fix the request")
        # Unclear: the next provider decides (it answers: this one's fault; it refuses too: the caller's).
        return _verdict(v, category="invalid_request", severity="low", action="next", cooldown_s=0,
                        penalize=False, undecided=True, suggested="the next provider decides")
    if status in (500, 502):
        if attempt <= policy.server_error_retries:
            return _verdict(v, category="server_error", severity="medium", action="retry",
                            cooldown_s=0)
        return _verdict(v, category="server_error", severity="high", action="fallback",
                        cooldown_s=cd.server_error)
    if status in (503, 529):
        if short:  # overloaded for a moment, as it says: like a short 429
            assert retry_after is not None
            return _verdict(v, category="service_unavailable", severity="medium", action="retry",
                            cooldown_s=retry_after, retry_after=retry_after)
        return _verdict(v, category="service_unavailable", severity="high", action="fallback",
                        cooldown_s=cd.service_unavailable, retry_after=retry_after)
    if status >= 500:
        return _verdict(v, category="server_error", severity="high", action="fallback",
                        cooldown_s=cd.server_error)
    if 200 <= status < 300:
        return _verdict(v, category="bad_response", severity="high", action="fallback",
                        cooldown_s=cd.bad_response)
    # Other 4xx (405, 409, 410...): a provider or base_url problem, not the caller's.
    return _verdict(v, category="client_error", severity="high", action="fallback",
                    cooldown_s=cd.server_error, suggested="check the provider's base_url")


ClassifierInbox = AttemptFailed | HealthChecked | Sync


class ErrorClassifier(Actor[ClassifierInbox]):
    """Classifies every failure; the selector acts on the verdicts."""

    name: ClassVar[str] = "error_classifier"
    accepts: ClassVar[tuple[type[Message], ...]] = Actor.inbox_types(ClassifierInbox)

    def __init__(self, policy: RoutingConfig, *, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.policy = policy

    def handle(self, message: ClassifierInbox, now: float) -> list[Message]:
        match message:
            case AttemptFailed():
                verdict = classify(message, self.policy)
                if message.deployment and verdict.category in MODEL_SCOPED:
                    # One model's fault: its deployment's record, not the whole provider's.
                    verdict = msgspec.structs.replace(verdict, provider=message.deployment)
                return [verdict]
            case HealthChecked():
                if message.ok or message.probe:
                    return []  # a probe's failure is the selector's to judge, with the probe
                if message.tier == "ping" and message.kind not in ("connect", "timeout"):
                    # A ping only proves reachability: an HTTP error status on the ping
                    # path (404 on /health, say) says nothing about serving requests.
                    return []
                return [classify(message, self.policy)]
            case Sync():
                return []
            case _:
                assert_never(message)
