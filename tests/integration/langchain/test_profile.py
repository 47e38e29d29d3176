"""FallbackChatModel.profile holds for the whole chain; the per-model keys it reads, and their errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import ModelProfile

from actors.core.config import parse_config
from actors.core.errors import ConfigError
from actors.core.public_config import public_config
from actors.langchain import FallbackChatModel

GPT = {"model": "gpt-4o-mini", "max_input_tokens": 128000, "max_output_tokens": 16384, "tool_calling": True}
GROQ = {"model": "llama-70b", "max_input_tokens": 32768, "max_output_tokens": 32768, "tool_calling": True}


def _profile(*models: Any, env: dict[str, str] | None = None, model: str = "chat",
             keys: tuple[str | None, ...] = ()) -> ModelProfile | None:
    providers = [{"name": f"p{i}", "base_url": f"http://p{i}.test", "priority": i, "models": m,
                  **({"api_key_env": keys[i]} if i < len(keys) and keys[i] else {})}
                 for i, m in enumerate(models)]
    config = parse_config({"providers": providers}, env=env or {})
    llm = FallbackChatModel(config=config, model=model)  # never called: its Supervisor never starts
    llm.close()
    return llm.profile


@pytest.mark.parametrize(("models", "expected"), [
    pytest.param(({"chat": GPT}, {"chat": GROQ}),
                 {"max_input_tokens": 32768, "max_output_tokens": 16384, "tool_calling": True}, id="smallest-of-each"),
    pytest.param(({"chat": GPT}, {"chat": {**GROQ, "tool_calling": False}}),
                 {"max_input_tokens": 32768, "max_output_tokens": 16384, "tool_calling": False}, id="one-without-tools"),
    pytest.param(({"chat": GPT}, {"chat": "plain-string"}), {}, id="one-states-nothing"),
    pytest.param(({"chat": GPT}, {"chat": {"model": "m", "max_input_tokens": 8192}}),
                 {"max_input_tokens": 8192}, id="only-what-all-state"),
    pytest.param(({"chat": GPT}, {"fast": {**GROQ, "max_input_tokens": 1}}),
                 {"max_input_tokens": 128000, "max_output_tokens": 16384, "tool_calling": True},
                 id="a-provider-of-another-model-does-not-count"),
])
def test_the_profile_holds_for_every_provider_of_the_model(models: tuple[Any, ...], expected: ModelProfile) -> None:
    """Smallest limits, tool_calling only if all call tools, a key only if every provider states it."""
    assert _profile(*models) == expected


def test_a_provider_without_its_key_is_not_in_the_chain() -> None:
    """An unconfigured provider (its key variable unset) is never called, so its limits do not count."""
    small = {"chat": {**GROQ, "max_input_tokens": 10, "tool_calling": False}}
    assert _profile({"chat": GPT}, small, keys=(None, "P1_KEY")) == {
        "max_input_tokens": 128000, "max_output_tokens": 16384, "tool_calling": True}
    assert _profile({"chat": GPT}, small, keys=(None, "P1_KEY"), env={"P1_KEY": "k"})["tool_calling"] is False  # type: ignore[index]


def test_the_table_form_loads_from_a_file_beside_the_string_form(tmp_path: Path) -> None:
    """config_path= with ``models = { chat = { model = ... } }``: the upstream id still routes, the limits profile."""
    path = tmp_path / "config.toml"
    path.write_text(f"""
[state]
path = "{tmp_path / 'state.db'}"

[[providers]]
name = "openai"
base_url = "https://api.openai.com/v1"
models = {{ chat = {{ model = "gpt-4o-mini", max_input_tokens = 128000, max_output_tokens = 16384, tool_calling = true }}, fast = "gpt-4o-nano" }}
""")
    with FallbackChatModel(config_path=path, model="chat") as llm:
        assert llm.profile == {"max_input_tokens": 128000, "max_output_tokens": 16384, "tool_calling": True}
        assert llm.config is not None
        assert llm.config.providers[0].models == {"chat": "gpt-4o-mini", "fast": "gpt-4o-nano"}


@pytest.mark.parametrize(("table", "key", "says"), [
    pytest.param('{ model = "m", max_input_tokens = 0 }', "models.chat.max_input_tokens", "got 0", id="zero"),
    pytest.param('{ model = "m", max_output_tokens = "lots" }', "models.chat.max_output_tokens", "got 'lots'",
                 id="not-a-number"),
    pytest.param('{ model = "m", tool_calling = "yes" }', "models.chat.tool_calling", "true or false", id="not-bool"),
    pytest.param('{ model = "m", context = 5 }', "models.chat.context", "unknown key", id="unknown-key"),
    pytest.param("{ max_input_tokens = 5 }", "models.chat.model", "upstream model id", id="no-model"),
    pytest.param("7", "models.chat", "upstream model id", id="neither-string-nor-table"),
])
def test_a_bad_per_model_key_is_a_config_error_naming_it(tmp_path: Path, table: str, key: str, says: str) -> None:
    """FallbackChatModel(config_path=...) raises the ConfigError itself, naming file and key path."""
    path = tmp_path / "config.toml"
    path.write_text(f'[[providers]]\nname = "alpha"\nbase_url = "http://alpha.test"\nmodels = {{ chat = {table} }}\n')
    with pytest.raises(ConfigError, match=says) as caught:
        FallbackChatModel(config_path=path)
    assert caught.value.key == f"providers[0] (alpha).{key}"
    assert str(path) in str(caught.value)


def test_the_limits_survive_an_exported_config() -> None:
    """public_config (the event log's header) writes them under model_limits; parse_config reads them back."""
    raw = {"providers": [{"name": "alpha", "base_url": "http://alpha.test", "models": {"chat": GPT, "fast": "f"}}]}
    config = parse_config(raw)
    exported = public_config(config)
    assert exported["providers"][0]["models"] == {"chat": "gpt-4o-mini", "fast": "f"}
    assert parse_config(exported) == config
    assert raw["providers"][0]["models"]["chat"] == GPT  # type: ignore[index]  # the caller's data is untouched


def test_a_variable_may_set_a_limit() -> None:
    """A whole-reference string takes the key's type, as everywhere else in the config."""
    table = {"model": "m", "max_input_tokens": "${CONTEXT}", "tool_calling": "${TOOLS:-yes}"}
    config = parse_config({"providers": [{"name": "a", "base_url": "http://a.test", "models": {"chat": table}}]},
                          env={"CONTEXT": "8192"})
    limits = config.providers[0].model_limits["chat"]
    assert (limits.max_input_tokens, limits.tool_calling) == (8192, True)
