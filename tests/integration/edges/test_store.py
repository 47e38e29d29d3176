"""Tests for actors.store: the SQLite state file."""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from actors.core.errors import StoreError
from actors.core.messages import (
    ActorRestarted,
    AttemptFailed,
    AttemptSucceeded,
    FallbackTriggered,
    HealthChecked,
    ProviderMetrics,
    ProviderView,
    RoutingSnapshot,
    Tick,
)
from actors.edges.store.store import MIGRATIONS, MetricRollup, Store
from tests.helpers import REPO, require_tool

pytestmark = pytest.mark.anyio

HOUR = 1_800_000_000 - 1_800_000_000 % 3600  # the start of an hour, in epoch seconds


def ok(at: float, provider: str = "alpha", n: int = 0) -> AttemptSucceeded:
    return AttemptSucceeded(at=at, provider=provider, model="chat", request_id=f"r{n}", latency_ms=12.5)


def view(state: str = "cooldown", **changes: object) -> ProviderView:
    fields: dict[str, object] = {"name": "alpha", "priority": 1, "state": state} | changes
    return ProviderView(**fields)  # type: ignore[arg-type]


def counts(total: int, success: int, failed: int) -> ProviderMetrics:
    return ProviderMetrics(requests_total=total, requests_success=success, requests_failed=failed)


@contextlib.contextmanager
def sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the file, as another process would have."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        yield con
    finally:
        con.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "fallback.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(db_path) as opened:
        yield opened


async def reopen(store: Store) -> Store:
    await store.close()
    return await Store.open(store.path)


# ---------------------------------------------------------------- the event log


async def test_events_round_trip(store: Store) -> None:
    """Stored events come back in order, with ids, tags, provider and the decoded message."""
    messages = [
        ok(1.0),
        AttemptFailed(at=2.0, provider="beta", model="chat", request_id="r1", kind="http", status=503),
        FallbackTriggered(
            at=3.0, request_id="r1", from_provider="beta", to_provider="alpha", category="server_error"
        ),
        ActorRestarted(at=4.0, actor="HealthMonitor", error="boom", restarts=1),
    ]
    for message in messages:
        store.append(message)
    events = await store.events()
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert [e.type for e in events] == [
        "attempt_succeeded",
        "attempt_failed",
        "fallback_triggered",
        "actor_restarted",
    ]
    assert [e.provider for e in events] == ["alpha", "beta", "beta", None]
    assert [e.at for e in events] == [1.0, 2.0, 3.0, 4.0]
    assert [e.message for e in events] == messages


async def test_events_after_and_limit(store: Store) -> None:
    """``after`` skips ids up to it and ``limit`` caps the page."""
    for n in range(10):
        store.append(ok(float(n), n=n))
    page = await store.events(after=3, limit=4)
    assert [e.id for e in page] == [4, 5, 6, 7]
    assert await store.events(after=10) == []


async def test_events_before(store: Store) -> None:
    """``before`` keeps only ids below it."""
    for n in range(5):
        store.append(ok(float(n), n=n))
    assert [e.id for e in await store.events(after=1, before=4)] == [2, 3]


async def test_events_filter_by_provider(store: Store) -> None:
    """``provider`` matches the message's provider, or from_provider for a fallback."""
    store.append(ok(1.0, "alpha"))
    store.append(ok(2.0, "beta"))
    store.append(
        FallbackTriggered(at=3.0, request_id="r", from_provider="beta", to_provider=None, category="timeout")
    )
    assert [e.at for e in await store.events(provider="beta")] == [2.0, 3.0]


async def test_events_filter_by_time(store: Store) -> None:
    """``since`` is inclusive and ``until`` exclusive."""
    for n in range(6):
        store.append(ok(float(n), n=n))
    assert [e.at for e in await store.events(since=2.0, until=4.0)] == [2.0, 3.0]


