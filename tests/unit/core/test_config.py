"""load_config: the default file, every broken-config message, and secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.core.config import Config, ProviderConfig, Secret, load_config, parse_config
from actors.core.errors import ConfigError
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
        "expected one of 'anthropic', 'azure', 'openai', got 'gemini'",
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
