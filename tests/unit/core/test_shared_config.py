"""The ``[state] shared_*`` keys (issue 15): accepted URLs, refused ones, and the password's way in."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.core.config import Config, Secret, load_config, parse_config
from actors.core.errors import ConfigError
from actors.core.public_config import public_config
from actors.core.shared_urls import describe_redis_url, scrub, shared_url_problem
from tests.helpers import REPO

PROVIDERS = [{"name": "alpha", "base_url": "http://alpha.test", "models": {"chat": "m"}}]


def _config(env: dict[str, str] | None = None, /, **state: object) -> Config:
    return parse_config({"providers": PROVIDERS, "state": state}, env=env or {}, source="shared.toml")


def test_shared_state_is_off_by_default() -> None:
    """The shipped config.toml leaves shared_url empty (its shared keys are comments) with the defaults."""
    state = load_config(REPO / "config.toml", env={}).state
    assert (state.shared_url, state.shared_password_env, state.shared_prefix) == ("", "", "provider-fallback")
    assert (state.shared_timeout_s, state.shared_reconcile_s, state.shared_password) == (0.25, 5, None)


@pytest.mark.parametrize("url", [
    pytest.param("redis://127.0.0.1:6379/0", id="redis"),
    pytest.param("redis://redis.internal", id="no-port-no-db"),
    pytest.param("rediss://cache.example.com:6380/2", id="tls"),
    pytest.param("redis://[::1]:6379/1", id="ipv6"),
    pytest.param("redis://fallback@10.0.0.5:6379/0", id="acl-user-without-password"),
    pytest.param("unix:///run/redis/redis.sock?db=3", id="unix"),
])
def test_accepted_shared_urls(url: str) -> None:
    """redis://, rediss:// and unix:// URLs with a host (or socket path) and a database number pass."""
    assert shared_url_problem(url) is None
    assert _config(shared_url=url).state.shared_url == url


@pytest.mark.parametrize(("url", "expected"), [
    pytest.param("http://127.0.0.1:6379", "expected a redis://, rediss:// or unix:// URL", id="http"),
    pytest.param("127.0.0.1:6379", "expected a redis://, rediss:// or unix:// URL", id="no-scheme"),
    pytest.param("redis://127.0.0.1:99999/0", "expected a port from 1 to 65535", id="port"),
    pytest.param("redis:///0", "expected a host after redis://", id="no-host"),
    pytest.param("redis://127.0.0.1:6379/cache", "expected a database number", id="db-name"),
    pytest.param("unix://relative.sock", "expected unix:///absolute/path", id="unix-relative"),
    pytest.param("redis://127.0.0.1 :6379", "without spaces", id="space"),
])
def test_refused_shared_urls_name_the_key(url: str, expected: str) -> None:
    """A bad shared_url is a ConfigError naming state.shared_url and what was expected."""
    with pytest.raises(ConfigError, match=expected) as caught:
        _config(shared_url=url)
    assert caught.value.key == "state.shared_url"


@pytest.mark.parametrize("url", [
    pytest.param("redis://:hunter2@127.0.0.1:6379/0", id="password"),
    pytest.param("rediss://admin:hunter2@127.0.0.1:6379/0", id="user-and-password"),
    pytest.param("redis://127.0.0.1:6379/0?password=hunter2", id="query"),
    pytest.param("unix://:hunter2@/run/redis.sock", id="unix"),
])
def test_a_password_in_the_url_is_refused_without_echoing_it(url: str) -> None:
    """The error says to use shared_password_env and shows neither the password nor the URL."""
    with pytest.raises(ConfigError, match="shared_password_env") as caught:
        _config(shared_url=url)
    assert caught.value.key == "state.shared_url"
    assert "hunter2" not in str(caught.value)


def test_the_password_comes_from_the_named_variable_and_never_shows() -> None:
    """shared_password_env's value becomes a Secret; repr, public_config and round-trip hold no trace of it."""
    config = _config({"FALLBACK_REDIS_PASSWORD": "s3cr3t-value"}, shared_url="redis://127.0.0.1:6379/0",
                     shared_password_env="FALLBACK_REDIS_PASSWORD")
    state = config.state
    assert state.shared_password == Secret("s3cr3t-value")
    assert "s3cr3t-value" not in repr(config)
    public = public_config(config)
    assert "shared_password" not in public["state"]
    assert "s3cr3t-value" not in repr(public)
    assert parse_config(public, env={}).state.shared_password is None


def test_a_password_written_in_the_file_is_refused() -> None:
    """shared_password itself is never read from TOML, like every other secret."""
    with pytest.raises(ConfigError, match="shared_password_env") as caught:
        _config(shared_password="hunter2")
    assert caught.value.key == "state.shared_password"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("state", "key"), [
    pytest.param({"shared_password_env": "1BAD"}, "state.shared_password_env", id="variable-name"),
    pytest.param({"shared_prefix": ""}, "state.shared_prefix", id="empty-prefix"),
    pytest.param({"shared_prefix": "a b"}, "state.shared_prefix", id="prefix-with-space"),
    pytest.param({"shared_timeout_s": 0}, "state.shared_timeout_s", id="timeout"),
    pytest.param({"shared_reconcile_s": -1}, "state.shared_reconcile_s", id="reconcile"),
])
def test_other_shared_keys_are_checked(state: dict[str, object], key: str) -> None:
    """Each shared_* key is checked, and its error names it."""
    with pytest.raises(ConfigError) as caught:
        _config(**state)
    assert caught.value.key == key


def test_the_config_file_error_names_the_file(tmp_path: Path) -> None:
    """Through load_config, the error names the file and the key."""
    path = tmp_path / "shared.toml"
    path.write_text('[state]\nshared_url = "memcached://x"\n[[providers]]\nname = "a"\n'
                    'base_url = "http://a.test"\nmodels = { chat = "m" }\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(path) in str(caught.value)
    assert "state.shared_url" in str(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    pytest.param("redis://user:pw@cache:6380/2", "cache:6380/2", id="userinfo-dropped"),
    pytest.param("redis://cache", "cache:6379", id="default-port"),
    pytest.param("rediss://[::1]:7000/0", "[::1]:7000", id="ipv6"),
    pytest.param("unix:///run/redis.sock?db=1", "unix:/run/redis.sock", id="unix"),
])
def test_describe_shows_only_where_it_points(url: str, shown: str) -> None:
    """The target in logs is host:port[/db] or the socket path: no user, password or query."""
    assert describe_redis_url(url) == shown


def test_scrub_removes_secrets_and_userinfo() -> None:
    """scrub() masks the given secrets and any URL's user:password@."""
    text = "AUTH pw-1 failed for redis://u:pw-2@h:1/0"
    assert scrub(text, ["pw-1", None, ""]) == "AUTH *** failed for redis://***@h:1/0"