async def test_events_filter_by_types(store: Store) -> None:
    """``types`` keeps only events with those tags."""
    store.append(ok(1.0))
    store.append(HealthChecked(at=2.0, provider="alpha", tier="ping", ok=True))
    store.append(ActorRestarted(at=3.0, actor="x", error="e", restarts=1))
    found = await store.events(types=["health_checked", "actor_restarted"])
    assert [e.type for e in found] == ["health_checked", "actor_restarted"]
    assert await store.events(types=[]) == []


async def test_negative_limit_is_rejected(store: Store) -> None:
    """A negative limit is an error, not SQLite's "no limit"."""
    with pytest.raises(ValueError, match="limit"):
        await store.events(limit=-1)


async def test_unlogged_messages_are_not_stored(store: Store) -> None:
    """Messages whose class says ``logged = False`` never reach the log."""
    store.append(RoutingSnapshot(at=1.0, version=1, providers=()))
    store.append(Tick(at=2.0))
    store.append(ok(4.0))
    assert [e.type for e in await store.events()] == ["attempt_succeeded"]


async def test_reads_see_buffered_writes(store: Store) -> None:
    """A read flushes first, so it sees everything appended before it."""
    for n in range(5):
        store.append(ok(float(n), n=n))
    assert await store.count_events() == 5


async def test_iter_events_streams_past_the_batch_size(store: Store) -> None:
    """iter_events yields every event in id order across many small batches."""
    for n in range(23):
        store.append(ok(float(n), n=n))
    ids = [event.id async for event in store.iter_events(batch=4)]
    assert ids == list(range(1, 24))


async def test_iter_events_applies_filters(store: Store) -> None:
    """iter_events honours provider, since and until."""
    for n in range(20):
        store.append(ok(float(n), "alpha" if n % 2 else "beta", n))
    found = [e.at async for e in store.iter_events(provider="alpha", since=4, until=15, batch=2)]
    assert found == [5.0, 7.0, 9.0, 11.0, 13.0]


async def test_iter_events_stops_at_the_log_end_of_its_start(store: Store) -> None:
    """Events appended while iterating are not part of that iteration."""
    for n in range(6):
        store.append(ok(float(n), n=n))
    seen = []
    async for event in store.iter_events(batch=2):
        seen.append(event.id)
        store.append(ok(100.0 + event.id))
    assert seen == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------- state, metrics, meta


async def test_provider_state_survives_reopen(store: Store) -> None:
    """The latest saved view of each provider is there after close and reopen."""
    store.save_provider(view("degraded", failure_count=1))
    store.save_provider(view("cooldown", failure_count=3, cooldown_until=HOUR + 300.0))
    store.save_provider(view("healthy", name="beta", priority=2))
    store = await reopen(store)
    try:
        loaded = await store.load_providers()
    finally:
        await store.close()
    assert loaded == {
        "alpha": view("cooldown", failure_count=3, cooldown_until=HOUR + 300.0),
        "beta": view("healthy", name="beta", priority=2),
    }


async def test_unreadable_provider_row_is_skipped(store: Store) -> None:
    """A stored provider row that no longer decodes is left out instead of failing the load."""
    store.save_provider(view("healthy"))
    await store.flush()
    with sqlite(Path(store.path)) as con:
        con.execute("INSERT INTO provider_state VALUES ('beta', '{\"state\": \"gone\"}', 0)")
    assert list(await store.load_providers()) == ["alpha"]


async def test_metrics_survive_reopen(store: Store) -> None:
    """The latest metrics snapshot of each provider is there after close and reopen."""
    snapshot = ProviderMetrics(
        requests_total=3,
        requests_success=2,
        requests_failed=1,
        failures_by_category={"timeout": 1},
        latencies_ms=(10.0, 20.0),
        last_success=HOUR + 5.0,
    )
    store.save_metrics("alpha", counts(1, 1, 0), HOUR)
    store.save_metrics("alpha", snapshot, HOUR + 10.0)
    store = await reopen(store)
    try:
        assert await store.load_metrics() == {"alpha": snapshot}
    finally:
        await store.close()


