"""The shape of the configuration: one frozen msgspec Struct per section, unknown keys refused.

:mod:`actors.core.config` reads TOML and the environment into these and checks
them; every other module takes them as they are. Defaults here are the
defaults of ``config.toml``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from actors.core.states import Tier

__all__ = ("Config", "CooldownConfig", "HealthConfig", "LoggingConfig", "MetricsConfig", "ModelLimits",
           "NonNegative", "Positive", "PositiveInt", "ProviderConfig", "RoutingConfig", "Secret",
           "ServerConfig", "StateConfig", "TelemetryConfig")

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class Secret:
    """A secret value (API key, token) that never shows itself in logs or reprs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerConfig(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    admin_token_env: str = "FALLBACK_ADMIN_TOKEN"
    client_keys_env: str = "FALLBACK_CLIENT_KEYS"
    max_body_bytes: PositiveInt = 10_000_000
    shutdown_grace_s: NonNegative = 10.0
    admin_token: Secret | None = None  # resolved from admin_token_env, never from TOML
    client_keys: tuple[Secret, ...] = ()  # resolved from client_keys_env


class StateConfig(_Section, frozen=True, kw_only=True):
    path: str = "state/fallback.db"
    flush_interval_s: Positive = 0.25  # event-log batching: at most this late on disk
    events_retention_days: Positive = 30  # the event log keeps this long ...
    events_max_mb: Positive = 1000  # ... and at most this much event data (oldest go first)
    #: Provider state shared by several instances through Redis (issue 15): "" keeps it local.
    #: redis://host:port/db, rediss:// (TLS) or unix:///path; never a password in it.
    shared_url: str = ""
    shared_password_env: str = ""  # the variable holding Redis's password ("": none)
    shared_prefix: str = "provider-fallback"  # every key and the channel start with it
    shared_timeout_s: Positive = 0.25  # each Redis call: slower counts as Redis down
    shared_reconcile_s: Positive = 5  # a full read this often catches missed messages
    shared_failure_window_s: Positive = 60  # failures counted for failure_threshold, cluster-wide
    shared_headroom_s: Positive = 0.5  # rpm / tpm usage synced this often (peers' counts: 2x this stale)
    shared_password: Secret | None = None  # resolved from shared_password_env, never from TOML


class CooldownConfig(_Section, frozen=True, kw_only=True):
    connection_error: NonNegative = 300
    auth_failure: NonNegative = 1800
    rate_limit: NonNegative = 60
    model_not_found: NonNegative = 600
    server_error: NonNegative = 300
    timeout: NonNegative = 120
    service_unavailable: NonNegative = 600
    bad_response: NonNegative = 120


class RoutingConfig(_Section, frozen=True, kw_only=True):
    default_model: str = "chat"
    max_attempts: PositiveInt = 8  # two passes over three providers, with a retry or two
    request_deadline_s: Positive = 120
    failure_threshold: PositiveInt = 3
    max_cooldown_s: Positive = 3600
    cooldown_growth: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    stable_period_s: NonNegative = 600
    server_error_retries: Annotated[int, msgspec.Meta(ge=0)] = 1
    rate_limit_max_wait_s: NonNegative = 10
    retry_after_wait_s: NonNegative = 3  # a 429/503 asking for <= this: wait, retry the same provider
    stream_idle_timeout_s: Positive = 10
    #: Every candidate failed transiently and the deadline has room: one more pass in priority
    #: order after a jittered wait of up to this long (from half of it); 0 turns the pass off.
    second_pass_backoff_s: NonNegative = 1.0
    last_resort: bool = True
    #: The rollback switch: false sends every request to the highest-priority usable provider only
    #: (retries of that provider still happen, nothing falls over to another), as a single-provider
    #: setup does. Per request, ``x-fallback: off`` does the same.
    fallback: bool = True
    #: Read rate-limit headers (x-ratelimit-*, anthropic-ratelimit-*) and skip a deployment they say
    #: is out of requests or tokens until their reset, before it answers 429.
    rate_limit_headers: bool = True
    cooldown_s: CooldownConfig = CooldownConfig()


class HealthConfig(_Section, frozen=True, kw_only=True):
    ping_interval_s: NonNegative = 30
    ping_timeout_s: Positive = 5
    full_interval_s: NonNegative = 60
    full_timeout_s: Positive = 10
    api_interval_s: NonNegative = 300
    api_timeout_s: Positive = 15
    probe_tier: Tier = "api"  # the check for a failure with no cheaper proof of recovery
    probe_min_interval_s: NonNegative = 5  # re-check one out of routing this soon, then x2 (0: at the end)
    probe_max_interval_s: NonNegative = 10  # ... the x2 spacing stops growing here (0: up to the end)
    history: PositiveInt = 100  # the last health checks a provider's reliability score is over

    def timeout_of(self, tier: Tier) -> float:
        """How long a check of ``tier`` may take."""
        return {"ping": self.ping_timeout_s, "full": self.full_timeout_s, "api": self.api_timeout_s}[tier]


class MetricsConfig(_Section, frozen=True, kw_only=True):
    latency_window: PositiveInt = 1000
    retention_days: Positive = 30
    persist_interval_s: Positive = 60  # how often provider_metrics.json ([logging]) is rewritten


class LoggingConfig(_Section, frozen=True, kw_only=True):
    """The original skill's log directory (actors.runtime.fallback_log): fallback_events.jsonl and
    provider_metrics.json. "" writes neither. The shipped config.toml sets it to
    ``${FALLBACK_LOG_DIR:-./logs}``; a Config built in code writes no log files unless it says where.
    """

    fallback_log_dir: str = ""
    max_file_mb: Positive = 10  # fallback_events.jsonl is rotated once it would grow past this ...
    backups: Annotated[int, msgspec.Meta(ge=0)] = 5  # ... keeping this many: .1 (newest) to .N


class TelemetryConfig(_Section, frozen=True, kw_only=True):
    """OpenTelemetry (actors.runtime.telemetry, extra ``[otel]``): off unless ``otel = true``. The spans
    and metrics go to the global OpenTelemetry providers, which the application (or
    ``opentelemetry-instrument``) configures."""

    otel: bool = False


class ModelLimits(_Section, frozen=True, kw_only=True, omit_defaults=True):
    """What one provider's model can do, from the table form of ``models``; None: not stated."""

    max_input_tokens: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None
    tool_calling: bool | None = None
    rpm: PositiveInt | None = None  # requests per minute this model takes here (enforced locally)
    tpm: PositiveInt | None = None  # tokens per minute (estimated: actors.runtime.admission)


class ProviderConfig(_Section, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    base_url: str = ""  # required, except for vertex: derived from project and location
    models: dict[str, str]  # logical -> upstream model id (the table form's `model`)
    #: logical -> what the table form ``models = { chat = { model = "...", max_input_tokens = ... } }``
    #: states besides the id (config.py splits it out); exported configs write it under this key.
    model_limits: dict[str, ModelLimits] = {}
    kind: Literal["openai", "anthropic", "azure", "vertex", "snowflake"] = "openai"
    api_key_env: str = ""
    priority: int = 100
    timeout_s: Positive = 60
    first_token_timeout_s: Positive = 10  # no token by then: fall over (nothing reached the caller yet)
    #: How a stream broken mid-answer goes on here: true sends the text so far as a trailing
    #: assistant message (prefill) and streams the rest; false restarts and splices; "auto" is
    #: true for kinds whose API defines prefill (anthropic) until a model refuses it with a 400.
    prefill: bool | Literal["auto"] = "auto"
    health_path: str = "/models"
    headers: dict[str, str] = {}
    api_version: str = "2024-10-21"  # azure only
    #: vertex only: the Google Cloud project and location (a region, or "global") of the endpoint,
    #: and a credentials JSON file (a service account's key); "": application default credentials.
    project: str = ""
    location: str = ""
    credentials_file: str = ""
    #: snowflake only, key-pair auth instead of a PAT in api_key_env: the user, the account
    #: identifier, the PKCS#8 PEM private key file and the variable holding its passphrase (if any).
    user: str = ""
    account: str = ""
    private_key_file: str = ""
    private_key_passphrase_env: str = ""
    enabled: bool = True
    rpm: PositiveInt | None = None  # each of its models' requests per minute, unless its table says
    tpm: PositiveInt | None = None  # each of its models' tokens per minute, unless its table says
    api_key: Secret | None = None  # resolved from api_key_env, never from TOML
    private_key_passphrase: Secret | None = None  # resolved from private_key_passphrase_env, likewise

    @property
    def configured(self) -> bool:
        """False when its key variable is named but unset: it is never called."""
        return not self.api_key_env or self.api_key is not None


class Config(_Section, frozen=True, kw_only=True):
    providers: tuple[ProviderConfig, ...]
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    routing: RoutingConfig = RoutingConfig()
    health: HealthConfig = HealthConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    source: str = "<config>"  # where it came from, for messages

    def models(self) -> list[str]:
        """Every logical model some provider serves."""
        return sorted({m for p in self.providers for m in p.models})

    def provider(self, name: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)
