"""Redis URLs for ``[state] shared_url``: which ones are accepted, where they point, text without secrets.

Accepted: ``redis://host[:port][/db]``, ``rediss://`` (the same over TLS) and
``unix:///path/to/socket[?db=N]``. A password is never written in the URL
(``redis://:pw@host`` or ``?password=``): it lives in the environment variable
``[state] shared_password_env`` names, :func:`~actors.core.config.load_config`
resolves it into a :class:`~actors.core.config_schema.Secret`, and the caller
hands it to the client beside the URL. A user name (Redis 6 ACL) may be
written; it is never shown either.

Pure functions, no I/O: the config check and the edge that connects
(:mod:`actors.edges.shared`) use the same rules and the same redaction.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

__all__ = ("SHARED_SCHEMES", "describe_redis_url", "scrub", "shared_url_problem")

SHARED_SCHEMES = ("redis", "rediss", "unix")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")
_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")
_HOST = re.compile(r"[\w.-]+")


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each of ``secrets`` and any URL's ``user:password@`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _USERINFO.sub("***@", text)


def describe_redis_url(url: str) -> str:
    """Where a (valid) URL points, for logs and errors: ``host:port[/db]`` or ``unix:/path``, nothing else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = parts.path.strip("/")
    return f"{host}:{port}" + (f"/{db}" if db not in ("", "0") else "")


def shared_url_problem(url: str) -> str | None:
    """What is wrong with a ``shared_url`` (never showing a password or user name), or None."""
    if not url:
        return None
    shown = scrub(url)
    if _CONTROL.search(url):
        return f"expected a URL without spaces or control characters, got {shown!r}"
    try:
        parts = urllib.parse.urlsplit(url)
        password, query = parts.password, urllib.parse.parse_qs(parts.query)
    except ValueError as exc:
        return f"expected a valid URL ({exc}), got {shown!r}"
    if parts.scheme not in SHARED_SCHEMES or not url.lower().startswith(f"{parts.scheme}://"):
        return f"expected a redis://, rediss:// or unix:// URL, got {shown!r}"
    if password is not None or "password" in query:
        # The URL is not shown: the password is in it.
        return ("a password can't be written in the URL: put it in an environment variable and "
                "name that variable in shared_password_env (the URL is not shown)")
    if parts.fragment:
        return f"expected no #fragment, got {shown!r}"
    if parts.scheme == "unix":
        if parts.netloc.rpartition("@")[2] or not parts.path.startswith("/"):
            return f"expected unix:///absolute/path/to/socket, got {shown!r}"
        db = query.get("db", ["0"])[-1]
    else:
        host = parts.netloc.rpartition("@")[2]
        name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
        if not name or not (host.startswith("[") or _HOST.fullmatch(name)):
            return f"expected a host after {parts.scheme}://, got {shown!r}"
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            return f"expected a port from 1 to 65535, got {shown!r}"
        db = parts.path.strip("/") or "0"
    if not db.isdigit():
        return f"expected a database number (redis://host:6379/0), got {db!r} in {shown!r}"
    return None
