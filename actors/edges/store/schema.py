"""The state file's schema and its edges: migrations, SQL, row types, error translation.

:mod:`actors.store` is the one owner of the file; this module holds what it
is made of, so that the owner stays about behaviour (buffering, flushing,
reading) rather than strings of SQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import aiosqlite
import anyio
import msgspec

from actors.core.errors import StoreError
from actors.core.messages import (
    LoggedMessage,
    Message,
    decode_message,
    encode_message,
)

__all__ = (
    "INSERT_EVENT",
    "MIGRATIONS",
    "UPSERT_META",
    "UPSERT_ROLLUP",
    "UPSERT_STATE",
    "Counts",
    "MetricRollup",
    "StoredEvent",
    "close_quietly",
    "event_row",
    "translated",
)

#: Ordered schema migrations; the schema version is how many have been applied.
#: Append only: never edit or reorder a released entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        # AUTOINCREMENT: ids are never reused after pruning, so ``after=`` cursors stay valid.
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,"
        " type TEXT NOT NULL, provider TEXT, data BLOB NOT NULL)",
        "CREATE INDEX events_at ON events (at)",
        "CREATE INDEX events_provider ON events (provider, id)",
        "CREATE TABLE provider_state (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE provider_metrics (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE metric_rollups (provider TEXT NOT NULL, bucket_start REAL NOT NULL,"
        " requests_total INTEGER NOT NULL, requests_success INTEGER NOT NULL,"
        " requests_failed INTEGER NOT NULL, PRIMARY KEY (provider, bucket_start)) WITHOUT ROWID",
        "CREATE INDEX metric_rollups_bucket ON metric_rollups (bucket_start)",
    ),
)

INSERT_EVENT = "INSERT INTO events (at, type, provider, data) VALUES (?, ?, ?, ?)"
UPSERT_STATE = (
    "INSERT INTO {} (name, data, updated_at) VALUES (?, ?, ?) ON CONFLICT (name)"
    " DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
)
UPSERT_ROLLUP = (
    "INSERT INTO metric_rollups VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, bucket_start)"
    " DO UPDATE SET requests_total = requests_total + excluded.requests_total,"
    " requests_success = requests_success + excluded.requests_success,"
    " requests_failed = requests_failed + excluded.requests_failed"
)
UPSERT_META = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


Counts = tuple[int, int, int]


class StoredEvent(msgspec.Struct, frozen=True):
    """One row of the event log; ``data`` is the :func:`~actors.messages.encode_message` JSON."""

    id: int
    at: float
    type: str
    provider: str | None
    data: bytes

    @property
    def message(self) -> LoggedMessage:
        """The stored message, decoded."""
        return decode_message(self.data)


class MetricRollup(msgspec.Struct, frozen=True):
    """What a provider counted during the hour starting at ``bucket_start``."""

    provider: str
    bucket_start: float
    requests_total: int
    requests_success: int
    requests_failed: int


def event_row(message: Message) -> tuple[float, str, str | None, bytes]:
    provider = getattr(message, "provider", None) or getattr(message, "from_provider", None)
    return (message.at, str(type(message).__struct_config__.tag), provider, encode_message(message))


_FIXES = {
    sqlite3.SQLITE_BUSY: "the database is locked by another process for longer than"
    " busy_timeout_s={}; stop the other process (another provider-fallback instance, or a sqlite3"
    " shell inside a transaction) or give each instance its own state path",
    sqlite3.SQLITE_READONLY: "the file or its directory is read-only; make both writable by this"
    " user (SQLite also writes -wal and -shm files beside it) or choose another state path",
    sqlite3.SQLITE_NOTADB: "the file is not a SQLite database or is corrupt; move it aside to"
    " start with fresh state, or restore it from a backup",
    sqlite3.SQLITE_CANTOPEN: "the file cannot be opened; check that it and its directory exist"
    " and are writable by this user",
    sqlite3.SQLITE_FULL: "the disk is full; free some space or lower retention_days",
}
_FIXES[sqlite3.SQLITE_LOCKED] = _FIXES[sqlite3.SQLITE_BUSY]
_FIXES[sqlite3.SQLITE_CORRUPT] = _FIXES[sqlite3.SQLITE_NOTADB]
_FIXES[sqlite3.SQLITE_PERM] = _FIXES[sqlite3.SQLITE_AUTH] = _FIXES[sqlite3.SQLITE_CANTOPEN]


@contextlib.contextmanager
def translated(path: str, busy_timeout_s: float) -> Iterator[None]:
    """Turn sqlite3 errors into a StoreError that says what is wrong and how to fix it."""
    try:
        yield
    except sqlite3.Error as exc:
        why = _FIXES.get(exc.sqlite_errorcode & 0xFF, "SQLite failed").format(f"{busy_timeout_s:g}")
        raise StoreError(f"{why} (sqlite: {exc})", path=path) from exc


async def close_quietly(db: aiosqlite.Connection) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error, ValueError):
        await db.close()
