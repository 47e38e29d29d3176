"""The exported event log: JSON lines, one header, then one tagged message per line.

::

    {"format": "provider-fallback-events", "schema_version": 2, "exported_at": ..., "config": {...}, ...}
    {"type": "supervisor_started", "at": 1800000000.0, "providers": [...]}
    {"type": "attempt_failed", "at": 1800000001.5, "provider": "litellm", "status": 503, ...}
    {"type": "error_classified", ...}

Each message line is exactly what the state file stores
(:func:`~actors.messages.encode_message`), so exporting a million events
copies bytes and decodes nothing. The header names the schema version and the
config the log ran under, without secrets: API keys, the admin token and
client keys live in environment variables and are never in a :class:`Config`'s
public form; header values are masked and credentials in a URL are dropped.

Reading is strict and says where it broke: a corrupt or truncated line is an
:class:`~actors.errors.EventLogError` naming the file and the line. A log from
an older schema version is migrated line by line; a newer one is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args

import msgspec

from actors.core.config import Config, parse_config
from actors.core.errors import EventLogError
from actors.core.messages import SCHEMA_VERSION, LoggedMessage
from actors.core.public_config import CONFIG_META
from actors.core.states import Category, Tier

__all__ = ("CONFIG_META", "FORMAT", "MIGRATIONS", "EventLog", "LogHeader", "read_log", "replay_config")

FORMAT = "provider-fallback-events"


class LogHeader(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The first line of an exported log."""

    format: str
    schema_version: int
    exported_at: float = 0.0
    source: str = ""
    config: dict[str, Any] | None = None  # public_config(): no secrets
    configured: list[str] | None = None  # providers whose key variable was set
    filters: dict[str, Any] = {}
    migrated_from: int | None = None  # set when read: the version it was written in


class EventLog(msgspec.Struct, kw_only=True):
    """A log read into memory: its header, and its messages in logged order."""

    header: LogHeader
    messages: list[LoggedMessage]
    path: str = "<log>"


# ---------------------------------------------------------------- config, without secrets


def replay_config(data: dict[str, Any], configured: Iterable[str] | None, *, source: str) -> Config:
    """Rebuild a config from its public form; ``configured`` providers get a stand-in key (unused)."""
    names = set(configured) if configured is not None else None
    # A key the recorded config lacks did not exist when it ran: its behaviour was the one the key's
    # "off" value gives, not today's default (early recovery probes came with probe_min_interval_s).
    health = data.get("health")
    if isinstance(health, dict):
        came_later = {"probe_min_interval_s": 0, "probe_max_interval_s": 0}  # key -> its "off" value
        data = {**data, "health": {**{k: v for k, v in came_later.items() if k not in health}, **health}}
    env = {
        p["api_key_env"]: "replay"
        for p in data.get("providers", ())
        if isinstance(p, dict) and p.get("api_key_env") and (names is None or p.get("name") in names)
    }
    return parse_config(data, env=env, source=source)


# ---------------------------------------------------------------- reading

_decoder: msgspec.json.Decoder[LoggedMessage] = msgspec.json.Decoder(LoggedMessage)
_header_decoder = msgspec.json.Decoder(LogHeader)
_tags = frozenset(str(t.__struct_config__.tag) for t in LoggedMessage.__args__)


