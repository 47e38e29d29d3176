"""load_config for the vertex and snowflake kinds: derived URLs, required and refused keys, and the
key passphrase that only ever comes from the environment (tests/unit/core/test_config.py's style)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.core.config import ProviderConfig, load_config, parse_config
from actors.core.errors import ConfigError
from actors.core.public_config import public_config

VERTEX = """
[[providers]]
name = "gemini"
kind = "vertex"
project = "my-project"
location = "us-central1"
models = { chat = "google/gemini-2.5-flash" }
"""
SNOWFLAKE = """
[[providers]]
name = "cortex"
kind = "snowflake"
base_url = "https://myorg-myaccount.snowflakecomputing.com"
user = "svc"
account = "myorg-myaccount"
private_key_file = "/secrets/rsa_key.p8"
private_key_passphrase_env = "SF_PASSPHRASE"
models = { chat = "claude-3-5-sonnet" }
"""
OPENAI = """
[[providers]]
name = "alpha"
base_url = "http://alpha.test"
models = { chat = "alpha-chat" }
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ProviderConfig:
    path = tmp_path / "kinds.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=env or {}).providers[0]


@pytest.mark.parametrize(("location", "url"), [
    pytest.param("us-central1", "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/"
                                "locations/us-central1/endpoints/openapi", id="region"),
    pytest.param("global", "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/"
                           "endpoints/openapi", id="global"),
])
def test_vertex_derives_its_base_url(tmp_path: Path, location: str, url: str) -> None:
    """Without base_url, vertex's is Vertex AI's openapi endpoint for the project and location."""
    provider = load(tmp_path, VERTEX.replace('"us-central1"', f'"{location}"'))
    assert provider.base_url == url
    assert provider.configured  # application default credentials: no variable to be unset


@pytest.mark.parametrize(("base_url", "url"), [
    pytest.param("https://aiplatform.us.rep.googleapis.com",
                 "https://aiplatform.us.rep.googleapis.com/v1/projects/my-project/locations/us-central1/"
                 "endpoints/openapi", id="origin-gets-the-path"),
    pytest.param("http://127.0.0.1:9/v1beta1/projects/p/locations/l/endpoints/openapi",
                 "http://127.0.0.1:9/v1beta1/projects/p/locations/l/endpoints/openapi", id="whole-url-kept"),
])
def test_vertex_base_url_overrides(tmp_path: Path, base_url: str, url: str) -> None:
    """A base_url that is an origin gets the standard path; one with a path is used as it is."""
    assert load(tmp_path, VERTEX + f'base_url = "{base_url}"\n').base_url == url


def test_snowflake_passphrase_comes_from_its_variable(tmp_path: Path) -> None:
    """private_key_passphrase is a Secret from private_key_passphrase_env, shown nowhere."""
    provider = load(tmp_path, SNOWFLAKE, {"SF_PASSPHRASE": "pass-do-not-show"})
    assert provider.private_key_passphrase is not None
    assert provider.private_key_passphrase.reveal() == "pass-do-not-show"
    assert "pass-do-not-show" not in repr(provider)


@pytest.mark.parametrize("text", [pytest.param(VERTEX, id="vertex"), pytest.param(SNOWFLAKE, id="snowflake")])
def test_public_config_round_trips_without_secrets(text: str) -> None:
    """The public form of a vertex or snowflake config has no secret and parses back to the same."""
    import tomllib

    config = parse_config(tomllib.loads(text), env={"SF_PASSPHRASE": "pass-do-not-show"})
    public = public_config(config)
    assert "pass-do-not-show" not in repr(public)
    assert "private_key_passphrase" not in public["providers"][0]
    again = parse_config(public, env={})
    assert again.providers[0].base_url == config.providers[0].base_url


