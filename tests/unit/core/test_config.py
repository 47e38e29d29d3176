"""load_config: the default file, every broken-config message, and secrets from the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from actors.core.config import Config, ProviderConfig, Secret, load_config, parse_config
from actors.core.errors import ConfigError
from actors.core.public_config import public_config
from tests.helpers import REPO as ROOT

DEFAULT_CONFIG = ROOT / "config.toml"

# The cooldowns DESIGN.md's Configuration section gives, in seconds.
DESIGN_COOLDOWNS = {
    "connection_error": 300,
    "auth_failure": 1800,
    "rate_limit": 60,
    "model_not_found": 600,
    "server_error": 300,
    "timeout": 120,
    "service_unavailable": 600,
}

PROVIDER = """
[[providers]]
name = "alpha"
base_url = "http://alpha.test"
api_key_env = "ALPHA_KEY"
models = { chat = "alpha-chat" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    return path


def provider_named(config: Config, name: str) -> ProviderConfig:
    provider = config.provider(name)
    assert provider is not None
    return provider


# --- the default config.toml -------------------------------------------------


def test_default_config_has_three_providers_in_priority_order() -> None:
    """The shipped config.toml loads with litellm, kilocode and openrouter at priorities 1, 2, 3."""
    config = load_config(DEFAULT_CONFIG, env={})
    assert [(p.name, p.priority) for p in config.providers] == [
        ("litellm", 1),
        ("kilocode", 2),
        ("openrouter", 3),
    ]


def test_default_config_has_design_cooldowns() -> None:
    """The shipped config.toml's [routing.cooldown_s] matches the design's defaults."""
    cooldowns = load_config(DEFAULT_CONFIG, env={}).routing.cooldown_s
    assert {name: getattr(cooldowns, name) for name in DESIGN_COOLDOWNS} == DESIGN_COOLDOWNS


def test_default_config_routes_the_chat_model() -> None:
    """The shipped config.toml's default model is served by every provider."""
    config = load_config(DEFAULT_CONFIG, env={})
    assert config.routing.default_model == "chat"
    assert all("chat" in p.models for p in config.providers)


def test_default_config_records_its_source() -> None:
    """A loaded config remembers the file it came from, for later messages."""
    assert load_config(DEFAULT_CONFIG, env={}).source == str(DEFAULT_CONFIG)


def test_empty_env_leaves_every_provider_unconfigured() -> None:
    """With no key variables set, no provider is configured and none has a key."""
    config = load_config(DEFAULT_CONFIG, env={})
    assert [(p.name, p.configured, p.api_key) for p in config.providers] == [
        ("litellm", False, None),
        ("kilocode", False, None),
        ("openrouter", False, None),
    ]


def test_key_variable_configures_its_provider_only() -> None:
    """GROQ_API_KEY in the passed env configures litellm and nothing else."""
    config = load_config(DEFAULT_CONFIG, env={"GROQ_API_KEY": "gsk-test-value"})
    assert {p.name: p.configured for p in config.providers} == {
        "litellm": True,
        "kilocode": False,
        "openrouter": False,
    }


def test_provider_key_is_a_secret_that_hides_its_value() -> None:
    """litellm's api_key is a Secret whose repr and str never show the value."""
    config = load_config(DEFAULT_CONFIG, env={"GROQ_API_KEY": "gsk-test-value"})
    key = provider_named(config, "litellm").api_key
    assert isinstance(key, Secret)
    assert key.reveal() == "gsk-test-value"
    assert "gsk-test-value" not in repr(key)
    assert "gsk-test-value" not in str(key)
    assert "gsk-test-value" not in repr(config)


def test_empty_key_variable_counts_as_unset() -> None:
    """A key variable set to the empty string leaves its provider unconfigured."""
    config = load_config(DEFAULT_CONFIG, env={"GROQ_API_KEY": ""})
    assert not provider_named(config, "litellm").configured


def test_provider_without_key_variable_is_configured(tmp_path: Path) -> None:
    """A provider that names no key variable (a local proxy) is configured as it is."""
    text = PROVIDER.replace('api_key_env = "ALPHA_KEY"\n', "")
    config = load_config(write(tmp_path, text), env={})
    assert provider_named(config, "alpha").configured


def test_url_interpolates_from_env() -> None:
    """${LITELLM_ENDPOINT:-...} takes the variable's value when it is set."""
    config = load_config(DEFAULT_CONFIG, env={"LITELLM_ENDPOINT": "https://proxy.test:4443"})
    assert provider_named(config, "litellm").base_url == "https://proxy.test:4443"


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="unset"),
        pytest.param({"LITELLM_ENDPOINT": ""}, id="empty"),
    ],
)
def test_url_falls_back_to_default(env: dict[str, str]) -> None:
    """${LITELLM_ENDPOINT:-http://localhost:4000} gives the default when the variable is unset."""
    config = load_config(DEFAULT_CONFIG, env=env)
    assert provider_named(config, "litellm").base_url == "http://localhost:4000"


