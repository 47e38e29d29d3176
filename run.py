#!/usr/bin/env python3
"""provider-fallback command line: ``serve`` (the default), ``check``, ``status``, ``demo``,
``events export`` and ``replay``.

``serve`` runs the OpenAI-compatible gateway until SIGINT/SIGTERM, then stops
taking requests, lets in-flight ones finish within ``server.shutdown_grace_s``,
saves the state file and exits 0; a second signal exits at once. A startup
problem (bad config, unusable state file, taken port) prints one ``error:``
line to stderr and exits 2, no traceback. Logs go to stderr, one line per
event. Secrets are never printed: keys show as "set" / "NOT SET".
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec
from anyio.abc import TaskStatus

from actors import gateway
from actors.core.config import Config, load_config
from actors.core.errors import ConfigError, FallbackError
from actors.core.messages import (
    FallbackTriggered,
    MetricsSnapshot,
    ProviderRecovered,
    ProviderView,
    RoutingSnapshot,
)
from actors.core.states import ProviderState
from actors.edges.store.store import Store
from actors.replay import replay
from actors.replay.eventlog import export_events, read_log
from actors.replay.summary import compare, render_summary, render_timeline
from actors.runtime.status import build_status
from actors.runtime.supervisor import Supervisor
from examples.demo import demo_async

log = logging.getLogger("run")

EXIT_OK, EXIT_FAILED, EXIT_STARTUP = 0, 1, 2
COMMANDS = ("serve", "check", "status", "demo", "events", "replay")
_DAY_S = 86_400.0
_T = TypeVar("_T")


# ---------------------------------------------------------------- shared helpers


def run_async(func: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    """Run ``func(*args)`` on asyncio, under uvloop when it is installed."""
    uvloop = importlib.util.find_spec("uvloop") is not None
    return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": uvloop})


def fail(exc: BaseException) -> None:
    """Print the one ``error:`` line to stderr; an OS error also names its file."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or text}"
    print(f"error: {text}", file=sys.stderr, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a dashed header line."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def service_url(config: Config) -> str:
    """The URL a client on this machine reaches the configured server at."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(config.server.host, config.server.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.server.port}"


def provider_line(view: ProviderView, now: float) -> str:
    """``provider litellm (priority 1): ready`` and the like, for the startup log."""
    match view.state:
        case "healthy":
            text = "ready"
        case "degraded":
            text = "ready (degraded: recent failures)"
        case "cooldown" | "unhealthy" if view.cooldown_until is not None:
            why = f" after {view.last_error.category}" if view.last_error else ""
            left = max(0.0, view.cooldown_until - now)
            text = f"{view.state}{why}, {left:.0f} s left (restored from the state file)"
        case _:
            text = f"{view.state}: {view.detail}" if view.detail else view.state
    return f"provider {view.name} (priority {view.priority}): {text}"


# ---------------------------------------------------------------- serve


async def stop_on_signals(stop: anyio.Event, grace_s: float, *,
                          task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Set ``stop`` on the first SIGINT/SIGTERM; exit the process at once on the second."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if stop.is_set():
                log.warning("%s again: exiting now, in-flight requests are dropped", name)
                logging.shutdown()
                os._exit(128 + signum)
            log.info("%s: stopping; in-flight requests get up to %g s (send it again to exit now)",
                     name, grace_s)
            stop.set()


async def serve_async(config: Config, on_ready: Callable[[str], None]) -> None:
    """Run the supervisor and the gateway until a signal, then shut down gracefully."""
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        # Signals first, so that a Ctrl-C during startup also stops cleanly.
        await tg.start(stop_on_signals, stop, config.server.shutdown_grace_s)
        try:
            async with Supervisor(config) as supervisor:
                now = supervisor.clock.now()
                for view in supervisor.routing.providers:
                    log.info("%s", provider_line(view, now))
                await gateway.serve(supervisor, host=config.server.host, port=config.server.port,
                                    on_ready=on_ready, stop=stop)
            log.info("stopped; state saved in %s", config.state.path)
        finally:
            tg.cancel_scope.cancel()


def load_serve_config(path: str, host: str | None, port: int | None) -> Config:
    """Load the config file, with --host/--port overriding ``[server]``."""
    config = load_config(path)
    server = msgspec.structs.replace(config.server, host=config.server.host if host is None else host,
                                     port=config.server.port if port is None else port)
    return msgspec.structs.replace(config, server=server)


def hold_logs() -> Callable[[bool], None]:
    """Hold log records back; the returned ``release(all)`` emits them all, or only warnings and worse.

    A start that fails then shows just its ``error:`` line, not the startup chatter before it.
    """
    root = logging.getLogger()
    targets, held = list(root.handlers), logging.handlers.BufferingHandler(capacity=100_000)
    root.handlers = [held]

    def release(everything: bool) -> None:
        if root.handlers == [held]:
            root.handlers = targets
            for record in held.buffer:
                if everything or record.levelno >= logging.WARNING:
                    root.handle(record)
            held.close()

    return release


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: 0 after a signal, 2 when it could not start, 1 when it failed later."""
    listening, release = False, hold_logs()

    def on_ready(url: str) -> None:
        nonlocal listening
        listening = True
        release(True)
        log.info("listening on %s", url)

    try:
        config = load_serve_config(args.config, args.host, args.port)
        run_async(serve_async, config, on_ready)
    except Exception as exc:
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]  # anyio task groups wrap what their tasks raise
        if not isinstance(leaf, FallbackError | OSError):
            raise
        release(False)
        fail(leaf)
        return EXIT_FAILED if listening else EXIT_STARTUP
    finally:
        release(True)
    return EXIT_OK


