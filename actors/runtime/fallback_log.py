"""The original skill's log directory: every fallback as a JSON line, and the dashboard summary.

``[logging] fallback_log_dir`` names the directory (the shipped config.toml sets it to
``${FALLBACK_LOG_DIR:-./logs}``, so the variable overrides the default there; ``""`` turns the
files off, and is the default of a Config built in code). In it:

``fallback_events.jsonl``
    One JSON object per line, appended. A fallback::

        {"timestamp": "2026-11-22T10:00:00.123Z", "event": "fallback", "from_provider": "litellm",
         "to_provider": "kilocode", "reason": "rate_limit", "error_message": "HTTP 429: ...",
         "recovery_time_seconds": null, "request_id": "..."}

    ``reason`` is the failure's category (``rate_limit``, ``stream_interrupted``...), and
    ``error_message`` the upstream's error text (``FallbackTriggered.reason``, redacted by the
    adapters; at most 2000 characters); ``to_provider`` is null when no provider was left.
    The skill filled ``recovery_time_seconds`` in on its fallback record when ``from_provider``
    came back; a line already written is never rewritten, so the recovery is a line of its own,
    in the same shape, when a :class:`ProviderRecovered` arrives::

        {"timestamp": "...", "event": "provider_recovered", "from_provider": "litellm",
         "to_provider": null, "reason": "recovered", "error_message": "",
         "recovery_time_seconds": 127.5, "request_id": null}

    Every line carries the skill's six keys (a reader of its records loads every line), plus
    ``event`` to tell the two apart and ``request_id`` (the key of ``/events?request_id=``).
    The file is rotated by size (``logging.max_file_mb``), keeping ``logging.backups`` old files
    ``fallback_events.jsonl.1`` (newest) to ``.N``.

``provider_metrics.json``
    The skill's dashboard summary, rewritten atomically (a temp file in the same directory, then
    ``os.replace``) every ``metrics.persist_interval_s`` and at shutdown::

        {"providers": {"litellm": {"requests_total": 1523, "requests_success": 1489,
            "requests_failed": 34, "avg_latency_ms": 245.5, "p95_latency_ms": 512.0,
            "uptime_percent": 97.77, "current_status": "healthy"}},
         "fallback_events_last_24h": 3, "avg_recovery_time_seconds": 127.5,
         "generated_at": "2026-11-22T10:00:00Z"}

    The same numbers as ``/status`` (:func:`~actors.runtime.status.build_status`):
    ``uptime_percent`` is the last 24 h, ``current_status`` the provider's state; a figure with
    nothing measured yet (no latency, no recovery) is null, not 0.

Takes in: :class:`FallbackTriggered` and :class:`ProviderRecovered` from the bus
(``Bus.listen``: called synchronously, also on the request path, so :meth:`FallbackLog.record`
only encodes a line and queues it, O(1), and never raises), and the status document from a
callable (``Supervisor.status``) when it writes the summary. Puts out: the two files. Owns: a
:class:`~actors.edges.log_files.LineLog` (the bounded queue and its drain task, on worker
threads). Promises: the request path never waits for these files; a full queue drops lines and
counts them (one warning); a directory that breaks while serving is a warning and serving goes
on; :meth:`FallbackLog.close` writes the queued lines and the final summary. At start a
directory that can't be used (a file, not writable) is a :class:`ConfigError` naming
``logging.fallback_log_dir``. Timers are real time (``anyio.sleep``), not the injected clock:
housekeeping, not policy. No secret is written: messages carry no headers or keys.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, assert_never

import anyio
import anyio.abc
import msgspec

from actors.core.actor import Bus
from actors.core.config import Config
from actors.core.config_schema import LoggingConfig
from actors.core.errors import ConfigError
from actors.core.messages import FallbackTriggered, Message, ProviderRecovered
from actors.edges.log_files import LineLog, check_directory, replace_json

__all__ = ("EVENTS_FILE", "METRICS_FILE", "FallbackLog", "dashboard", "event_line", "timestamp")

log = logging.getLogger("actors.fallback_log")
EVENTS_FILE = "fallback_events.jsonl"
METRICS_FILE = "provider_metrics.json"
_KEY = "logging.fallback_log_dir"
_MAX_MESSAGE = 2000
_SUMMARY_FIELDS = ("requests_total", "requests_success", "requests_failed", "avg_latency_ms",
                   "p95_latency_ms", "uptime_percent")
_encoder = msgspec.json.Encoder()

StatusView = Callable[[], Mapping[str, Any]]


def timestamp(at: float) -> str:
    """Epoch seconds as ISO 8601 UTC to the millisecond (``2026-11-22T10:00:00.123Z``)."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_line(message: FallbackTriggered | ProviderRecovered) -> dict[str, Any]:
    """One line of fallback_events.jsonl (the skill's fields, ``event`` and ``request_id``)."""
    match message:
        case FallbackTriggered():
            return {"timestamp": timestamp(message.at), "event": "fallback",
                    "from_provider": message.from_provider, "to_provider": message.to_provider,
                    "reason": message.category, "error_message": message.reason[:_MAX_MESSAGE],
                    "recovery_time_seconds": None, "request_id": message.request_id}
        case ProviderRecovered():
            return {"timestamp": timestamp(message.at), "event": "provider_recovered",
                    "from_provider": message.provider, "to_provider": None, "reason": "recovered",
                    "error_message": "", "recovery_time_seconds": round(message.downtime_s, 3),
                    "request_id": None}
        case _:
            assert_never(message)


