"""The exception hierarchy.

::

    FallbackError                      base of everything raised here
    ├── ConfigError (ValueError)       the configuration is wrong: file, key path, expectation
    ├── InvalidRequestError (ValueError)
    │                                  the caller's request is malformed (names the field)
    ├── UnknownModelError (LookupError)
    │                                  no provider serves that logical model
    ├── UnknownProviderError (LookupError)
    │                                  an admin command named a provider not in the config
    ├── StoreError                     the SQLite state file can't be used (names the path)
    ├── EventLogError (ValueError)     an exported event log can't be read: names the file,
    │                                  the line and what is wrong with it
    ├── SupervisorClosedError          the supervisor is stopping or stopped ("you closed it")
    ├── GatewayError                   (actors.gateway) the service can't listen: names the fix
    ├── UpstreamRejectedError          a provider refused the request itself (400): returned
    │                                  to the caller, no provider is penalised
    ├── AllProvidersFailedError        no provider could answer; ``attempts`` lists each try
    └── StreamInterruptedError         a stream failed after its first chunk reached the
                                       caller and no provider could go on with it; carries
                                       the partial text, the provider and why

Between actors a failure travels as data (:class:`~actors.messages.AttemptFailed`),
never as an exception. These exceptions are for callers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = (
    "AllProvidersFailedError",
    "Attempt",
    "ConfigError",
    "EventLogError",
    "FallbackError",
    "InvalidRequestError",
    "StoreError",
    "StreamInterruptedError",
    "SupervisorClosedError",
    "UnknownModelError",
    "UnknownProviderError",
    "UpstreamRejectedError",
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one provider, as reported to the caller."""

    provider: str
    status: int | None
    category: str
    message: str
    latency_ms: float = 0.0

    def describe(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP status"
        return f"{self.provider}: {self.category} ({status}): {self.message}"


class FallbackError(Exception):
    """Base class of every error raised by provider-fallback."""


class ConfigError(FallbackError, ValueError):
    """Raised by :func:`~actors.config.load_config` when the configuration is wrong.

    The message names the file, the key path and what was expected.
    """

    def __init__(self, message: str, *, path: str = "", key: str = "") -> None:
        self.path = path
        self.key = key
        prefix = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class InvalidRequestError(FallbackError, ValueError):
    """Raised when the caller's request is malformed; ``param`` names the field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class UnknownModelError(FallbackError, LookupError):
    """Raised when no configured provider serves the requested logical model."""

    def __init__(self, model: str, known: list[str]) -> None:
        self.model = model
        self.known = known
        super().__init__(
            f"unknown model {model!r}: configured models are {', '.join(sorted(known)) or 'none'}"
        )


class UnknownProviderError(FallbackError, LookupError):
    """Raised when an admin command names a provider that is not configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"unknown provider {name!r}: configured are {', '.join(known)}")


class StoreError(FallbackError):
    """Raised when the SQLite state file is corrupt, read-only, locked or unreachable."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(f"state file {path}: {message}")


class EventLogError(FallbackError, ValueError):
    """Raised by :mod:`actors.replay` when a log is truncated, corrupt, or from a
    schema version that can't be migrated. ``line`` is 1-based (0: the whole file)."""

    def __init__(self, message: str, *, path: str, line: int = 0) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}, line {line}: {message}" if line else f"{path}: {message}")


class SupervisorClosedError(FallbackError):
    """Raised when a request reaches a supervisor that is stopping or stopped."""


class UpstreamRejectedError(FallbackError):
    """Raised when a provider rejects the request itself (HTTP 400 invalid request).

    The request would fail at any provider, so it is returned to the caller and
    no provider is penalised.
    """

    def __init__(self, provider: str, status: int, message: str, body: bytes = b"") -> None:
        self.provider = provider
        self.status = status
        self.body = body
        super().__init__(f"{provider} rejected the request (HTTP {status}): {message}")


class AllProvidersFailedError(FallbackError):
    """Raised when no provider could answer; ``attempts`` lists every try in order."""

    def __init__(self, model: str, attempts: list[Attempt], reason: str = "") -> None:
        self.model = model
        self.attempts = attempts
        self.reason = reason
        tried = "; ".join(a.describe() for a in attempts) or "no attempt was made"
        extra = f" ({reason})" if reason else ""
        super().__init__(f"all providers failed for model {model!r}{extra}: {tried}")


class StreamInterruptedError(FallbackError):
    """Raised when a stream fails after its first chunk reached the caller and cannot go on.

    The request path first continues the answer from the next provider (a
    prefill, or a restart spliced onto what was sent). This is raised when
    that is not possible (``reason`` says why: the partial answer holds tool
    calls, the restart said something else, no provider was left): the
    caller gets the partial text, never a silent truncation.
    """

    def __init__(self, provider: str, partial_text: str, attempt: Attempt, attempts: int,
                 reason: str = "") -> None:
        self.provider = provider
        self.partial_text = partial_text
        self.attempt = attempt
        self.attempts = attempts
        self.reason = reason
        why = f"; {reason}" if reason else ""
        super().__init__(
            f"stream from {provider} failed after {len(partial_text)} characters: "
            f"{attempt.category}: {attempt.message}{why}"
        )
