"""What each provider ``kind`` asks of its ``[[providers]]`` table: the keys it requires, the keys
only it takes, and the base URL a ``vertex`` provider derives from its project and location.

:mod:`actors.core.config` calls :func:`with_derived_url` on every provider after conversion and
reports each of :func:`kind_problems` as a ConfigError naming the key. Pure: no I/O (a
``credentials_file`` or ``private_key_file`` is read by the adapter, so a config still loads, for
``check`` and replay, on a machine that lacks the file).

- ``vertex``: Vertex AI's OpenAI-compatible endpoint,
  ``https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/endpoints/openapi``
  (``https://aiplatform.googleapis.com/...`` for ``location = "global"``), per
  https://cloud.google.com/vertex-ai/generative-ai/docs/learn/locations#use_the_global_endpoint.
  ``base_url`` may override it: a bare origin (``https://aiplatform.us.rep.googleapis.com``) gets the
  standard path appended, a URL with a path is used as it is. Google credentials, never api_key_env.
- ``snowflake``: Cortex on the account URL; a PAT in ``api_key_env``, or key-pair JWTs from
  ``user``, ``account`` and ``private_key_file`` (one of the two, not both).
"""

from __future__ import annotations

import re
import urllib.parse

import msgspec

from actors.core.config_schema import ProviderConfig

__all__ = ("KIND_KEYS", "kind_problems", "vertex_base_url", "with_derived_url")

#: The keys only one kind takes (others refuse them when set).
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "vertex": ("project", "location", "credentials_file"),
    "snowflake": ("user", "account", "private_key_file", "private_key_passphrase_env"),
}
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")  # a region (us-central1) or "global": it is in the host
_PROJECT = re.compile(r"^[a-z][a-z0-9.:-]*[a-z0-9]$")  # a project id, domain-scoped ones too (example.com:p)


def vertex_base_url(project: str, location: str, origin: str = "") -> str:
    """The OpenAI base URL of Vertex AI's ``endpoints/openapi`` for a project and location."""
    if not origin:
        origin = ("https://aiplatform.googleapis.com" if location == "global"
                  else f"https://{location}-aiplatform.googleapis.com")
    return f"{origin.rstrip('/')}/v1/projects/{project}/locations/{location}/endpoints/openapi"


def with_derived_url(p: ProviderConfig) -> ProviderConfig:
    """``p`` with the base URL its kind derives (vertex: from project and location), else as it is."""
    if p.kind != "vertex" or not p.project or not p.location:
        return p
    if p.base_url and urllib.parse.urlsplit(p.base_url).path not in ("", "/"):
        return p  # a whole URL: used as it is
    return msgspec.structs.replace(p, base_url=vertex_base_url(p.project, p.location, p.base_url))


def kind_problems(p: ProviderConfig) -> list[tuple[str, str]]:
    """(key, what is wrong) for each key ``p``'s kind requires and lacks, or takes and refuses."""
    problems: list[tuple[str, str]] = []
    for kind, keys in KIND_KEYS.items():
        if p.kind != kind:
            problems += [(k, f'applies only to kind = "{kind}" (this provider is kind = "{p.kind}")')
                         for k in keys if getattr(p, k)]
    if p.kind == "vertex":
        problems += _vertex(p)
    elif p.kind == "snowflake":
        problems += _snowflake(p)
    if not p.base_url and p.kind != "vertex":
        problems.append(("base_url", f'required key is missing (kind = "{p.kind}"; only vertex derives it): '
                                     'e.g. base_url = "https://api.example.com/v1"'))
    return problems


def _vertex(p: ProviderConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not p.project:
        problems.append(("project", 'required for kind = "vertex": the Google Cloud project id, '
                                    'e.g. project = "my-project"'))
    elif not _PROJECT.fullmatch(p.project):
        problems.append(("project", f"expected a Google Cloud project id, got {p.project!r}"))
    if not p.location:
        problems.append(("location", 'required for kind = "vertex": a region such as "us-central1", '
                                     'or "global"'))
    elif not _LOCATION.fullmatch(p.location):
        problems.append(("location", f'expected a region such as "us-central1", or "global", '
                                     f"got {p.location!r}"))
    if p.api_key_env:
        problems.append(("api_key_env", 'kind = "vertex" signs in with Google credentials: set '
                                        "credentials_file, or leave it out for application default "
                                        "credentials"))
    return problems


def _snowflake(p: ProviderConfig) -> list[tuple[str, str]]:
    if p.private_key_passphrase_env and not _VARIABLE.fullmatch(p.private_key_passphrase_env):
        return [("private_key_passphrase_env",
                 f"expected an environment variable name, got {p.private_key_passphrase_env!r}")]
    keypair = ("user", "account", "private_key_file")
    if not p.private_key_file:
        if p.api_key_env:
            extra = [k for k in ("user", "account", "private_key_passphrase_env") if getattr(p, k)]
            return [(k, "takes effect only with private_key_file (key-pair auth)") for k in extra]
        return [("api_key_env", 'kind = "snowflake" needs a programmatic access token in the variable '
                                "api_key_env names, or key-pair auth (user, account, private_key_file)")]
    if p.api_key_env:
        return [("api_key_env", "choose one: a programmatic access token (api_key_env) or key-pair "
                                "auth (private_key_file), not both")]
    return [(k, 'required for key-pair auth (kind = "snowflake" with private_key_file)')
            for k in keypair if not getattr(p, k)]
