"""``run.py --workers N``: N serving processes on one port, sharing provider state through Redis.

The parent loads and checks the config, then forks N workers (before any
event loop or thread exists) and only watches them: each worker is a whole
service (``serve_one``) with its own state file (``state/fallback.db`` ->
``state/fallback.w1.db``: a state file has one owner process, and each
worker keeps its own event log, which replays alone) listening on the same
port with SO_REUSEPORT, so the kernel spreads connections between them. What
they must agree on (cooldowns, failure counts, probes) they share through
``[state] shared_url``; without it N workers would each learn every outage
alone, so ``--workers`` refuses to start.

A first SIGINT/SIGTERM is passed to every worker (each stops gracefully); a
second kills them. A worker that exits on its own stops the others, and the
parent exits with the worst status (2: a worker could not start).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

import msgspec

from actors.cli.common import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, fail
from actors.cli.serve import cmd_serve, load_serve_config, serve_one
from actors.core.config import Config
from actors.core.errors import ConfigError, FallbackError

__all__ = ("cmd_serve_workers", "serve_workers", "worker_config", "worker_state_path")

log = logging.getLogger("run")


def worker_state_path(path: str, index: int) -> str:
    """``state/fallback.db`` -> ``state/fallback.w1.db``: worker ``index``'s own state file."""
    root, ext = os.path.splitext(path)
    return f"{root}.w{index}{ext or '.db'}"


def worker_config(config: Config, index: int) -> Config:
    """Worker ``index``'s config: the same, with its own state file."""
    state = msgspec.structs.replace(config.state, path=worker_state_path(config.state.path, index))
    return msgspec.structs.replace(config, state=state)


def _check(config: Config, count: int) -> None:
    if not config.state.shared_url:
        raise ConfigError(f"--workers {count} needs shared state: set [state] shared_url (e.g. "
                          '"redis://127.0.0.1:6379/0") so that the workers share cooldowns, failure '
                          "counts and probes, or run one process", path=config.source, key="state.shared_url")
    if config.server.port == 0:
        raise ConfigError(f"--workers {count} needs a fixed port (all workers listen on it): got 0",
                          path=config.source, key="server.port")


def cmd_serve_workers(args: argparse.Namespace) -> int:
    """``serve``, with ``--workers N``: N processes when N > 1, else the one (:func:`cmd_serve`)."""
    return serve_workers(args) if getattr(args, "workers", 1) > 1 else cmd_serve(args)


def serve_workers(args: argparse.Namespace) -> int:
    """Fork ``args.workers`` serving processes and wait for them; the worst exit status."""
    count: int = args.workers
    try:
        config = load_serve_config(args.config, args.host, args.port)
        _check(config, count)
    except (FallbackError, OSError) as exc:
        fail(exc)
        return EXIT_STARTUP
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, int] = {}  # pid -> worker index
    for index in range(1, count + 1):
        pid = os.fork()
        if pid == 0:  # the worker: a whole service, then out (never back into the parent's code)
            code = EXIT_FAILED
            try:
                os.setpgid(0, 0)  # a Ctrl-C reaches the parent alone, which passes one SIGTERM on
                code = serve_one(args, worker_config(config, index), worker=f"worker {index}/{count} "
                                 f"(pid {os.getpid()}): ", reuse_port=True)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index
    log.info("started %d workers on port %d: %s", count, config.server.port,
             ", ".join(f"{i} (pid {p})" for p, i in children.items()))
    return _watch(children)


def _watch(children: dict[int, int]) -> int:
    signalled = 0

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal signalled
        signalled += 1
        _signal_all(children, signal.SIGTERM if signalled == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    worst = EXIT_OK
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover (PEP 475 retries it)
                continue
            index = children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if index is None:
                continue
            if code != EXIT_OK and not signalled:
                log.error("worker %d (pid %d) exited with %d: stopping the others", index, pid, code)
                signalled = 1
                _signal_all(children, signal.SIGTERM)
            worst = max(worst, code if code >= 0 else EXIT_FAILED)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return worst


def _signal_all(children: dict[int, int], signum: int) -> None:
    for pid in children:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