async def test_rollups_add_deltas_per_hour(store: Store) -> None:
    """Each save adds what was counted since the previous one to the hour of its time."""
    store.save_metrics("alpha", counts(3, 2, 1), HOUR + 10.0)
    store.save_metrics("alpha", counts(5, 4, 1), HOUR + 20.0)
    store.save_metrics("alpha", counts(6, 4, 2), HOUR + 3605.0)
    store.save_metrics("beta", counts(1, 1, 0), HOUR + 30.0)
    assert await store.rollups() == [
        MetricRollup("alpha", HOUR, 5, 4, 1),
        MetricRollup("beta", HOUR, 1, 1, 0),
        MetricRollup("alpha", HOUR + 3600.0, 1, 0, 1),
    ]
    assert await store.rollups(since=HOUR + 3700.0) == [MetricRollup("alpha", HOUR + 3600.0, 1, 0, 1)]


async def test_rollups_count_restarted_counters_in_full(store: Store) -> None:
    """Counts below the previous save mean the counters restarted, so they count in full."""
    store.save_metrics("alpha", counts(10, 9, 1), HOUR)
    store.save_metrics("alpha", counts(2, 2, 0), HOUR + 1.0)
    assert await store.rollups() == [MetricRollup("alpha", HOUR, 12, 11, 1)]


async def test_rollup_baseline_survives_reopen(store: Store) -> None:
    """After a restart, re-saving the restored counts adds nothing to the rollups."""
    store.save_metrics("alpha", counts(4, 3, 1), HOUR)
    store = await reopen(store)
    try:
        store.save_metrics("alpha", counts(4, 3, 1), HOUR + 60.0)
        store.save_metrics("alpha", counts(5, 4, 1), HOUR + 120.0)
        assert await store.rollups() == [MetricRollup("alpha", HOUR, 5, 4, 1)]
    finally:
        await store.close()


async def test_meta_round_trip(store: Store) -> None:
    """set_meta stores a value that get_meta returns, also after reopening."""
    assert await store.get_meta("config") is None
    await store.set_meta("config", "v1")
    await store.set_meta("config", '{"routing": {}}')
    store = await reopen(store)
    try:
        assert await store.get_meta("config") == '{"routing": {}}'
    finally:
        await store.close()


# ---------------------------------------------------------------- flushing and durability


async def test_async_with_closes_the_store(db_path: Path) -> None:
    """Leaving ``async with`` writes what is buffered and closes the store."""
    async with await Store.open(db_path) as store:
        store.append(ok(1.0))
    with pytest.raises(StoreError, match="closed"):
        await store.count_events()
    with sqlite(db_path) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)


async def test_close_flushes_buffered_events(db_path: Path) -> None:
    """Events appended and never flushed are written by close."""
    store = await Store.open(db_path)
    for n in range(3):
        store.append(ok(float(n), n=n))
    await store.close()
    with sqlite(db_path) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (3,)


async def test_close_is_idempotent_and_final(store: Store) -> None:
    """A second close does nothing, and a closed store refuses writes and reads."""
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append(ok(1.0))
    with pytest.raises(StoreError, match="closed"):
        await store.events()


async def test_close_stops_the_flusher(db_path: Path) -> None:
    """Closing the store makes a running flusher return after the final write."""
    store = await Store.open(db_path, flush_interval_s=3600)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            store.append(ok(time.time()))
            await store.close()
    with sqlite(db_path) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)


async def test_flusher_writes_on_its_interval(db_path: Path) -> None:
    """The running flusher commits appended events without anyone calling flush."""
    store = await Store.open(db_path, flush_interval_s=0.01)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            store.append(ok(time.time()))
            with anyio.fail_after(5):
                await store.wait_for_commit()
            tg.cancel_scope.cancel()
        with sqlite(db_path) as con:
            assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)
    finally:
        await store.close()


async def test_save_provider_wakes_the_flusher(db_path: Path) -> None:
    """A provider state change is committed at once, not at the next interval."""
    store = await Store.open(db_path, flush_interval_s=3600)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            store.save_provider(view("cooldown"))
            with anyio.fail_after(5):
                await store.wait_for_commit()
            with sqlite(db_path) as con:
                rows = con.execute("SELECT name FROM provider_state").fetchall()
            tg.cancel_scope.cancel()
        assert rows == [("alpha",)]
    finally:
        await store.close()