def test_interpolated_value_is_not_rescanned(tmp_path: Path) -> None:
    """A variable whose value looks like ${OTHER} is taken literally, not expanded again."""
    text = PROVIDER.replace('"http://alpha.test"', '"${ALPHA_URL}"')
    config = load_config(write(tmp_path, text), env={"ALPHA_URL": "http://x.test/${NOPE}"})
    assert provider_named(config, "alpha").base_url == "http://x.test/${NOPE}"


# --- broken configs ----------------------------------------------------------

BROKEN = [
    pytest.param(
        "colour = 'blue'\n" + PROVIDER,
        "colour",
        "unknown key",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "[routing]\nmax_atempts = 3\n" + PROVIDER,
        "routing.max_atempts",
        "unknown key",
        id="unknown-routing-key",
    ),
    pytest.param(
        PROVIDER + "prority = 2\n",
        "providers[0] (alpha).prority",
        "unknown key",
        id="unknown-provider-key",
    ),
    pytest.param(
        "[routing.cooldown_s]\nrate_limits = 5\n" + PROVIDER,
        "routing.cooldown_s.rate_limits",
        "unknown key",
        id="unknown-cooldown-key",
    ),
    pytest.param(
        '[server]\nport = "x"\n' + PROVIDER,
        "server.port",
        "expected `int`, got `str`",
        id="wrong-type",
    ),
    pytest.param(
        "[server]\nport = 70000\n" + PROVIDER,
        "server.port",
        "<= 65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        "[routing.cooldown_s]\nrate_limit = -5\n" + PROVIDER,
        "routing.cooldown_s.rate_limit",
        ">= 0.0, got -5",
        id="negative-cooldown",
    ),
    pytest.param(
        "[routing]\nmax_attempts = 0\n" + PROVIDER,
        "routing.max_attempts",
        ">= 1, got 0",
        id="zero-max-attempts",
    ),
    pytest.param(
        PROVIDER.replace('base_url = "http://alpha.test"\n', ""),
        "providers[0] (alpha).base_url",
        "required key is missing",
        id="missing-base-url",
    ),
    pytest.param(
        "[server]\nport = 8080\n",
        "providers",
        "expected at least one [[providers]] table",
        id="no-providers",
    ),
    pytest.param(
        "providers = []\n",
        "providers",
        "expected at least one [[providers]] table",
        id="empty-providers",
    ),
    pytest.param(
        "[providers]\nname = 'alpha'\n",
        "providers",
        "write [[providers]] (double brackets)",
        id="providers-single-brackets",
    ),
    pytest.param(
        "providers = 5\n",
        "providers",
        "expected `array`, got `int`",
        id="providers-not-a-list",
    ),
    pytest.param(
        PROVIDER + PROVIDER,
        "providers[1] (alpha).name",
        "duplicate provider name 'alpha'",
        id="duplicate-names",
    ),
    pytest.param(
        PROVIDER + 'kind = "gemini"\n',
        "providers[0] (alpha).kind",
        "expected one of 'anthropic', 'azure', 'openai', 'snowflake', 'vertex', got 'gemini'",
        id="bad-kind",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "ftp://alpha.test"),
        "providers[0] (alpha).base_url",
        "expected an http:// or https:// URL, got 'ftp://alpha.test'",
        id="base-url-not-http",
    ),
    pytest.param(
        '[routing]\ndefault_model = "smart"\n' + PROVIDER,
        "routing.default_model",
        "'smart' is served by no provider (models: chat)",
        id="default-model-unserved",
    ),
    pytest.param(
        PROVIDER + 'api_key = "sk-in-the-file"\n',
        "providers[0] (alpha).api_key",
        "api_key_env",
        id="api-key-in-file",
    ),
    pytest.param(
        '[server]\nadmin_token = "hunter2"\n' + PROVIDER,
        "server.admin_token",
        "admin_token_env",
        id="admin-token-in-file",
    ),
    pytest.param(
        PROVIDER.replace('"http://alpha.test"', '"${ALPHA_URL}"'),
        "providers[0] (alpha).base_url",
        "ALPHA_URL is not set and has no default",
        id="unset-variable-without-default",
    ),
    pytest.param(
        PROVIDER.replace('{ chat = "alpha-chat" }', "{}"),
        "providers[0] (alpha).models",
        "expected at least one logical model",
        id="empty-models",
    ),
    pytest.param(
        PROVIDER.replace('"alpha"', '"alpha beta"'),
        "providers[0] (alpha beta).name",
        "matching regex '^[A-Za-z0-9_.-]+$', got 'alpha beta'",
        id="bad-name-characters",
    ),
    pytest.param(
        PROVIDER + 'health_path = "models"\n',
        "providers[0] (alpha).health_path",
        "expected a path starting with '/'",
        id="health-path-not-absolute",
    ),
    pytest.param(
        PROVIDER.replace('"ALPHA_KEY"', '"ALPHA-KEY"'),
        "providers[0] (alpha).api_key_env",
        "expected an environment variable name, got 'ALPHA-KEY'",
        id="bad-key-variable-name",
    ),
    pytest.param(
        '[health]\nprobe_tier = "deep"\n' + PROVIDER,
        "health.probe_tier",
        "expected one of 'api', 'full', 'ping', got 'deep'",
        id="bad-probe-tier",
    ),
    pytest.param(
        "source = 'elsewhere'\n" + PROVIDER,
        "source",
        "unknown key",
        id="source-is-not-a-config-key",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://127.0.0.1:99999/v1"),
        "providers[0] (alpha).base_url",
        "expected a port from 1 to 65535, got '99999' in 'http://127.0.0.1:99999/v1'",
        id="url-port-out-of-range",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://127.0.0.1:0/v1"),
        "providers[0] (alpha).base_url",
        "expected a port from 1 to 65535, got '0'",
        id="url-port-zero",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://alpha.test:abc/v1"),
        "providers[0] (alpha).base_url",
        "expected a port from 1 to 65535, got 'abc'",
        id="url-port-not-a-number",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "ftp://127.0.0.1/v1"),
        "providers[0] (alpha).base_url",
        "expected an http:// or https:// URL, got 'ftp://127.0.0.1/v1'",
        id="url-scheme-ftp",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "localhost:4000"),
        "providers[0] (alpha).base_url",
        "expected an http:// or https:// URL, got 'localhost:4000'",
        id="url-without-scheme",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http:/alpha.test"),
        "providers[0] (alpha).base_url",
        "expected an http:// or https:// URL, got 'http:/alpha.test'",
        id="url-one-slash",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http:///v1"),
        "providers[0] (alpha).base_url",
        "expected a host after http://, got 'http:///v1'",
        id="url-without-host",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://$HOST/v1"),
        "providers[0] (alpha).base_url",
        "expected a host name or address, got '$HOST'",
        id="url-shell-style-variable-as-host",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://[::1/v1"),
        "providers[0] (alpha).base_url",
        "expected a valid URL (Invalid IPv6 URL)",
        id="url-unclosed-ipv6-bracket",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://alpha.test/v 1"),
        "providers[0] (alpha).base_url",
        "expected a URL without spaces or control characters",
        id="url-with-space",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://alpha.test/v1?key=x"),
        "providers[0] (alpha).base_url",
        "expected no ?query or #fragment",
        id="url-with-query",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://127.0.0.1:${PORT/v1"),
        "providers[0] (alpha).base_url",
        "unclosed '${' in '${PORT/v1'",
        id="unclosed-reference",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://${1HOST}:9/v1"),
        "providers[0] (alpha).base_url",
        "invalid variable name '1HOST' in '${1HOST}'",
        id="variable-name-starts-with-digit",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://${A-B}:9/v1"),
        "providers[0] (alpha).base_url",
        "invalid variable name 'A-B' in '${A-B}'",
        id="variable-name-with-dash",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://${}:9/v1"),
        "providers[0] (alpha).base_url",
        "empty variable name in '${}'",
        id="empty-variable-name",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://${:-alpha.test}"),
        "providers[0] (alpha).base_url",
        "empty variable name in '${:-alpha.test}'",
        id="empty-variable-name-with-default",
    ),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "${A:-${B}}"),
        "providers[0] (alpha).base_url",
        "a default can't hold another '${'",
        id="nested-reference",
    ),
    pytest.param(
        '[server]\nhost = "${HOST:=x}"\n' + PROVIDER,
        "server.host",
        "invalid variable name 'HOST:=x'",
        id="unsupported-operator",
    ),
    pytest.param(
        PROVIDER + 'headers = { "X-Trace" = "a\\r\\nInjected: 1" }\n',
        "providers[0] (alpha).headers.X-Trace",
        "a header value can't hold a control character: '\\r' at position 1",
        id="header-value-crlf",
    ),
    pytest.param(
        PROVIDER + 'headers = { "X-Trace" = "a\\nb" }\n',
        "providers[0] (alpha).headers.X-Trace",
        "a header value can't hold a control character: '\\n'",
        id="header-value-newline",
    ),
    pytest.param(
        PROVIDER + 'headers = { "X-Trace" = "a\\u001bb" }\n',
        "providers[0] (alpha).headers.X-Trace",
        "a header value can't hold a control character: '\\x1b'",
        id="header-value-escape-character",
    ),
    pytest.param(
        PROVIDER + 'headers = { "X Trace" = "a" }\n',
        "providers[0] (alpha).headers",
        "expected a header name of letters, digits and !#$%&'*+-.^_`|~, got 'X Trace'",
        id="header-name-with-space",
    ),
    pytest.param(
        PROVIDER + 'headers = { "X-Trace:" = "a" }\n',
        "providers[0] (alpha).headers",
        "got 'X-Trace:'",
        id="header-name-with-colon",
    ),
    pytest.param(
        PROVIDER + 'headers = { "" = "a" }\n',
        "providers[0] (alpha).headers",
        "got ''",
        id="header-name-empty",
    ),
    pytest.param(
        '[server]\nport = "${PORT:-80x}"\n' + PROVIDER,
        "server.port",
        "expected an integer from ${PORT:-80x}, got '80x'",
        id="port-reference-not-a-number",
    ),
    pytest.param(
        '[server]\nport = "${PORT:-99999}"\n' + PROVIDER,
        "server.port",
        "<= 65535, got 99999",
        id="port-reference-out-of-range",
    ),
    pytest.param(
        '[server]\nport = "80${PORT:-80}"\n' + PROVIDER,
        "server.port",
        "expected `int`, got `str`",
        id="port-reference-with-text-around-it",
    ),
    pytest.param(
        PROVIDER + 'timeout_s = "${TIMEOUT:-fast}"\n',
        "providers[0] (alpha).timeout_s",
        "expected a number from ${TIMEOUT:-fast}, got 'fast'",
        id="float-reference-not-a-number",
    ),
    pytest.param(
        '[routing]\nlast_resort = "${FLAG:-maybe}"\n' + PROVIDER,
        "routing.last_resort",
        "expected true or false (or yes/no, on/off, 1/0) from ${FLAG:-maybe}, got 'maybe'",
        id="bool-reference-not-a-boolean",
    ),
]