BROKEN = [
    pytest.param(VERTEX.replace('project = "my-project"\n', ""), "project", 'required for kind = "vertex"',
                 id="vertex-without-project"),
    pytest.param(VERTEX.replace('location = "us-central1"\n', ""), "location", 'required for kind = "vertex"',
                 id="vertex-without-location"),
    pytest.param(VERTEX.replace('"us-central1"', '"us central"'), "location", "expected a region",
                 id="vertex-bad-location"),
    pytest.param(VERTEX + 'api_key_env = "GOOGLE_KEY"\n', "api_key_env", "Google credentials",
                 id="vertex-with-an-api-key"),
    pytest.param(VERTEX + 'region = "us-central1"\n', "region", "unknown key", id="vertex-unknown-key"),
    pytest.param(SNOWFLAKE.replace('base_url = "https://myorg-myaccount.snowflakecomputing.com"\n', ""),
                 "base_url", 'required key is missing (kind = "snowflake"', id="snowflake-without-base-url"),
    pytest.param(
        SNOWFLAKE.replace('private_key_file = "/secrets/rsa_key.p8"\n', "")
                 .replace('private_key_passphrase_env = "SF_PASSPHRASE"\n', "")
                 .replace('user = "svc"\n', "").replace('account = "myorg-myaccount"\n', ""),
        "api_key_env", "needs a programmatic access token", id="snowflake-without-credentials"),
    pytest.param(SNOWFLAKE.replace('private_key_file = "/secrets/rsa_key.p8"\n', "")
                 .replace('private_key_passphrase_env = "SF_PASSPHRASE"\n', "") + 'api_key_env = "SF_PAT"\n',
                 "user", "takes effect only with private_key_file", id="snowflake-pat-with-keypair-keys"),
    pytest.param(SNOWFLAKE + 'api_key_env = "SF_PAT"\n', "api_key_env", "choose one",
                 id="snowflake-pat-and-keypair"),
    pytest.param(SNOWFLAKE.replace('user = "svc"\n', ""), "user", "required for key-pair auth",
                 id="snowflake-keypair-without-user"),
    pytest.param(SNOWFLAKE.replace('account = "myorg-myaccount"\n', ""), "account", "required for key-pair auth",
                 id="snowflake-keypair-without-account"),
    pytest.param(SNOWFLAKE.replace('"SF_PASSPHRASE"', '"not a variable"'), "private_key_passphrase_env",
                 "expected an environment variable name", id="snowflake-bad-passphrase-variable"),
    pytest.param(OPENAI + 'project = "my-project"\n', "project", 'applies only to kind = "vertex"',
                 id="project-on-openai"),
    pytest.param(OPENAI + 'kind = "anthropic"\nuser = "svc"\n', "user", 'applies only to kind = "snowflake"',
                 id="user-on-anthropic"),
    pytest.param(OPENAI.replace('base_url = "http://alpha.test"\n', ""), "base_url",
                 'required key is missing (kind = "openai"', id="openai-without-base-url"),
]


@pytest.mark.parametrize(("text", "field", "expected"), BROKEN)
def test_broken_kind_config_names_the_key(tmp_path: Path, text: str, field: str, expected: str) -> None:
    """A key a kind requires and lacks, or refuses, is a ConfigError naming the file and the key."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key.endswith(f").{field}"), caught.value.key
    assert expected in str(caught.value)


def test_a_literal_passphrase_is_refused_and_never_echoed(tmp_path: Path) -> None:
    """private_key_passphrase written in the file is refused, pointing at _env, without repeating it."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, SNOWFLAKE + 'private_key_passphrase = "hunter2-in-the-file"\n')
    assert caught.value.key == "providers[0] (cortex).private_key_passphrase"
    assert 'private_key_passphrase_env = "SOME_VARIABLE"' in str(caught.value)
    assert "hunter2-in-the-file" not in str(caught.value)


def test_a_passphrase_variable_is_hidden_in_errors(tmp_path: Path) -> None:
    """A value substituted from the passphrase variable shows as *** in any error."""
    text = SNOWFLAKE.replace('user = "svc"', 'user = "svc"\nhealth_path = "${SF_PASSPHRASE}"')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, {"SF_PASSPHRASE": "pass-do-not-show"})
    assert caught.value.key.endswith(".health_path")
    assert "pass-do-not-show" not in str(caught.value)
    assert "***" in str(caught.value)


def test_config_toml_examples_of_every_kind_load() -> None:
    """The commented-out example of each kind in config.toml loads once uncommented."""
    import tomllib

    from tests.helpers import REPO

    text = (REPO / "config.toml").read_text(encoding="utf-8")
    block = text.split("# --- examples:", 1)[1].split("\n", 1)[1]
    uncommented = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines())
    config = parse_config(tomllib.loads(uncommented), env={})
    assert [p.kind for p in config.providers] == ["openai", "anthropic", "azure", "vertex", "snowflake"]
    assert config.providers[3].base_url.startswith("https://aiplatform.googleapis.com/v1/projects/my-gcp-project/")