def dashboard(status: Mapping[str, Any]) -> dict[str, Any]:
    """provider_metrics.json from a /status document, in the skill's field names."""
    providers: dict[str, Any] = {}
    for name, view in status.get("providers", {}).items():
        metrics = view.get("metrics", {})
        providers[name] = {**{key: metrics.get(key) for key in _SUMMARY_FIELDS},
                           "current_status": view.get("state")}
    return {
        "providers": providers,
        "fallback_events_last_24h": status.get("fallback_events_last_24h", 0),
        "avg_recovery_time_seconds": status.get("avg_recovery_time_seconds"),
        "generated_at": status.get("generated_at"),
    }


def _prepare(setting: str) -> tuple[Path, str | None]:
    """The directory a setting names (relative to the working directory now), and its problem."""
    directory = Path(setting).expanduser().absolute()
    return directory, check_directory(directory, EVENTS_FILE, METRICS_FILE)


class FallbackLog:
    """The log directory of one Supervisor. Make it with :meth:`open` (off: it does nothing)."""

    def __init__(self, directory: Path | None, config: LoggingConfig, *, persist_interval_s: float,
                 status: StatusView, capacity: int = 10_000) -> None:
        self.directory = directory
        self._interval_s = persist_interval_s
        self._status = status
        self._running = False
        self._metrics_failing = False
        self._sink_failed = False
        self.lines: LineLog | None = None
        if directory is not None:
            self.lines = LineLog(directory / EVENTS_FILE, max_bytes=int(config.max_file_mb * 1_000_000),
                                 backups=config.backups, capacity=capacity)

    @classmethod
    async def open(cls, config: Config, *, status: StatusView) -> FallbackLog:
        """Check (and create) the directory; ConfigError naming the key when it can't be used."""
        directory: Path | None = None
        if setting := config.logging.fallback_log_dir:
            directory, problem = await anyio.to_thread.run_sync(_prepare, setting)
            if problem is not None:
                raise ConfigError(f"cannot keep the fallback log in {directory}: {problem}; create it "
                                  "or make it writable, point fallback_log_dir (FALLBACK_LOG_DIR in the "
                                  'shipped config.toml) elsewhere, or set fallback_log_dir = "" to turn '
                                  "it off", path=config.source, key=_KEY)
            log.debug("fallback log in %s", directory)
        return cls(directory, config.logging, persist_interval_s=config.metrics.persist_interval_s,
                   status=status)

    @property
    def enabled(self) -> bool:
        return self.lines is not None

    def attach(self, bus: Bus) -> None:
        """Have the bus hand this log every fallback and recovery (nothing when it is off)."""
        if self.enabled:
            bus.listen([FallbackTriggered, ProviderRecovered], self.record)

    def record(self, message: Message) -> None:
        """Queue the line for ``message`` (a bus sink: O(1), never waits, never raises)."""
        if self.lines is None or not isinstance(message, FallbackTriggered | ProviderRecovered):
            return
        try:
            self.lines.put(_encoder.encode(event_line(message)))
        except Exception:  # the request path is calling: never let the log break it
            if not self._sink_failed:
                self._sink_failed = True
                log.exception("could not queue a fallback log line (more are dropped silently)")

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Drain the lines; write the summary now and every ``persist_interval_s`` (real time)."""
        if self.lines is None:
            task_status.started()
            return
        self._running = True
        async with anyio.create_task_group() as tg:
            await tg.start(self.lines.run)
            task_status.started()
            while True:
                await self.write_metrics()
                await anyio.sleep(self._interval_s)

    async def write_metrics(self) -> bool:
        """Rewrite provider_metrics.json from the status now; False (and a warning) when that failed."""
        if self.directory is None:
            return False
        path = self.directory / METRICS_FILE
        try:
            await replace_json(path, dashboard(self._status()))
        except Exception as exc:  # a broken disk or status: warn, keep serving
            if not self._metrics_failing:
                log.warning("cannot write %s (%s: %s); serving goes on, the next write retries", path,
                            type(exc).__name__, exc)
            self._metrics_failing = True
            return False
        if self._metrics_failing:
            log.warning("writing %s works again", path)
            self._metrics_failing = False
        return True

    async def close(self) -> None:
        """Write the queued lines, then the final summary (once :meth:`run` has started)."""
        if self.lines is None:
            return
        await self.lines.close()
        if self._running:
            await self.write_metrics()