@pytest.mark.parametrize(("text", "key", "expected"), BROKEN)
def test_broken_config_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    """A broken config raises ConfigError naming the file, the key path and what was expected."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert caught.value.path == str(path)
    assert caught.value.key == key
    assert message.startswith(f"{path}: {key}: ")
    assert expected in message


def test_secret_in_file_is_never_echoed(tmp_path: Path) -> None:
    """Refusing an api_key written in the file does not repeat the key in the message."""
    path = write(tmp_path, PROVIDER + 'api_key = "sk-in-the-file"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "sk-in-the-file" not in str(caught.value)


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    """Invalid TOML raises ConfigError naming the file and the line of the mistake."""
    path = write(tmp_path, "[server]\nport = 8080\nhost 127.0.0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert caught.value.path == str(path)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 3" in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """A file that does not exist raises ConfigError naming the path."""
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="file not found") as caught:
        load_config(path, env={})
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(str(path))


def test_missing_file_names_the_directory_and_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path that isn't there names the absolute directory looked in and --config PATH."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("config.toml", env={})
    assert str(caught.value) == (
        f"config.toml: file not found (looked in {tmp_path}; pass --config PATH to use another file)"
    )


def test_missing_directory_says_so(tmp_path: Path) -> None:
    """A path in a directory that doesn't exist says the directory is missing too."""
    with pytest.raises(ConfigError, match=r"which does not exist; pass --config PATH"):
        load_config(tmp_path / "nowhere" / "config.toml", env={})


