"""Typed configuration.

:func:`load_config` is the only place that reads TOML and the environment:
it interpolates ``${VAR}`` / ``${VAR:-default}`` in strings, converts the
result into frozen msgspec Structs (unknown keys are errors), checks the
values, and resolves secrets from the environment into :class:`Secret`
objects that never print their value. The library itself takes a
:class:`Config` object.

Every error is a :class:`~actors.errors.ConfigError` naming the file, the key
path (``providers[1] (kilocode).priority``) and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from actors.core.errors import ConfigError
from actors.core.states import Tier

__all__ = (
    "Config",
    "CooldownConfig",
    "HealthConfig",
    "MetricsConfig",
    "ProviderConfig",
    "RoutingConfig",
    "Secret",
    "ServerConfig",
    "StateConfig",
    "load_config",
    "parse_config",
)

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
    max_attempts: PositiveInt = 4
    request_deadline_s: Positive = 120
    failure_threshold: PositiveInt = 3
    max_cooldown_s: Positive = 3600
    cooldown_growth: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    stable_period_s: NonNegative = 600
    server_error_retries: Annotated[int, msgspec.Meta(ge=0)] = 1
    rate_limit_max_wait_s: NonNegative = 10
    stream_idle_timeout_s: Positive = 30
    last_resort: bool = True
    cooldown_s: CooldownConfig = CooldownConfig()


class HealthConfig(_Section, frozen=True, kw_only=True):
    ping_interval_s: NonNegative = 30
    ping_timeout_s: Positive = 5
    full_interval_s: NonNegative = 60
    full_timeout_s: Positive = 10
    api_interval_s: NonNegative = 300
    api_timeout_s: Positive = 15
    probe_tier: Tier = "api"

    def timeout_of(self, tier: Tier) -> float:
        """How long a check of ``tier`` may take."""
        return {"ping": self.ping_timeout_s, "full": self.full_timeout_s, "api": self.api_timeout_s}[tier]


class MetricsConfig(_Section, frozen=True, kw_only=True):
    latency_window: PositiveInt = 1000
    retention_days: Positive = 30


class ProviderConfig(_Section, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    base_url: str
    models: dict[str, str]
    kind: Literal["openai", "anthropic", "azure"] = "openai"
    api_key_env: str = ""
    priority: int = 100
    timeout_s: Positive = 60
    health_path: str = "/models"
    headers: dict[str, str] = {}
    api_version: str = "2024-10-21"  # azure only
    enabled: bool = True
    api_key: Secret | None = None  # resolved from api_key_env, never from TOML

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
    source: str = "<config>"  # where it came from, for messages

    def models(self) -> list[str]:
        """Every logical model some provider serves."""
        return sorted({m for p in self.providers for m in p.models})

    def provider(self, name: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_PROVIDER_SECRETS = {"api_key"}
_SERVER_SECRETS = {"admin_token", "client_keys"}
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _interpolate(
    value: Any, env: Mapping[str, str], where: str, source: str, root: Mapping[str, Any]
) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            got = env.get(name)
            if got:
                return got
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set and has no default "
                f"(write ${{{name}:-default}})",
                path=source,
                key=_key_path(f"$.{where}", root),
            )

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, f"{where}.{k}" if where else k, source, root)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, env, f"{where}[{i}]", source, root) for i, v in enumerate(value)]
    return value


def _key_path(path: str, raw: Mapping[str, Any]) -> str:
    """``$.providers[1].priority`` -> ``providers[1] (kilocode).priority``."""
    key = path.removeprefix("$").lstrip(".")
    match = re.match(r"providers\[(\d+)\]", key)
    providers = raw.get("providers")
    if match and isinstance(providers, list):
        index = int(match.group(1))
        if index < len(providers) and isinstance(providers[index], dict):
            name = providers[index].get("name")
            if isinstance(name, str):
                key = key.replace(match.group(0), f"{match.group(0)} ({name})", 1)
    return key or "(top level)"


def _walk(path: str) -> list[str | int]:
    """``$.providers[1].kind`` -> ``["providers", 1, "kind"]``."""
    return [name if name else int(index) for name, index in _SEGMENT.findall(path)]


def _value_at(data: Any, path: str) -> Any:
    """The raw value at a msgspec error path, or ``None`` when it can't be found."""
    for step in _walk(path):
        if isinstance(step, int) and isinstance(data, list) and step < len(data):
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict) and step in data:
            data = data[step]
        else:
            return None
    return data


def _choices(path: str) -> tuple[Any, ...]:
    """The allowed values of the ``Literal`` field at a msgspec error path, if it is one."""
    info: Any = msgspec.inspect.type_info(Config)
    for step in _walk(path):
        if isinstance(step, int):
            info = getattr(info, "item_type", None)
        else:
            fields = getattr(info, "fields", ())
            info = next((f.type for f in fields if f.encode_name == step), None)
        if info is None:
            return ()
    return tuple(getattr(info, "values", ()))