async def test_state_survives_a_kill(tmp_path: Path, db_path: Path) -> None:
    """A copy of the files taken right after the prompt flush, without close, has the state."""
    copy = tmp_path / "copy" / "fallback.db"
    await anyio.Path(copy.parent).mkdir()
    store = await Store.open(db_path, flush_interval_s=3600)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            store.save_provider(view("cooldown", cooldown_until=HOUR + 600.0))
            with anyio.fail_after(5):
                await store.wait_for_commit()
            for suffix in ("", "-wal", "-shm"):  # as the kernel would leave them after kill -9
                source = anyio.Path(f"{db_path}{suffix}")
                if await source.exists():
                    await anyio.Path(f"{copy}{suffix}").write_bytes(await source.read_bytes())
            tg.cancel_scope.cancel()
    finally:
        await store.close()
    survivor = await Store.open(copy)
    try:
        assert await survivor.load_providers() == {"alpha": view("cooldown", cooldown_until=HOUR + 600.0)}
    finally:
        await survivor.close()


_SAVE_THEN_HANG = """
import sys, anyio
from actors.core.messages import ProviderView
from actors.edges.store.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1], flush_interval_s=3600)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        store.save_provider(ProviderView(name="alpha", priority=1, state="cooldown", cooldown_until=1e9))
        await store.wait_for_commit()
        print("committed", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def test_state_survives_kill_9(db_path: Path) -> None:
    """A process killed with SIGKILL right after the prompt flush leaves its state on disk."""
    command = [sys.executable, "-c", _SAVE_THEN_HANG, str(db_path)]
    async with await anyio.open_process(command, cwd=REPO, stderr=None) as proc:
        assert proc.stdout is not None
        try:
            with anyio.fail_after(20):
                line = await BufferedByteReceiveStream(proc.stdout).receive_until(b"\n", 100)
        finally:
            proc.kill()
            await proc.wait()
    assert line == b"committed"
    store = await Store.open(db_path)
    try:
        assert (await store.load_providers())["alpha"].cooldown_until == 1e9
    finally:
        await store.close()


async def test_cancelling_run_loses_nothing(db_path: Path) -> None:
    """Events buffered when the flusher is cancelled are still written by close."""
    store = await Store.open(db_path, flush_interval_s=3600)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for n in range(100):
            store.append(ok(time.time(), n=n))
        tg.cancel_scope.cancel()
    await store.close()
    store = await Store.open(db_path)
    try:
        assert await store.count_events() == 100
    finally:
        await store.close()


async def test_failed_flush_keeps_the_batch(db_path: Path) -> None:
    """A flush that fails leaves its batch buffered, and the next flush writes it."""
    store = await Store.open(db_path, busy_timeout_s=0.05)
    try:
        store.append(ok(1.0))
        store.save_provider(view("cooldown"))
        with sqlite(db_path) as con:
            con.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreError, match="locked"):
                await store.flush()
            con.execute("ROLLBACK")
        store.append(ok(2.0))
        assert [e.at for e in await store.events()] == [1.0, 2.0]
        assert list(await store.load_providers()) == ["alpha"]
    finally:
        await store.close()


async def test_run_prunes_old_events_and_rollups(db_path: Path) -> None:
    """At start the flusher deletes events and rollups older than retention_days."""
    now = time.time()
    store = await Store.open(db_path)
    store.append(ok(now - 3 * 86_400, n=1))
    store.append(ok(now - 60, n=2))
    store.save_metrics("alpha", counts(1, 1, 0), now - 3 * 86_400)
    store.save_metrics("alpha", counts(2, 2, 0), now)
    await store.close()
    store = await Store.open(db_path, retention_days=1)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            tg.cancel_scope.cancel()
        assert [e.at for e in await store.events()] == [now - 60]
        assert [r.requests_total for r in await store.rollups()] == [1]
    finally:
        await store.close()


async def test_prune_counts_what_it_deleted(store: Store) -> None:
    """prune deletes the events older than retention_days before ``now`` and says how many."""
    for n in range(4):
        store.append(ok(n * 86_400.0, n=n))
    assert await store.prune(now=31 * 86_400.0 + 1) == 2
    assert [e.at for e in await store.events()] == [2 * 86_400.0, 3 * 86_400.0]


async def test_infinite_retention_keeps_everything(db_path: Path) -> None:
    """retention_days=math.inf never prunes."""
    store = await Store.open(db_path, retention_days=math.inf)
    try:
        store.append(ok(0.0))
        assert await store.prune() == 0
        assert await store.count_events() == 1
    finally:
        await store.close()


# ---------------------------------------------------------------- files that can't be used


async def test_new_file_gets_every_migration_once(db_path: Path) -> None:
    """A new file is migrated to the latest version, and reopening applies nothing again."""
    await (await Store.open(db_path)).close()
    await (await Store.open(db_path)).close()
    with sqlite(db_path) as con:
        versions = con.execute("SELECT version FROM schema_version").fetchall()
        (mode,) = con.execute("PRAGMA journal_mode").fetchone()
    assert versions == [(n,) for n in range(1, len(MIGRATIONS) + 1)]
    assert mode == "wal"


async def test_corrupt_file_raises_store_error(db_path: Path) -> None:
    """A file that is not a database gives a StoreError naming the path."""
    await anyio.Path(db_path.parent).mkdir()
    await anyio.Path(db_path).write_bytes(b"this is not a database, just garbage bytes " * 100)
    with pytest.raises(StoreError, match="not a SQLite database") as info:
        await Store.open(db_path)
    assert info.value.path == str(db_path)
    assert str(db_path) in str(info.value)


async def test_directory_path_raises_store_error(tmp_path: Path) -> None:
    """A path that is a directory gives a StoreError suggesting a file inside it."""
    with pytest.raises(StoreError, match="is a directory") as info:
        await Store.open(tmp_path)
    assert info.value.path == str(tmp_path)


async def test_locked_database_raises_store_error(db_path: Path) -> None:
    """A file another process holds an exclusive lock on gives a StoreError saying so."""
    await (await Store.open(db_path)).close()
    with sqlite(db_path) as con:
        con.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked") as info:
            await Store.open(db_path, busy_timeout_s=0.05)
    assert info.value.path == str(db_path)


async def test_newer_schema_raises_store_error(db_path: Path) -> None:
    """A file written by a newer schema version is refused, not misread."""
    await (await Store.open(db_path)).close()
    with sqlite(db_path) as con:
        con.execute("INSERT INTO schema_version VALUES (?, 0)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer"):
        await Store.open(db_path)


async def test_foreign_database_raises_store_error(db_path: Path) -> None:
    """A SQLite file of another application is refused, not migrated."""
    db_path.parent.mkdir()
    with sqlite(db_path) as con:
        con.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match="another application"):
        await Store.open(db_path)


_OPEN_WITHOUT_CAPABILITIES = """
import sys, anyio
from actors.core.errors import StoreError
from actors.edges.store.store import Store
async def main() -> None:
    await (await Store.open(sys.argv[1])).close()