def test_config_error_is_a_value_error() -> None:
    """ConfigError can be caught as ValueError by callers that know only the stdlib."""
    with pytest.raises(ValueError, match="expected a table at the top level"):
        parse_config([], env={})  # type: ignore[arg-type]


# --- secrets -----------------------------------------------------------------


def test_admin_token_comes_from_env() -> None:
    """FALLBACK_ADMIN_TOKEN becomes server.admin_token as a Secret."""
    config = load_config(DEFAULT_CONFIG, env={"FALLBACK_ADMIN_TOKEN": "adm-token-value"})
    assert config.server.admin_token == Secret("adm-token-value")


def test_admin_token_is_none_when_unset() -> None:
    """Without FALLBACK_ADMIN_TOKEN there is no admin token and no client key."""
    server = load_config(DEFAULT_CONFIG, env={}).server
    assert (server.admin_token, server.client_keys) == (None, ())


def test_client_keys_split_on_commas() -> None:
    """FALLBACK_CLIENT_KEYS is split on commas, trimmed, and empty entries dropped."""
    config = load_config(DEFAULT_CONFIG, env={"FALLBACK_CLIENT_KEYS": " ck-one, ck-two,,"})
    assert [k.reveal() for k in config.server.client_keys] == ["ck-one", "ck-two"]