def _explain(message: str, path: str, data: Mapping[str, Any]) -> str:
    """Turn a msgspec validation message into "expected ..., got ..."."""
    value = _value_at(data, path)
    if message.startswith("Invalid enum value"):
        allowed = ", ".join(repr(v) for v in _choices(path))
        return f"expected one of {allowed}, got {value!r}" if allowed else message
    if path == "$.providers" and isinstance(value, dict):
        return "expected an array of tables: write [[providers]] (double brackets) per provider"
    message = message[:1].lower() + message[1:]
    if "got" not in message and isinstance(value, str | int | float | bool):
        message = f"{message}, got {value!r}"
    return message


def _check(config: Config, source: str) -> None:
    def fail(key: str, message: str) -> None:
        raise ConfigError(message, path=source, key=key)

    if not config.providers:
        fail("providers", "expected at least one [[providers]] table")
    seen: set[str] = set()
    for i, p in enumerate(config.providers):
        key = f"providers[{i}] ({p.name})"
        if p.name in seen:
            fail(f"{key}.name", f"duplicate provider name {p.name!r}: names must be unique")
        seen.add(p.name)
        if not re.match(r"^https?://[^/\s]+", p.base_url):
            fail(f"{key}.base_url", f"expected an http:// or https:// URL, got {p.base_url!r}")
        if not p.models:
            fail(f"{key}.models", 'expected at least one logical model, e.g. { chat = "model-id" }')
        for logical, upstream in p.models.items():
            if not logical or not upstream:
                fail(f"{key}.models", "logical and upstream model names must be non-empty")
        if p.api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", p.api_key_env):
            fail(
                f"{key}.api_key_env",
                f"expected an environment variable name, got {p.api_key_env!r}",
            )
        if p.health_path and not p.health_path.startswith("/"):
            fail(f"{key}.health_path", f"expected a path starting with '/', got {p.health_path!r}")
    if config.routing.default_model not in config.models():
        fail(
            "routing.default_model",
            f"{config.routing.default_model!r} is served by no provider "
            f"(models: {', '.join(config.models())})",
        )


def _resolve_secrets(config: Config, env: Mapping[str, str]) -> Config:
    providers = tuple(
        msgspec.structs.replace(p, api_key=Secret(env[p.api_key_env]))
        if p.api_key_env and env.get(p.api_key_env)
        else p
        for p in config.providers
    )
    server = config.server
    token = env.get(server.admin_token_env) if server.admin_token_env else None
    keys = env.get(server.client_keys_env, "") if server.client_keys_env else ""
    server = msgspec.structs.replace(
        server,
        admin_token=Secret(token) if token else None,
        client_keys=tuple(Secret(k.strip()) for k in keys.split(",") if k.strip()),
    )
    return msgspec.structs.replace(config, providers=providers, server=server)


def parse_config(
    raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Build a :class:`Config` from already-parsed TOML data (a dict)."""
    env = os.environ if env is None else env
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a table at the top level", path=source)
    providers = raw.get("providers")
    for i, p in enumerate(providers if isinstance(providers, list) else []):
        if isinstance(p, dict):
            for secret in sorted(_PROVIDER_SECRETS & p.keys()):
                raise ConfigError(
                    "secrets are never read from the config file: write api_key_env = "
                    '"SOME_VARIABLE" and put the key in that environment variable',
                    path=source,
                    key=_key_path(f"$.providers[{i}].{secret}", raw),
                )
    server = raw.get("server")
    if isinstance(server, dict):
        for secret in sorted(_SERVER_SECRETS & server.keys()):
            raise ConfigError(
                "secrets are never read from the config file: set admin_token_env / "
                "client_keys_env to the name of an environment variable",
                path=source,
                key=f"server.{secret}",
            )
    data = _interpolate(dict(raw), env, "", source, raw)
    if "source" in data:
        raise ConfigError("unknown key", path=source, key="source")
    data["source"] = source
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = re.match(r"(.*) - at `(\$[^`]*)`$", text)
        message, path = (match.group(1), match.group(2)) if match else (text, "$")
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            key = _key_path(f"{path}.{unknown.group(1)}", data)
            raise ConfigError(
                "unknown key (check the spelling against README's config reference)",
                path=source,
                key=key,
            ) from None
        missing = re.match(r"Object missing required field `(.+)`", message)
        if missing:
            key = _key_path(f"{path}.{missing.group(1)}", data)
            expected = (
                "expected at least one [[providers]] table"
                if key == "providers"
                else "required key is missing"
            )
            raise ConfigError(expected, path=source, key=key) from None
        raise ConfigError(
            _explain(message, path, data), path=source, key=_key_path(path, data)
        ) from None
    _check(config, source)
    return _resolve_secrets(config, env)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML file into a :class:`Config`; every problem is a ``ConfigError``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=source) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from None
    return parse_config(raw, env=env, source=source)