def _from_v1(line: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: only fields with defaults were added; the lines read as they are."""
    return line


_CATEGORIES = frozenset(get_args(Category))
_TIERS = frozenset(get_args(Tier))
_CAUSED = frozenset({"degraded", "cooldown", "unhealthy"})


def _from_v2(line: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 -> 3: the facts version 2 kept in text become the typed fields that replace them.

    ``error_classified`` on a health check had the request id ``health-<tier>``:
    now ``check``. ``provider_state_changed`` into a failure state had the
    category, or ``probe_failed:<category>``, as its reason: now ``cause`` and ``probe``.
    """
    kind = line.get("type")
    if kind == "error_classified":
        request_id = str(line.get("request_id", ""))
        tier = request_id.removeprefix("health-")
        if request_id.startswith("health-") and tier in _TIERS:
            line["check"] = tier
    elif kind == "provider_state_changed" and line.get("new") in _CAUSED:
        reason = str(line.get("reason", ""))
        probe = reason.startswith("probe_failed:")
        cause = reason.removeprefix("probe_failed:")
        if cause in _CATEGORIES:
            line["cause"] = cause
        if probe:
            line["probe"] = True
    return line


#: version -> the function that lifts one line of that version to the next.
def _from_v3(line: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 -> 4: ``timer_fired`` lines are new; a version-3 log has none (replay derives them)."""
    return line


def _from_v4(line: dict[str, Any]) -> dict[str, Any]:
    """Schema 4 -> 5: the new fields keep their defaults (replay does not compare them: ADDED_FIELDS)."""
    return line


def _from_v5(line: dict[str, Any]) -> dict[str, Any]:
    """Schema 5 -> 6: a 400 was the caller's the moment it came (now an unclear one waits for the next
    provider's answer and is logged with ``whose``): a version-5 400 had gone back to the caller."""
    if line.get("type") == "attempt_failed" and line.get("status") in (400, 422) and "whose" not in line:
        line["whose"] = "caller"
    return line


def _from_v6(line: dict[str, Any]) -> dict[str, Any]:
    """Schema 6 -> 7: the shared-state inputs are new, and a version-6 move was never a peer's."""
    return line


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _from_v1, 2: _from_v2, 3: _from_v3, 4: _from_v4, 5: _from_v5, 6: _from_v6}


def _lines(source: str | os.PathLike[str] | Iterable[str | bytes]) -> Iterator[bytes]:
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            yield from f
    else:
        for line in source:
            yield line.encode() if isinstance(line, str) else line


def read_log(source: str | os.PathLike[str] | Iterable[str | bytes], *, path: str | None = None) -> EventLog:
    """Read an exported log (a path, or lines); raise EventLogError naming the line that broke."""
    where = path or (os.fspath(source) if isinstance(source, str | os.PathLike) else "<log>")
    try:
        lines = _lines(source)
        first = next(lines, None)
    except OSError as exc:
        raise EventLogError(f"cannot read it: {exc.strerror or exc}", path=where) from None
    if first is None or not first.strip():
        raise EventLogError("is empty: an exported log starts with a header line", path=where, line=1)
    try:
        header = _header_decoder.decode(first)
    except msgspec.DecodeError as exc:
        raise EventLogError(f"not a provider-fallback event log header ({exc})", path=where,
                            line=1) from None
    if header.format != FORMAT:
        raise EventLogError(f"format is {header.format!r}, expected {FORMAT!r}", path=where, line=1)
    version = header.schema_version
    if version > SCHEMA_VERSION:
        raise EventLogError(
            f"written with schema version {version}; this provider-fallback reads versions up to"
            f" {SCHEMA_VERSION}: upgrade provider-fallback to replay it", path=where, line=1)
    steps = [MIGRATIONS.get(v) for v in range(version, SCHEMA_VERSION)]
    if None in steps:
        raise EventLogError(
            f"written with schema version {version}, which can't be migrated to {SCHEMA_VERSION}"
            f" (migrations exist from versions {sorted(MIGRATIONS)})", path=where, line=1)
    if version != SCHEMA_VERSION:
        header.migrated_from = version
    messages: list[LoggedMessage] = []
    number = 1
    try:
        for number, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            messages.append(_decode_line(line, steps, where, number))
    except OSError as exc:
        raise EventLogError(f"cannot read it: {exc.strerror or exc}", path=where, line=number) from None
    return EventLog(header=header, messages=messages, path=where)


def _decode_line(line: bytes, steps: list[Any], where: str, number: int) -> LoggedMessage:
    try:
        if not steps:
            return _decoder.decode(line)
        raw = msgspec.json.decode(line)
        for step in steps:
            raw = step(raw)
        message: LoggedMessage = msgspec.convert(raw, LoggedMessage)
        return message
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        text = str(exc)
        if not line.endswith(b"\n") and isinstance(exc, msgspec.DecodeError):
            why = f"truncated: the file ends in the middle of an event ({text})"
        elif "Invalid value" in text and "$.type" in text:
            tag = _tag_of(line)
            why = f"unknown event type {tag!r} (known: {', '.join(sorted(_tags))})"
        else:
            why = f"not a valid event: {text}"
        raise EventLogError(why, path=where, line=number) from None


def _tag_of(line: bytes) -> str:
    try:
        raw = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return "?"
    return str(raw.get("type")) if isinstance(raw, dict) else "?"