def test_secret_variable_names_are_configurable(tmp_path: Path) -> None:
    """admin_token_env and client_keys_env choose which variables hold the secrets."""
    text = '[server]\nadmin_token_env = "MY_ADMIN"\nclient_keys_env = "MY_CLIENTS"\n' + PROVIDER
    env = {"MY_ADMIN": "adm", "MY_CLIENTS": "ck", "FALLBACK_ADMIN_TOKEN": "ignored"}
    server = load_config(write(tmp_path, text), env=env).server
    assert server.admin_token == Secret("adm")
    assert server.client_keys == (Secret("ck"),)


def test_secrets_never_appear_in_config_repr() -> None:
    """repr(config) shows no provider key, admin token or client key value."""
    env = {
        "GROQ_API_KEY": "gsk-value-1",
        "KILOCODE_API_KEY": "kilo-value-2",
        "OPENROUTER_API_KEY": "or-value-3",
        "FALLBACK_ADMIN_TOKEN": "adm-value-4",
        "FALLBACK_CLIENT_KEYS": "ck-value-5,ck-value-6",
    }
    text = repr(load_config(DEFAULT_CONFIG, env=env))
    values = [v for value in env.values() for v in value.split(",")]
    assert [value for value in values if value in text] == []


# --- ${...} interpolation ------------------------------------------------------


def test_port_from_the_environment_is_an_int(tmp_path: Path) -> None:
    """port = "${PORT:-8080}" takes PORT from the environment and gives an int."""
    path = write(tmp_path, '[server]\nport = "${PORT:-8080}"\n' + PROVIDER)
    port = load_config(path, env={"PORT": "9191"}).server.port
    assert (type(port), port) == (int, 9191)


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="unset"),
        pytest.param({"PORT": ""}, id="empty"),
    ],
)
def test_port_reference_falls_back_to_its_default(tmp_path: Path, env: dict[str, str]) -> None:
    """port = "${PORT:-8080}" gives the int 8080 when PORT is unset or empty."""
    path = write(tmp_path, '[server]\nport = "${PORT:-8080}"\n' + PROVIDER)
    port = load_config(path, env=env).server.port
    assert (type(port), port) == (int, 8080)


