"""Opening the state file: the checks, the pragmas and the migrations, before a Store owns it.

Every way a file can be unusable (a directory, another application's
database, a newer schema, read-only, locked) is a
:class:`~actors.core.errors.StoreError` naming the path and a fix, raised here
at open, never at the first write.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse

import aiosqlite
import anyio
import msgspec

from actors.core.errors import StoreError
from actors.core.messages import ProviderMetrics
from actors.edges.store.schema import MIGRATIONS, UPSERT_META, Counts, close_quietly, translated

__all__ = ("connect_readonly", "connect_writable")

_log = logging.getLogger("actors.edges.store")
_metrics_decoder = msgspec.json.Decoder(ProviderMetrics)


async def connect_writable(where: str, busy_timeout_s: float,
                           ) -> tuple[aiosqlite.Connection, dict[str, Counts]]:
    """Create or migrate the file; return the connection and each provider's stored counts."""
    if await anyio.Path(where).is_dir():
        example = os.path.join(where, "fallback.db")
        raise StoreError(f"is a directory, not a database file; use a file path such as {example}",
                         path=where)
    try:
        await anyio.Path(where).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create its directory ({exc}); create it or choose another state path",
                         path=where) from exc
    with translated(where, busy_timeout_s):
        db = await aiosqlite.connect(where, timeout=busy_timeout_s, isolation_level=None)
    try:
        with translated(where, busy_timeout_s):
            baselines = await _prepare(db, where)
    except BaseException:
        await close_quietly(db)
        raise
    return db, baselines


async def connect_readonly(where: str, busy_timeout_s: float) -> aiosqlite.Connection:
    """Open an existing state file read-only (export, offline status): it is never written."""
    if not await anyio.Path(where).is_file():
        raise StoreError("does not exist (nothing has been recorded there yet)", path=where)
    uri = f"file:{urllib.parse.quote(str(await anyio.Path(where).absolute()))}?mode=ro"
    with translated(where, busy_timeout_s):
        db = await aiosqlite.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
    try:
        with translated(where, busy_timeout_s):
            rows = await db.execute_fetchall(
                "SELECT (SELECT count(*) FROM sqlite_master WHERE name = 'schema_version')")
            ((has_schema,),) = rows
            version = 0
            if has_schema:
                ((version,),) = await db.execute_fetchall(
                    "SELECT coalesce(max(version), 0) FROM schema_version")
    except BaseException:
        await close_quietly(db)
        raise
    if not has_schema or version > len(MIGRATIONS):
        await close_quietly(db)
        why = ("is not a provider-fallback state file" if not has_schema else
               f"was written by a newer provider-fallback (schema version {version}); upgrade")
        raise StoreError(why, path=where)
    return db


async def _prepare(db: aiosqlite.Connection, where: str) -> dict[str, Counts]:
    """Set the pragmas, migrate, probe for writability, read the metric baselines."""
    (mode,) = next(iter(await db.execute_fetchall("PRAGMA journal_mode=WAL")))
    if mode != "wal":
        _log.warning("state file %s: journal mode is %s, not wal", where, mode)
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("BEGIN IMMEDIATE")  # a locked file fails here, at open
    try:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        ((version, others),) = await db.execute_fetchall(
            "SELECT (SELECT coalesce(max(version), 0) FROM schema_version),"
            " (SELECT count(*) FROM sqlite_master WHERE name != 'schema_version')"
        )
        if version > len(MIGRATIONS):
            raise StoreError(
                f"was written by a newer provider-fallback (schema version {version}; this"
                f" one knows up to {len(MIGRATIONS)}); upgrade provider-fallback or choose"
                " another state path",
                path=where,
            )
        if version == 0 and others:
            raise StoreError("is a SQLite database of another application; choose another state path",
                             path=where)
        for number in range(version + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[number - 1]:
                await db.execute(statement)
            await db.execute("INSERT INTO schema_version VALUES (?, ?)", (number, time.time()))
        # A real write, so a read-only file fails here, at open, not at the first flush.
        await db.execute(UPSERT_META, ("store.opened_at", repr(time.time())))
        rows = await db.execute_fetchall("SELECT name, data FROM provider_metrics")
        await db.execute("COMMIT")
    except BaseException:
        await db.rollback()
        raise
    baselines: dict[str, Counts] = {}
    for name, data in rows:
        try:
            m = _metrics_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # Store.load_metrics says so when the supervisor reads it
        baselines[name] = (m.requests_total, m.requests_success, m.requests_failed)
    return baselines