try:
    anyio.run(main)
except StoreError as exc:
    print(exc)
    sys.exit(3)
"""


async def test_read_only_file_raises_store_error() -> None:
    """A file and directory the user can't write give a StoreError saying read-only."""
    with tempfile.TemporaryDirectory() as top:
        folder = Path(top) / "state"
        path = folder / "fallback.db"
        await (await Store.open(path)).close()
        os.chmod(path, 0o444)
        os.chmod(folder, 0o555)
        try:
            if os.geteuid() != 0:
                with pytest.raises(StoreError, match="read-only"):
                    await Store.open(path)
                return
            # Root ignores permission bits through its capabilities: open the file as root
            # without any (an empty bounding set), so the bits apply and the venv stays
            # readable wherever the checkout lives (a mode-700 mktemp -d included).
            drop = [require_tool("setpriv", "util-linux"), "--bounding-set=-all", "--inh-caps=-all"]
            with anyio.fail_after(30):
                result = await anyio.run_process(
                    [*drop, sys.executable, "-c", _OPEN_WITHOUT_CAPABILITIES, str(path)], cwd=REPO, check=False
                )
            assert result.returncode == 3, result.stderr.decode()
            assert "read-only" in result.stdout.decode()
            assert str(path) in result.stdout.decode()
        finally:
            os.chmod(folder, 0o755)


