"""Opening the state file: the checks, the pragmas and the migrations, before a Store owns it.

Every way a file can be unusable (a directory, another application's
database, a newer schema, read-only, locked) is a
:class:`~actors.core.errors.StoreError` naming the path and a fix, raised here
at open, never at the first write.
"""

from __future__ import annotations

import contextlib
import fcntl
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

__all__ = ("OwnerLock", "connect_readonly", "connect_writable")

_log = logging.getLogger("actors.edges.store")
_metrics_decoder = msgspec.json.Decoder(ProviderMetrics)


class OwnerLock:
    """The one owner of a state file: an OS lock on ``<path>.lock``, held for the owner's life.

    ``flock`` is released by the kernel when the process ends however it ends
    (kill -9 included), so a crash never leaves a stale lock behind. The file
    holds the owner's pid, for the message a second owner gets. Read-only
    users (export, offline status) take no lock.
    """

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def take(cls, where: str) -> OwnerLock:
        """Lock ``where``'s lock file or raise StoreError naming the owner's pid."""
        lock_path = where + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open its lock file {lock_path} ({exc.strerror or exc});"
                             " check the directory's permissions", path=where) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_pid(fd)
            os.close(fd)
            who = f"pid {owner}" if owner else "another process"
            raise StoreError(f"is in use by another provider-fallback service ({who}); stop it, or give"
                             " this one its own [state] path (sharing state between instances is"
                             " [state] shared_url)", path=where) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, lock_path)

    def release(self) -> None:
        """Unlock (closing the descriptor releases the flock); calling it again does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


async def connect_writable(where: str, busy_timeout_s: float,
                           ) -> tuple[aiosqlite.Connection, dict[str, Counts]]:
    """Create or migrate the file (its directory exists); return the connection and the stored counts."""
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