def test_port_reference_names_a_bad_value(tmp_path: Path) -> None:
    """PORT=abc for port = "${PORT}" is refused naming the key, the reference and the value."""
    path = write(tmp_path, '[server]\nport = "${PORT}"\n' + PROVIDER)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"PORT": "abc"})
    assert str(caught.value) == f"{path}: server.port: expected an integer from ${{PORT}}, got 'abc'"


def test_float_reference_becomes_a_float(tmp_path: Path) -> None:
    """timeout_s = "${TIMEOUT:-2.5}" gives the number 2.5."""
    path = write(tmp_path, PROVIDER + 'timeout_s = "${TIMEOUT:-2.5}"\n')
    assert provider_named(load_config(path, env={}), "alpha").timeout_s == 2.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("yes", True, id="yes"),
        pytest.param("no", False, id="no"),
        pytest.param("TRUE", True, id="TRUE"),
        pytest.param("false", False, id="false"),
        pytest.param("on", True, id="on"),
        pytest.param("off", False, id="off"),
        pytest.param("1", True, id="1"),
        pytest.param("0", False, id="0"),
    ],
)
def test_bool_reference_becomes_a_bool(tmp_path: Path, value: str, expected: bool) -> None:
    """enabled = "${FLAG:-yes}" reads FLAG as a boolean: true/false, yes/no, on/off or 1/0."""
    path = write(tmp_path, PROVIDER + 'enabled = "${FLAG:-yes}"\n')
    assert provider_named(load_config(path, env={"FLAG": value}), "alpha").enabled is expected


def test_reference_in_a_string_key_stays_a_string(tmp_path: Path) -> None:
    """A whole reference in a key that expects a string is not turned into a number."""
    path = write(tmp_path, PROVIDER + 'api_version = "${VERSION:-2024}"\n')
    assert provider_named(load_config(path, env={}), "alpha").api_version == "2024"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, "http://127.0.0.1:4000/v1", id="defaults"),
        pytest.param({"HOST": "proxy.test", "PORT": "8443"}, "http://proxy.test:8443/v1", id="set"),
    ],
)
def test_defaults_inside_a_url(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    """Several ${VAR:-default} references in one base_url each take the variable or their default."""
    text = PROVIDER.replace("http://alpha.test", "http://${HOST:-127.0.0.1}:${PORT:-4000}/v1")
    assert provider_named(load_config(write(tmp_path, text), env=env), "alpha").base_url == expected


def test_a_lone_dollar_stays_literal(tmp_path: Path) -> None:
    """A "$" not followed by "{" (alone, doubled, at the end) is kept as it is."""
    text = PROVIDER.replace("http://alpha.test", "http://alpha.test/a$b/$$c/$") + (
        'headers = { "X-Note" = "pa$$word$" }\n'
    )
    alpha = provider_named(load_config(write(tmp_path, text), env={"b": "x", "c": "y"}), "alpha")
    assert (alpha.base_url, alpha.headers) == ("http://alpha.test/a$b/$$c/$", {"X-Note": "pa$$word$"})


# --- URLs that are accepted --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://[::1]:4000/v1", id="ipv6"),
        pytest.param("https://user:pw@alpha.test/v1", id="credentials"),
        pytest.param("HTTPS://Alpha.Test:65535", id="upper-case-and-top-port"),
        pytest.param("http://alpha.test:1", id="port-1"),
        pytest.param("http://bücher.test/v1", id="idn-host"),
        pytest.param("http://alpha.test/${NOPE}", id="braces-in-the-path"),
    ],
)
def test_accepted_url_survives_public_config(url: str) -> None:
    """A base_url the config accepts can be made public (what serve does at start) without an error."""
    raw = {"providers": [{"name": "alpha", "base_url": "${URL}", "models": {"chat": "m"}}]}
    config = parse_config(raw, env={"URL": url})
    assert provider_named(config, "alpha").base_url == url
    assert public_config(config)["providers"][0]["base_url"]