# ---------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    """``check``: validate the config and show the providers; 0 when valid, 2 when not."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        fail(exc)
        return EXIT_STARTUP
    rows = []
    for p in sorted(config.providers, key=lambda p: p.priority):
        key = "(no key)" if not p.api_key_env else (
            f"{p.api_key_env} {'set' if p.api_key is not None else 'NOT SET'}")
        models = ", ".join(f"{k}={v}" for k, v in p.models.items())
        name = p.name if p.enabled else f"{p.name} (disabled)"
        rows.append([name, p.kind, str(p.priority), p.base_url, models, key])
    print(f"{config.source}: valid")
    print(format_table(["provider", "kind", "priority", "base_url", "models", "key"], rows))
    usable = [p for p in config.providers if p.enabled and p.configured]
    missing = [p.api_key_env for p in config.providers if p.enabled and not p.configured]
    print(f"{len(usable)} of {len(config.providers)} providers usable"
          + (f"; set {', '.join(missing)} to use the rest" if missing else "")
          + ("" if usable else " (until then the service answers every completion with 503)"))
    return EXIT_OK


# ---------------------------------------------------------------- status


async def fetch_status(url: str) -> dict[str, Any] | None:
    """GET ``url``/status; None when nothing listens there (connection refused)."""
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url.rstrip("/") + "/status") as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data
    except aiohttp.ClientConnectorError:
        return None


