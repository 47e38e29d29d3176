"""The command line: ``serve`` (the default), ``check``, ``status``, ``events export``, ``replay``.

``run.py`` at the checkout's root calls :func:`main`, adding the ``demo``
command from ``examples/`` (the demo is an example, not part of the library).
Logs go to stderr, one line per event. Secrets are never printed: keys show
as "set" / "NOT SET".
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from actors.cli.common import port, positive, when, worker_count
from actors.cli.events import cmd_events, cmd_replay
from actors.cli.providers import cmd_providers
from actors.cli.status import cmd_check, cmd_status
from actors.cli.workers import cmd_serve_workers

__all__ = ("COMMANDS", "Command", "build_parser", "main")


@dataclass(frozen=True)
class Command:
    """A command added from outside the library (``run.py`` adds ``demo`` this way)."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    log_level: str = "warning"


COMMANDS = ("serve", "check", "status", "providers", "events", "replay")


def build_parser(extra: Mapping[str, Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser: serve (default), check, status, events export, replay, and ``extra``."""
    extra = extra or {}
    names = ",".join((*COMMANDS, *extra))
    parser = argparse.ArgumentParser(prog="run.py", description="provider-fallback: LLM-provider failover.")
    sub = parser.add_subparsers(dest="command", metavar=f"{{{names}}}")
    serve = sub.add_parser("serve", help="run the HTTP gateway (the default)")
    serve.add_argument("--host", help="override [server] host")
    serve.add_argument("--port", type=port, help="override [server] port (0: any free port)")
    serve.add_argument("--workers", type=worker_count, default=1,
                       help="N processes on one port (SO_REUSEPORT), sharing state through "
                            "[state] shared_url")
    check = sub.add_parser("check", help="validate the config and list the providers")
    status = sub.add_parser("status", help="provider states and metrics")
    status.add_argument("--url", help="the service's URL (default: from [server] in the config)")
    status.add_argument("--json", action="store_true", help="print the raw /status JSON")
    status.add_argument("--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    status.add_argument("--interval", type=positive, default=1.0, help="seconds between redraws (default 1)")
    providers = sub.add_parser("providers", help="list, or enable / disable / probe NAME on the service")
    providers.add_argument("action", choices=["list", "enable", "disable", "probe"])
    providers.add_argument("name", nargs="?", help="the provider (not for list)")
    providers.add_argument("--url", help="the service's URL (default: from [server] in the config)")
    providers.add_argument("--json", action="store_true", help="print the raw JSON answer")
    events = sub.add_parser("events", help="the event log: events export [-o FILE]")
    events_sub = events.add_subparsers(dest="action", metavar="{export}", required=True)
    export = events_sub.add_parser("export", help="write the event log as JSON lines (for replay)")
    export.add_argument("--since", type=when, help="from this time (epoch seconds or ISO 8601)")
    export.add_argument("--until", type=when, help="before this time")
    export.add_argument("--provider", help="only this provider's events (and starts, restarts)")
    export.add_argument("-o", "--output", help="output file (default: stdout)")
    export.add_argument("--state", action="append",
                        help="the state file (default: [state] path in the config); several: one "
                             "time-ordered excerpt of every instance's log, for reading")
    rep = sub.add_parser("replay", help="replay an exported log; --config for what-if")
    rep.add_argument("file", help="an exported log (run.py events export)")
    rep.add_argument("--config", help="replay under this config instead of the log's own (what if)")
    rep.add_argument("--limit", type=int, default=200, help="timeline rows to print (default 200)")
    for parsed in (export, rep):  # the bar is drawn only on a terminal
        parsed.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    levels = [(serve, "info"), (check, "info"), (status, "info"), (providers, "warning"), (export, "warning"),
              (rep, "warning")]
    for name, command in extra.items():
        added = sub.add_parser(name, help=command.help)
        command.configure(added)
        levels.append((added, command.log_level))
    for parsed in (serve, check, status, providers, export):
        parsed.add_argument("--config", default="config.toml", help="config file (default: ./config.toml)")
    for parsed, level in levels:
        parsed.add_argument("--log-level", default=level, choices=["debug", "info", "warning", "error"],
                            help=f"stderr log level (default: {level})")
    return parser


def main(argv: Sequence[str] | None = None, *, extra: Mapping[str, Command] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status."""
    extra = extra or {}
    args_list = list(sys.argv[1:] if argv is None else argv)
    known = (*COMMANDS, *extra, "-h", "--help")
    if not args_list or args_list[0] not in known:
        args_list.insert(0, "serve")
    args = build_parser(extra).parse_args(args_list)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": cmd_serve_workers, "check": cmd_check, "status": cmd_status, "providers": cmd_providers,
        "events": cmd_events,
        "replay": cmd_replay, **{name: c.run for name, c in extra.items()}}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C outside serve's own signal handling
        return 130
