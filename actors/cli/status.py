"""``run.py check`` and ``run.py status``: the config's providers, and their live or stored state."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import aiohttp
import anyio
import msgspec

from actors.cli.common import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, fail, format_table, run_async, service_url
from actors.core.config import Config, load_config
from actors.core.deployments import deployment_key, deployments
from actors.core.errors import ConfigError, FallbackError
from actors.core.messages import (
    MetricsSnapshot,
    ProviderView,
    RoutingSnapshot,
)
from actors.core.public_config import public_url
from actors.core.states import ProviderState
from actors.edges.store import Store
from actors.runtime.status import build_status
from actors.runtime.wiring import load_restored

__all__ = ("cell", "cmd_check", "cmd_status", "fetch_status", "format_status", "read_status", "status_async",
           "watch")

#: On a terminal each frame starts by moving home and clearing the screen (ANSI CSI H, CSI 2J).
_CLEAR = "\x1b[H\x1b[2J"


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
        rows.append([name, p.kind, str(p.priority), public_url(p.base_url), models, key])
    print(f"{config.source}: valid")
    print(format_table(["provider", "kind", "priority", "base_url", "models", "key"], rows))
    usable = [p for p in config.providers if p.enabled and p.configured]
    missing = [p.api_key_env for p in config.providers if p.enabled and not p.configured]
    print(f"{len(usable)} of {len(config.providers)} providers usable"
          + (f"; set {', '.join(missing)} to use the rest" if missing else "")
          + ("" if usable else " (until then the service answers every completion with 503)"))
    return EXIT_OK


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
            stored = await load_restored(store, now)
        finally:
            await store.close()
        restored = stored.providers
        metrics = MetricsSnapshot(
            at=now, providers=stored.metrics, recent_fallbacks=stored.fallbacks[-50:],
            fallbacks_total=stored.fallbacks_total, fallbacks_last_24h=len(stored.fallbacks),
            recovery_times_s=stored.recovery_times)
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
    own = tuple(restored[k] for p in config.providers for m in deployments(p)
                if (k := deployment_key(p.name, m)) in restored)
    routing = RoutingSnapshot(at=now, version=0, providers=tuple(views), deployments=own)
    return build_status(config, routing, metrics, now)


def cell(value: Any, fmt: str = "{}") -> str:
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
        rows.append([name, state, str(p["priority"]), cell(p.get("cooldown_remaining_s"), "{:g} s"),
                     str(p.get("failure_count", 0)), str(m.get("requests_total", 0)),
                     cell(m.get("uptime_percent"), "{:.1f}"), cell(m.get("success_rate_percent"), "{:.1f}"),
                     cell(m.get("p95_latency_ms"), "{:.0f}"), cell(p.get("reliability_score"), "{:.2f}"),
                     last])
    table = format_table(["provider", "state", "priority", "cooldown", "failures", "requests",
                          "uptime % 24h", "success %", "p95 ms", "reliability", "last error"], rows)
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
        if args.watch:
            return watch(config, args.url or service_url(config), args.interval, as_json=args.json)
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


def watch(config: Config, url: str, interval_s: float, *, as_json: bool = False,
          out: TextIO | None = None) -> int:
    """``status --watch``: redraw the table every ``interval_s`` until Ctrl-C (then exit 0).

    On a terminal each frame replaces the last; elsewhere frames follow one another, plain text
    (``--json``: one JSON document a line). A failed read is a frame saying so; the next one retries.
    """
    out = out or sys.stdout
    clear = _CLEAR if out.isatty() and not as_json else ""
    try:
        while True:
            try:
                status, source = run_async(status_async, config, url)
            except (FallbackError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                frame = f"error: {' '.join(str(exc).split()) or type(exc).__name__} (retrying)"
            else:
                frame = json.dumps(status) if as_json else \
                    f"{time.strftime('%H:%M:%S')} {source}\n{format_status(status)}\n"
            out.write(f"{clear}{frame}\n")
            out.flush()
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return EXIT_OK