async def read_status(config: Config, now: float) -> dict[str, Any]:
    """The /status document rebuilt from the SQLite state file (the service is down)."""
    restored: dict[str, ProviderView] = {}
    metrics: MetricsSnapshot | None = None
    if await anyio.Path(config.state.path).exists():  # don't create a file just to read it
        store = await Store.open(config.state.path, readonly=True)  # never writes beside a service
        try:
            restored = await store.load_providers()
            stored = await store.load_metrics()
            recent = [e.message for e in await store.events(
                types=["fallback_triggered"], since=now - _DAY_S, limit=1_000_000)]
            recoveries = [e.message for e in await store.events(types=["provider_recovered"],
                                                                limit=1000)]
            totals = await store.get_meta("fallbacks_total")
        finally:
            await store.close()
        metrics = MetricsSnapshot(
            at=now, providers=stored,
            recent_fallbacks=tuple(m for m in recent if isinstance(m, FallbackTriggered))[-50:],
            fallbacks_total=msgspec.json.decode(totals, type=dict[str, int]) if totals else {},
            fallbacks_last_24h=len(recent),
            recovery_times_s=tuple(m.downtime_s for m in recoveries if isinstance(m, ProviderRecovered)),
        )
    views = []
    for p in config.providers:
        view = restored.get(p.name)
        if view is None:  # never saved: what the service would start with
            state: ProviderState = "healthy" if p.configured else "unconfigured"
            detail = "" if p.configured else f"{p.api_key_env} is not set"
            if not p.enabled:
                state, detail = "disabled", "enabled = false in the config"
            view = ProviderView(name=p.name, priority=p.priority, state=state, detail=detail)
        views.append(msgspec.structs.replace(view, priority=p.priority))
    views.sort(key=lambda v: v.priority)
    routing = RoutingSnapshot(at=now, version=0, providers=tuple(views))
    return build_status(config, routing, metrics, now)


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def format_status(status: dict[str, Any]) -> str:
    """The /status document as a table plus a summary line."""
    rows = []
    for name, p in status.get("providers", {}).items():
        m = p.get("metrics") or {}
        err = p.get("last_error")
        last = "-"
        if err:
            code = f" {err['status']}" if err.get("status") is not None else ""
            last = f"{err['category']}{code}: {err.get('message', '')}"
            last = last if len(last) <= 60 else last[:57] + "..."
        state = p["state"] + (f" ({p['detail']})" if p.get("detail") else "")
        rows.append([name, state, str(p["priority"]), _cell(p.get("cooldown_remaining_s"), "{:g} s"),
                     str(p.get("failure_count", 0)), str(m.get("requests_total", 0)),
                     _cell(m.get("uptime_percent"), "{:.1f}"), _cell(m.get("p95_latency_ms"), "{:.0f}"),
                     last])
    table = format_table(["provider", "state", "priority", "cooldown", "failures", "requests",
                          "success %", "p95 ms", "last error"], rows)
    recovery = status.get("avg_recovery_time_seconds")
    summary = (f"fallbacks in the last 24 h: {status.get('fallback_events_last_24h', 0)}; "
               f"average recovery: {'-' if recovery is None else f'{recovery:g} s'}")
    return f"{table}\n{summary}"


async def status_async(config: Config, url: str) -> tuple[dict[str, Any], str]:
    """The status from the running service, else from the state file; and where it came from."""
    status = await fetch_status(url)
    if status is not None:
        return status, f"(from the service at {url})"
    status = await read_status(config, time.time())
    return status, f"(service not running; from {config.state.path})"


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: ask the service, or read the state file when it is down."""
    try:
        config = load_config(args.config)
        status, source = run_async(status_async, config, args.url or service_url(config))
    except (FallbackError, OSError, aiohttp.ClientError, TimeoutError) as exc:
        fail(exc)
        return EXIT_STARTUP if isinstance(exc, FallbackError) else EXIT_FAILED
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(source)
        print(format_status(status))
    return EXIT_OK


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: a failover cycle against fake providers; no API keys needed."""
    run_async(demo_async, args.seconds, args.rate)
    return EXIT_OK


# ---------------------------------------------------------------- events export, replay