# ---------------------------------------------------------------- one owner


async def test_a_second_owner_is_refused_naming_the_path_and_pid(db_path: Path) -> None:
    """While one Store owns the file, opening it for writing again fails naming the path and our pid."""
    first = await Store.open(db_path)
    try:
        with pytest.raises(StoreError) as caught:
            await Store.open(db_path)
        assert str(db_path) in str(caught.value)
        assert f"pid {os.getpid()}" in str(caught.value)
        reader = await Store.open(db_path, readonly=True)  # export and offline status take no lock
        await reader.close()
    finally:
        await first.close()
    again = await Store.open(db_path)  # released on close
    await again.close()


_HOLD = """
import sys, anyio
from actors.edges.store import Store
async def main() -> None:
    await Store.open(sys.argv[1])
    print("open", flush=True)
    await anyio.sleep(60)
anyio.run(main)
"""


async def test_kill_9_of_the_owner_releases_the_file(db_path: Path) -> None:
    """The lock dies with its process: after kill -9 of the owner, a new owner opens at once."""
    async with await anyio.open_process([sys.executable, "-c", _HOLD, str(db_path)], cwd=REPO) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            assert (await proc.stdout.receive()).startswith(b"open")
        with pytest.raises(StoreError, match=rf"pid {proc.pid}"):
            await Store.open(db_path)
        proc.kill()
        await proc.wait()
    store = await Store.open(db_path)
    await store.close()


async def test_the_event_log_keeps_its_own_retention(db_path: Path) -> None:
    """events_retention_days prunes the event log on its own clock; metric rollups keep theirs."""
    store = await Store.open(db_path, retention_days=30, events_retention_days=1)
    try:
        for i, at in enumerate((HOUR - 3 * 86_400.0, HOUR - 2 * 86_400.0, HOUR)):
            store.append(ok(at, n=i))
        store.save_metrics("alpha", counts(1, 1, 0), HOUR - 2 * 86_400.0)
        assert await store.prune(now=HOUR + 1) == 2
        assert [e.at for e in await store.events(limit=10)] == [HOUR]
        assert len(await store.rollups()) == 1  # 2 days old: within the 30 days of rollups
    finally:
        await store.close()


async def test_the_event_log_is_bounded_in_size_oldest_first(db_path: Path) -> None:
    """Over events_max_mb, the oldest events go until the log is back under the bound."""
    store = await Store.open(db_path, events_max_mb=0.05)  # 50 kB
    try:
        for i in range(2_000):  # ~120 bytes each: ~240 kB
            store.append(ok(HOUR + i, n=i))
        deleted = await store.prune(now=HOUR + 2_000)
        kept = await store.events(limit=5_000)
        assert deleted > 0
        assert deleted + len(kept) == 2_000
        assert [e.at for e in kept] == [HOUR + i for i in range(deleted, 2_000)]  # the newest stay
        assert sum(len(e.data) for e in kept) <= 50_000
    finally:
        await store.close()


async def test_pruning_a_large_log_goes_in_batches(db_path: Path) -> None:
    """A prune that deletes more than one batch removes everything due, in several transactions."""
    store = await Store.open(db_path, events_retention_days=1)
    try:
        for i in range(25_000):
            store.append(ok(HOUR - 2 * 86_400.0 + i * 0.001, n=i))
        store.append(ok(HOUR, n=99_999))
        assert await store.prune(now=HOUR + 1) == 25_000
        assert await store.count_events() == 1
    finally:
        await store.close()
