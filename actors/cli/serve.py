"""``run.py serve`` (the default): the gateway until SIGINT/SIGTERM, then a graceful stop.

It stops taking requests, lets in-flight ones finish within
``server.shutdown_grace_s``, saves the state file and exits 0; a second signal
exits at once. A startup problem (bad config, unusable state file, taken port)
prints one ``error:`` line to stderr and exits 2, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
from collections.abc import Callable

import anyio
import msgspec
from anyio.abc import TaskStatus

from actors import gateway
from actors.cli.common import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, fail, run_async
from actors.core.config import Config, load_config
from actors.core.errors import FallbackError
from actors.core.messages import ProviderView
from actors.runtime.supervisor import Supervisor

__all__ = ("cmd_serve", "hold_logs", "load_serve_config", "provider_line", "serve_async", "serve_one",
           "stop_on_signals")

log = logging.getLogger("run")


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


async def serve_async(config: Config, on_ready: Callable[[str], None], reuse_port: bool = False) -> None:
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
                                    on_ready=on_ready, stop=stop, reuse_port=reuse_port)
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
    """``serve``: 0 after a signal, 2 when it could not start, 1 when it failed later.

    ``--workers N`` (N > 1) goes through :func:`actors.cli.workers.cmd_serve_workers` instead.
    """
    return serve_one(args)


def serve_one(args: argparse.Namespace, config: Config | None = None, *, worker: str = "",
              reuse_port: bool = False) -> int:
    """One serving process (``config``: already loaded, a worker's); the exit status of :func:`cmd_serve`."""
    listening, release = False, hold_logs()

    def on_ready(url: str) -> None:
        nonlocal listening
        listening = True
        release(True)
        log.info("%slistening on %s", worker, url)

    try:
        config = config or load_serve_config(args.config, args.host, args.port)
        run_async(serve_async, config, on_ready, reuse_port)
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
