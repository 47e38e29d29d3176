"""Broken configs through the real command line: ``check`` and ``serve`` refuse each one the same way.

``check`` and ``serve`` load the config through one path, so a config
``check`` calls valid can't crash ``serve`` at start: for every config here
both exit 2 with the same one ``error:`` line and no traceback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli, free_port


def _config(tmp_path: Path, server: str = "", provider: str = "", **fields: str) -> Path:
    """A one-provider config in ``tmp_path``; ``fields`` replace the provider's defaults."""
    values = {"base_url": '"http://127.0.0.1:9/v1"', **fields}
    lines = "".join(f"{key} = {value}\n" for key, value in values.items())
    path = tmp_path / "broken.toml"
    path.write_text(f"""
[server]
{server}

[state]
path = "{tmp_path / 'state.db'}"

[health]
ping_interval_s = 0
full_interval_s = 0
api_interval_s = 0

[[providers]]
name = "litellm"
api_key_env = "GROQ_API_KEY"
models = {{ chat = "m" }}
{lines}{provider}""")
    return path


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, no traceback, and exactly one ``error:`` line on stderr: that line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


BROKEN = [
    pytest.param({"base_url": '"http://127.0.0.1:99999/v1"'}, {}, "providers[0] (litellm).base_url",
                 "expected a port from 1 to 65535, got '99999'", id="url-port-out-of-range"),
    pytest.param({"base_url": '"http://127.0.0.1:${PORT/v1"'}, {}, "providers[0] (litellm).base_url",
                 "unclosed '${' in '${PORT/v1'", id="unclosed-reference"),
    pytest.param({"base_url": '"http://${1HOST}:9/v1"'}, {}, "providers[0] (litellm).base_url",
                 "invalid variable name '1HOST'", id="invalid-variable-name"),
    pytest.param({"headers": '{ "X-Trace" = "a\\r\\nInjected: 1" }'}, {},
                 "providers[0] (litellm).headers.X-Trace", "can't hold a control character",
                 id="header-value-crlf"),
    pytest.param({"headers": '{ "X Trace" = "a" }'}, {}, "providers[0] (litellm).headers",
                 "got 'X Trace'", id="header-name-with-space"),
    pytest.param({"server": 'port = "${PORT}"'}, {"PORT": "abc"}, "server.port",
                 "expected an integer from ${PORT}, got 'abc'", id="port-from-env-not-a-number"),
    pytest.param({"base_url": '"ftp://127.0.0.1/v1"'}, {}, "providers[0] (litellm).base_url",
                 "expected an http:// or https:// URL", id="url-scheme-ftp"),
    pytest.param({"base_url": '"http:///v1"'}, {}, "providers[0] (litellm).base_url",
                 "expected a host after http://", id="url-without-host"),
]


@pytest.mark.parametrize(("fields", "env", "key", "expected"), BROKEN)
def test_check_and_serve_refuse_the_same_way(
    tmp_path: Path, fields: dict[str, str], env: dict[str, str], key: str, expected: str
) -> None:
    """check and serve both exit 2 with the same one error: line naming the file and the key path."""
    fields = dict(fields)
    server = fields.pop("server", "")
    path = _config(tmp_path, server, **fields)
    check = _error_line(cli(tmp_path, "check", "--config", str(path), timeout=20, **env))
    serve = _error_line(cli(tmp_path, "--config", str(path), "--port", str(free_port()), timeout=20, **env))
    assert check == serve
    assert check.startswith(f"error: {path}: {key}: ")
    assert expected in check


def test_secret_variable_never_printed_by_check_or_serve(tmp_path: Path) -> None:
    """A provider key substituted into a bad port shows as *** in check's and serve's error."""
    path = _config(tmp_path, 'port = "${GROQ_API_KEY}"')
    secret = "gsk-do-not-print-me"
    results = [cli(tmp_path, "check", "--config", str(path), timeout=20, GROQ_API_KEY=secret),
               cli(tmp_path, "--config", str(path), "--port", str(free_port()), timeout=20,
                   GROQ_API_KEY=secret)]
    for result in results:
        assert "server.port: expected an integer from ${GROQ_API_KEY}, got '***'" in _error_line(result)
        assert secret not in result.stdout + result.stderr


def test_check_accepts_a_port_from_the_environment(tmp_path: Path) -> None:
    """port = "${PORT:-8080}" is valid for check (it was refused as a string before)."""
    path = _config(tmp_path, 'port = "${PORT:-8080}"')
    result = cli(tmp_path, "check", "--config", str(path), timeout=20, PORT="9191")
    assert result.returncode == 0, result.stderr
    assert f"{path}: valid" in result.stdout


def test_check_warns_about_equal_priorities(tmp_path: Path) -> None:
    """Two providers at one priority: check is still valid, and a warning says the earlier wins."""
    second = '\n[[providers]]\nname = "backup"\nbase_url = "http://127.0.0.1:8/v1"\n' \
             'priority = 1\nmodels = { chat = "m" }\n'
    path = _config(tmp_path, provider=second, priority="1")
    result = cli(tmp_path, "check", "--config", str(path), timeout=20)
    assert result.returncode == 0, result.stderr
    assert "WARNING actors.config" in result.stderr
    assert "the earlier in the file, providers[0] (litellm), is tried first" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("check",), id="check"),
        pytest.param(("--port", "0"), id="serve"),
    ],
)
def test_missing_config_names_the_directory_and_the_option(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Run from a directory without config.toml: the error names that directory and --config PATH."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = _error_line(cli(elsewhere, *command, timeout=20))
    assert line == (f"error: config.toml: file not found (looked in {elsewhere}; "
                    "pass --config PATH to use another file)")
