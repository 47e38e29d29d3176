"""A config's public form: what may be written to a state file or an exported log.

No secret is in it: API keys, the admin token and client keys live in
environment variables and are dropped; header values are masked and
credentials in a URL are removed. :func:`~actors.core.config.parse_config`
reads the result back.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import msgspec

from actors.core.config import Config

__all__ = ("CONFIG_META", "public_config", "public_url")

#: The state file's meta key under which a service records the config it runs under.
CONFIG_META = "config"


def public_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to print or store."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def public_config(config: Config) -> dict[str, Any]:
    """The config as TOML-shaped data that :func:`parse_config` reads back, with no secret in it."""
    data: dict[str, Any] = msgspec.to_builtins(
        msgspec.structs.replace(
            config,
            server=msgspec.structs.replace(config.server, admin_token=None, client_keys=()),
            state=msgspec.structs.replace(config.state, shared_password=None),
            providers=tuple(
                msgspec.structs.replace(p, api_key=None, private_key_passphrase=None,
                                        base_url=public_url(p.base_url),
                                        headers=dict.fromkeys(p.headers, "***"))
                for p in config.providers
            ),
        )
    )
    data.pop("source", None)
    for key in ("admin_token", "client_keys"):
        data["server"].pop(key, None)
    data["state"].pop("shared_password", None)
    for p in data["providers"]:
        p.pop("api_key", None)
        p.pop("private_key_passphrase", None)
    return data
