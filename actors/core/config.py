"""Typed configuration.

:func:`load_config` is the only place that reads TOML and the environment:
it interpolates ``${VAR}`` / ``${VAR:-default}`` in strings
(:mod:`actors.core.interpolation`; a string that is one reference may set a
number or boolean key), converts the result into frozen msgspec Structs
(unknown keys are errors), checks the values (URLs fully parsed, header names
and values usable on the wire), and resolves secrets from the environment into
:class:`Secret` objects that never print their value. The library itself
takes a :class:`Config` object. ``check`` and ``serve`` both load through
here, so a config ``check`` accepts starts.

Every error is a :class:`~actors.errors.ConfigError` naming the file, the key
path (``providers[1] (kilocode).priority``) and what was expected. No message
or log line shows the value of a variable named by ``api_key_env``,
``admin_token_env``, ``client_keys_env`` or ``shared_password_env``.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.core.config_schema import (
    Config,
    CooldownConfig,
    HealthConfig,
    MetricsConfig,
    ModelLimits,
    ProviderConfig,
    RoutingConfig,
    Secret,
    ServerConfig,
    StateConfig,
)
from actors.core.errors import ConfigError
from actors.core.interpolation import Interpolated, InterpolationError, dotted, interpolate, redact, retype
from actors.core.provider_kinds import kind_problems, with_derived_url
from actors.core.shared_urls import shared_url_problem

__all__ = ("Config", "CooldownConfig", "HealthConfig", "MetricsConfig", "ModelLimits", "ProviderConfig",
           "RoutingConfig", "Secret", "ServerConfig", "StateConfig", "load_config", "parse_config")

# The sections live in config_schema (the shape); this module reads and checks them.

_PROVIDER_SECRETS = {"api_key", "private_key_passphrase"}
_SERVER_SECRETS = {"admin_token", "client_keys"}
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_HOST = re.compile(r"[\w.-]+")  # a DNS name (IDN letters too) or an IPv4 address
_TYPES = {msgspec.inspect.IntType: int, msgspec.inspect.FloatType: float, msgspec.inspect.BoolType: bool}
_log = logging.getLogger("actors.config")


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


def _type_at(steps: Sequence[str | int]) -> Any:
    """The msgspec type info of the key at ``steps`` in a Config, or ``None`` where it has none."""
    if len(steps) == 5 and steps[0] == "providers" and steps[2] == "models":
        steps = [*steps[:2], "model_limits", *steps[3:]]  # a key of the table form: ModelLimits'
    info: Any = msgspec.inspect.type_info(Config)
    for step in steps:
        if isinstance(step, int):
            info = getattr(info, "item_type", None)
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            fields = getattr(info, "fields", ())
            info = next((f.type for f in fields if f.encode_name == step), None)
        if info is None:
            return None
    if isinstance(info, msgspec.inspect.UnionType):  # `int | None`: the type a value would take
        kinds = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        info = kinds[0] if len(kinds) == 1 else info
    return info


def _explain(message: str, path: str, data: Mapping[str, Any]) -> str:
    """Turn a msgspec validation message into "expected ..., got ..."."""
    value = _value_at(data, path)
    if message.startswith("Invalid enum value"):
        allowed = ", ".join(repr(v) for v in getattr(_type_at(_walk(path)), "values", ()))
        return f"expected one of {allowed}, got {value!r}" if allowed else message
    if path == "$.providers" and isinstance(value, dict):
        return "expected an array of tables: write [[providers]] (double brackets) per provider"
    message = message[:1].lower() + message[1:]
    if "got" not in message and isinstance(value, str | int | float | bool):
        message = f"{message}, got {value!r}"
    return message


def _url_problem(url: str) -> str | None:
    """What is wrong with a provider's base_url (credentials masked), or None."""
    shown = re.sub(r"//[^/@]*@", "//***@", url)
    if _CONTROL.search(url) or " " in url:
        return f"expected a URL without spaces or control characters, got {shown!r}"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"expected a valid URL ({exc}), got {shown!r}"
    if parts.scheme not in ("http", "https") or not url.lower().startswith(f"{parts.scheme}://"):
        return f"expected an http:// or https:// URL, got {shown!r}"
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):  # an IPv6 address; urlsplit checked it
        host, _, port = netloc[1:].partition("]")
        host, port = f"[{host}]", port.removeprefix(":")
    else:
        host, _, port = netloc.partition(":")
        if host and not _HOST.fullmatch(host):
            return f"expected a host name or address, got {host!r} in {shown!r}"
    if not host:
        return f"expected a host after {parts.scheme}://, got {shown!r}"
    if port and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        return f"expected a port from 1 to 65535, got {port!r} in {shown!r}"
    if "?" in url or "#" in url:
        return f"expected no ?query or #fragment (request paths are appended to it), got {shown!r}"
    return None


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
        for field, why in kind_problems(p):
            fail(f"{key}.{field}", why)
        if problem := _url_problem(p.base_url):
            fail(f"{key}.base_url", problem)
        for header, value in p.headers.items():
            if not _TOKEN.fullmatch(header):
                fail(f"{key}.headers", "expected a header name of letters, digits and "
                     f"!#$%&'*+-.^_`|~, got {header!r}")
            if bad := _CONTROL.search(value):
                fail(f"{key}.headers.{header}", f"a header value can't hold a control character: "
                     f"{bad.group()!r} at position {bad.start()} (the value is not shown)")
        if not p.models:
            fail(f"{key}.models", 'expected at least one logical model, e.g. { chat = "model-id" }')
        for logical, upstream in p.models.items():
            if not logical or not upstream:
                fail(f"{key}.models", "logical and upstream model names must be non-empty")
        for logical in p.model_limits.keys() - p.models.keys():
            fail(f"{key}.model_limits.{logical}", f"{logical!r} is not one of this provider's models "
                 f"({', '.join(p.models)})")
        if p.api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", p.api_key_env):
            fail(f"{key}.api_key_env", f"expected an environment variable name, got {p.api_key_env!r}")
        if p.health_path and not p.health_path.startswith("/"):
            fail(f"{key}.health_path", f"expected a path starting with '/', got {p.health_path!r}")
    state = config.state
    if url_problem := shared_url_problem(state.shared_url):
        fail("state.shared_url", url_problem)
    if state.shared_password_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", state.shared_password_env):
        fail("state.shared_password_env", f"expected an environment variable name, got "
             f"{state.shared_password_env!r}")
    if not state.shared_prefix or _CONTROL.search(state.shared_prefix) or " " in state.shared_prefix:
        fail("state.shared_prefix", f"expected a non-empty key prefix without spaces, "
             f"got {state.shared_prefix!r}")
    if config.routing.default_model not in config.models():
        fail("routing.default_model", f"{config.routing.default_model!r} is served by no provider "
             f"(models: {', '.join(config.models())})")