def test_url_error_masks_credentials(tmp_path: Path) -> None:
    """A refused base_url with a user and password in it shows neither."""
    text = PROVIDER.replace("http://alpha.test", "http://user:hunter2@alpha.test:99999/v1")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert "hunter2" not in str(caught.value)
    assert "'http://***@alpha.test:99999/v1'" in str(caught.value)


# --- secrets in messages -----------------------------------------------------

SECRET_LEAKS = [
    pytest.param('[server]\nport = "${ALPHA_KEY}"\n' + PROVIDER, "server.port", id="provider-key-as-port"),
    pytest.param(
        PROVIDER.replace("http://alpha.test", "http://alpha.test:${FALLBACK_ADMIN_TOKEN}"),
        "providers[0] (alpha).base_url",
        id="admin-token-in-url",
    ),
    pytest.param(
        PROVIDER + 'kind = "${FALLBACK_CLIENT_KEYS}"\n',
        "providers[0] (alpha).kind",
        id="client-keys-as-kind",
    ),
    pytest.param(
        '[server]\nadmin_token_env = "MY_ADMIN"\n[routing]\nlast_resort = "${MY_ADMIN}"\n' + PROVIDER,
        "routing.last_resort",
        id="renamed-admin-variable-as-bool",
    ),
    pytest.param(
        PROVIDER.replace('"alpha"', '"${ALPHA_KEY}"') + 'health_path = "x"\n',
        "providers[0] (***).health_path",
        id="provider-key-as-name",
    ),
]


@pytest.mark.parametrize(("text", "key"), SECRET_LEAKS)
def test_error_never_shows_a_secret_variable(tmp_path: Path, text: str, key: str) -> None:
    """A value substituted from a key/token variable shows as *** in the error, never as itself."""
    env = {
        "ALPHA_KEY": "sk-alpha-do-not-show",
        "FALLBACK_ADMIN_TOKEN": "adm-do-not-show",
        "FALLBACK_CLIENT_KEYS": "ck-one-do-not-show,ck-two-do-not-show",
        "MY_ADMIN": "my-admin-do-not-show",
    }
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env)
    assert caught.value.key == key
    assert "***" in str(caught.value)
    assert "do-not-show" not in str(caught.value)


# --- equal priorities --------------------------------------------------------

SECOND = PROVIDER.replace('"alpha"', '"beta"').replace("alpha-chat", "beta-chat")


def test_equal_priorities_warn_that_the_earlier_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two providers at one priority log one WARNING on actors.config: the earlier in the file goes first."""
    path = write(tmp_path, PROVIDER + "priority = 1\n" + SECOND + "priority = 1\n")
    with caplog.at_level(logging.WARNING, logger="actors.config"):
        config = load_config(path, env={})
    assert [p.name for p in config.providers] == ["alpha", "beta"]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [(
        "actors.config",
        logging.WARNING,
        f"{path}: providers[0] (alpha).priority, providers[1] (beta).priority: equal priorities (1): "
        "the earlier in the file, providers[0] (alpha), is tried first; give each its own priority",
    )]


def test_distinct_priorities_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Providers at different priorities (and the shipped config.toml) log nothing."""
    path = write(tmp_path, PROVIDER + "priority = 1\n" + SECOND + "priority = 2\n")
    with caplog.at_level(logging.DEBUG, logger="actors.config"):
        load_config(path, env={})
        load_config(DEFAULT_CONFIG, env={})
    assert caplog.records == []


def test_parse_config_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    """parse_config (replay's rebuilt configs, tests) never logs: only a config file read warns."""
    provider = {"base_url": "http://x.test", "models": {"chat": "m"}}
    with caplog.at_level(logging.DEBUG, logger="actors.config"):
        parse_config({"providers": [{"name": "a", **provider}, {"name": "b", **provider}]}, env={})
    assert caplog.records == []


def test_equal_priority_warning_never_shows_a_secret_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider name substituted from its key variable shows as *** in the warning."""
    path = write(tmp_path, PROVIDER.replace('"alpha"', '"${ALPHA_KEY}"') + SECOND)
    with caplog.at_level(logging.WARNING, logger="actors.config"):
        load_config(path, env={"ALPHA_KEY": "sk-alpha-do-not-show"})
    assert [r.getMessage() for r in caplog.records if "providers[0] (***)" in r.getMessage()]
    assert "do-not-show" not in caplog.text