def _when(text: str) -> float:
    """A time on the command line: epoch seconds, or ISO 8601 (UTC unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected epoch seconds or ISO 8601 (2026-11-22T10:00:00Z), got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def cmd_events(args: argparse.Namespace) -> int:
    """``events export``: the state file's event log as JSON lines (header first)."""
    try:
        config = load_config(args.config) if os.path.exists(args.config) else None
        path = args.state or (config.state.path if config else "state/fallback.db")
        if args.output in (None, "-"):
            count = run_async(partial(export_events, path, sys.stdout.buffer, config=config, since=args.since,
                                      until=args.until, provider=args.provider))
            sys.stdout.buffer.flush()
        else:
            tmp = f"{args.output}.partial"
            with open(tmp, "wb") as out:
                count = run_async(partial(export_events, path, out, config=config, since=args.since,
                                          until=args.until, provider=args.provider))
            os.replace(tmp, args.output)  # a killed export leaves no half-written log behind
    except (FallbackError, OSError) as exc:
        fail(exc)
        return EXIT_STARTUP
    target = f" to {args.output}" if args.output not in (None, "-") else ""
    print(f"exported {count} events from {path}{target}", file=sys.stderr)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay FILE``: the timeline and summary; exit 1 when replay disagrees with the log."""
    try:
        log = read_log(args.file)
        config = load_config(args.config) if args.config else None
        result = replay(log, config)
    except FallbackError as exc:
        fail(exc)
        return EXIT_STARTUP
    print(f"replayed {result.events} events from {args.file} ({result.mode}"
          f"{', under ' + args.config if args.config else ''})")
    for note in result.notes:
        print(f"note: {note}")
    print()
    print(render_timeline(result.timeline, limit=args.limit))
    print()
    if result.mode == "what-if":
        print("what changed (recorded vs this config):")
        print(compare(result.recorded_summary, result.summary, labels=("recorded", "this config")))
        return EXIT_OK
    print("summary:")
    print(render_summary(result.summary))
    if result.divergence is not None:
        print()
        print(f"DIVERGED at {result.divergence.describe()}")
        return EXIT_FAILED
    print()
    print(f"matches: the {len(result.recorded)} recorded decisions came out the same")
    return EXIT_OK


# ---------------------------------------------------------------- main


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected 0..65535, got {port}")
    return port


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: serve (default), check, status, demo, events export, replay."""
    parser = argparse.ArgumentParser(prog="run.py", description="provider-fallback: LLM-provider failover.")
    sub = parser.add_subparsers(dest="command", metavar="{serve,check,status,demo,events,replay}")
    serve = sub.add_parser("serve", help="run the HTTP gateway (the default)")
    serve.add_argument("--host", help="override [server] host")
    serve.add_argument("--port", type=_port, help="override [server] port (0: any free port)")
    check = sub.add_parser("check", help="validate the config and list the providers")
    status = sub.add_parser("status", help="provider states and metrics")
    status.add_argument("--url", help="the service's URL (default: from [server] in the config)")
    status.add_argument("--json", action="store_true", help="print the raw /status JSON")
    events = sub.add_parser("events", help="the event log: events export [-o FILE]")
    events_sub = events.add_subparsers(dest="action", metavar="{export}", required=True)
    export = events_sub.add_parser("export", help="write the event log as JSON lines (for replay)")
    export.add_argument("--since", type=_when, help="from this time (epoch seconds or ISO 8601)")
    export.add_argument("--until", type=_when, help="before this time")
    export.add_argument("--provider", help="only this provider's events (and starts, restarts)")
    export.add_argument("-o", "--output", help="output file (default: stdout)")
    export.add_argument("--state", help="the state file (default: [state] path in the config)")
    rep = sub.add_parser("replay", help="replay an exported log; --config for what-if")
    rep.add_argument("file", help="an exported log (run.py events export)")
    rep.add_argument("--config", help="replay under this config instead of the log's own (what if)")
    rep.add_argument("--limit", type=int, default=200, help="timeline rows to print (default 200)")
    demo = sub.add_parser("demo", help="watch a failover cycle against fake providers")
    demo.add_argument("--seconds", type=_positive, default=20.0, help="how long to run (default 20)")
    demo.add_argument("--rate", type=_positive, default=5.0, help="requests a second (default 5)")
    for command in (serve, check, status, export):
        command.add_argument("--config", default="config.toml", help="config file (default: ./config.toml)")
    for command, level in ((serve, "info"), (check, "info"), (status, "info"), (demo, "warning"),
                           (export, "warning"), (rep, "warning")):
        command.add_argument("--log-level", default=level, choices=["debug", "info", "warning", "error"],
                             help=f"stderr log level (default: {level})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "serve")
    args = build_parser().parse_args(args_list)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": cmd_serve, "check": cmd_check, "status": cmd_status, "demo": cmd_demo,
        "events": cmd_events, "replay": cmd_replay}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C outside serve's own signal handling
        return 130


if __name__ == "__main__":
    sys.exit(main())