def _resolve_secrets(config: Config, env: Mapping[str, str]) -> Config:
    providers = tuple(msgspec.structs.replace(p, api_key=Secret(env[p.api_key_env]))
                      if p.api_key_env and env.get(p.api_key_env) else p for p in config.providers)
    providers = tuple(msgspec.structs.replace(p, private_key_passphrase=Secret(phrase))
                      if p.private_key_passphrase_env and (phrase := env.get(p.private_key_passphrase_env))
                      else p for p in providers)
    server = config.server
    token = env.get(server.admin_token_env) if server.admin_token_env else None
    keys = env.get(server.client_keys_env, "") if server.client_keys_env else ""
    server = msgspec.structs.replace(
        server,
        admin_token=Secret(token) if token else None,
        client_keys=tuple(Secret(k.strip()) for k in keys.split(",") if k.strip()),
    )
    password = env.get(config.state.shared_password_env) if config.state.shared_password_env else None
    state = msgspec.structs.replace(config.state, shared_password=Secret(password) if password else None)
    return msgspec.structs.replace(config, providers=providers, server=server, state=state)


def parse_config(
    raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Build a :class:`Config` from already-parsed TOML data (a dict)."""
    return _parse(raw, os.environ if env is None else env, source)[0]


def _parse(raw: Mapping[str, Any], env: Mapping[str, str], source: str) -> tuple[Config, list[str]]:
    """The config and its warnings; no secret substituted into the data shows in either."""
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a table at the top level", path=source)
    providers, server = raw.get("providers"), raw.get("server")
    for i, p in enumerate(providers if isinstance(providers, list) else []):
        for secret in sorted(_PROVIDER_SECRETS & p.keys()) if isinstance(p, dict) else ():
            raise ConfigError(f'secrets are never read from the config file: write {secret}_env = '
                              '"SOME_VARIABLE" and put the value in that environment variable',
                              path=source, key=_key_path(f"$.providers[{i}].{secret}", raw))
    for secret in sorted(_SERVER_SECRETS & server.keys()) if isinstance(server, dict) else ():
        raise ConfigError("secrets are never read from the config file: set admin_token_env / "
                          "client_keys_env to the name of an environment variable",
                          path=source, key=f"server.{secret}")
    if isinstance(state := raw.get("state"), dict) and "shared_password" in state:
        raise ConfigError("secrets are never read from the config file: set shared_password_env to the "
                          "name of an environment variable", path=source, key="state.shared_password")
    hidden: set[str] = set()
    try:
        found = interpolate(dict(raw), env)
        hidden = _hidden(found)
        retype(found, lambda where: _TYPES.get(type(_type_at(where))))
        config = _convert(found.data, source)
        _check(config, source)
    except InterpolationError as exc:
        key = _key_path(f"$.{dotted(exc.where)}", raw)
        raise redact(ConfigError(exc.message, path=source, key=key), hidden) from None
    except ConfigError as exc:
        raise redact(exc, hidden) from None
    warnings = [str(redact(ConfigError(text, path=source, key=key), hidden))
                for key, text in _clashes(config)]
    return _resolve_secrets(config, env), warnings


def _hidden(found: Interpolated) -> set[str]:
    """The values substituted from variables named by api_key_env, admin_token_env, client_keys_env."""
    server, providers = found.data.get("server"), found.data.get("providers")
    server = server if isinstance(server, dict) else {}
    names = [server.get(f, getattr(ServerConfig(), f)) for f in ("admin_token_env", "client_keys_env")]
    for p in providers if isinstance(providers, list) else []:
        if isinstance(p, dict):
            names += [p.get("api_key_env"), p.get("private_key_passphrase_env")]
    state = found.data.get("state")
    names.append(state.get("shared_password_env") if isinstance(state, dict) else None)
    return found.values_of(names)


def _convert(data: dict[str, Any], source: str) -> Config:
    """The interpolated data as a Config; msgspec's errors explained."""
    if "source" in data:
        raise ConfigError("unknown key", path=source, key="source")
    data["source"] = source
    _split_models(data, source)
    try:
        config = msgspec.convert(data, Config)
        return msgspec.structs.replace(config, providers=tuple(map(with_derived_url, config.providers)))
    except msgspec.ValidationError as exc:
        match = re.match(r"(.*) - at `(\$[^`]*)`$", str(exc))
        message, path = (match.group(1), match.group(2)) if match else (str(exc), "$")
        if unknown := re.match(r"Object contains unknown field `(.+)`", message):
            raise ConfigError("unknown key (check the spelling against README's config reference)",
                              path=source, key=_key_path(f"{path}.{unknown.group(1)}", data)) from None
        if missing := re.match(r"Object missing required field `(.+)`", message):
            key = _key_path(f"{path}.{missing.group(1)}", data)
            expected = "at least one [[providers]] table" if key == "providers" else None
            raise ConfigError(f"expected {expected}" if expected else "required key is missing",
                              path=source, key=key) from None
        raise ConfigError(_explain(message, path, data), path=source, key=_key_path(path, data)) from None


def _split_models(data: dict[str, Any], source: str) -> None:
    """Split the table form ``models = { chat = { model = "id", max_input_tokens = ... } }`` in place:
    the id stays in ``models``, the rest goes to ``model_limits`` (where exported configs write it),
    checked here because msgspec's error paths do not name a dict's keys.
    """
    providers = data.get("providers")
    for i, p in enumerate(providers if isinstance(providers, list) else ()):
        models = p.get("models") if isinstance(p, dict) else None
        if not isinstance(models, dict):
            continue
        stated = p.get("model_limits", {})
        limits: dict[str, Any] = dict(stated) if isinstance(stated, dict) else {}
        tables: set[str] = set()
        for logical, value in models.items():
            key = _key_path(f"$.providers[{i}].models.{logical}", data)
            if not isinstance(value, dict):
                if not isinstance(value, str):
                    raise ConfigError('expected the upstream model id, "gpt-4o-mini", or a table '
                                      f'{{ model = "gpt-4o-mini", max_input_tokens = ... }}, got {value!r}',
                                      path=source, key=key)
                continue
            table = dict(value)
            upstream = table.pop("model", None)
            if not isinstance(upstream, str) or not upstream:
                got = f"got {upstream!r}" if "model" in value else "it is missing"
                raise ConfigError(f'expected the upstream model id, e.g. {{ model = "gpt-4o-mini" }}; {got}',
                                  path=source, key=f"{key}.model")
            if logical in limits:
                raise ConfigError("its limits are stated twice (in models and in model_limits): keep one",
                                  path=source, key=key)
            models[logical], limits[logical] = upstream, table
            tables.add(logical)
        for logical, table in limits.items():
            where = "models" if logical in tables else "model_limits"
            _check_limits(table, _key_path(f"$.providers[{i}].{where}.{logical}", data), source)
        if tables:
            p["model_limits"] = limits


_LIMITS_EXPECTED = {"max_input_tokens": "a whole number of tokens (at least 1)",
                    "max_output_tokens": "a whole number of tokens (at least 1)",
                    "tool_calling": "true or false",
                    "rpm": "a whole number of requests per minute (at least 1)",
                    "tpm": "a whole number of tokens per minute (at least 1)"}


def _check_limits(table: Any, key: str, source: str) -> None:
    """Raise a ConfigError naming the key when ``table`` is not a valid :class:`ModelLimits`."""
    try:
        msgspec.convert(table, ModelLimits)
    except msgspec.ValidationError as exc:
        field = re.search(r"`\$\.(\w+)`|unknown field `(.+)`", str(exc))
        name = next((g for g in field.groups() if g), "") if field else ""
        if name and name not in _LIMITS_EXPECTED:
            raise ConfigError(f"unknown key (a model's table takes model, {', '.join(_LIMITS_EXPECTED)})",
                              path=source, key=f"{key}.{name}") from None
        if name:
            value = table[name] if isinstance(table, dict) else None
            raise ConfigError(f"expected {_LIMITS_EXPECTED[name]}, got {value!r}",
                              path=source, key=f"{key}.{name}") from None
        raise ConfigError("expected a table of max_input_tokens, max_output_tokens, tool_calling",
                          path=source, key=key) from None


def _clashes(config: Config) -> list[tuple[str, str]]:
    """(keys, warning) per priority that several providers share: the earlier in the file goes first."""
    shared: dict[int, list[str]] = {}
    for i, p in enumerate(config.providers):
        shared.setdefault(p.priority, []).append(f"providers[{i}] ({p.name}).priority")
    return [(", ".join(keys), f"equal priorities ({priority}): the earlier in the file, "
             f"{keys[0].removesuffix('.priority')}, is tried first; give each its own priority")
            for priority, keys in shared.items() if len(keys) > 1]


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML file into a :class:`Config`; every problem is a ``ConfigError``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        where = Path(path).absolute().parent
        looked = f"looked in {where}" + ("" if where.is_dir() else ", which does not exist")
        raise ConfigError(f"file not found ({looked}; pass --config PATH to use another file)",
                          path=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=source) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from None
    config, warnings = _parse(raw, os.environ if env is None else env, source)
    for warning in warnings:
        _log.warning("%s", warning)
    return config
