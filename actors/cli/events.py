"""``run.py events export`` and ``run.py replay``: the log out of the state file, and back again."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from functools import partial

from actors.cli.common import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, fail, run_async
from actors.cli.progress import Progress, reading
from actors.core.config import load_config
from actors.core.errors import FallbackError
from actors.replay import replay
from actors.replay.eventlog import read_log
from actors.replay.export import export_events
from actors.replay.merge import merge_events
from actors.replay.summary import compare, render_summary, render_timeline

__all__ = ("cmd_events", "cmd_replay")


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:  # read_log names the file and says why
        return None


def cmd_events(args: argparse.Namespace) -> int:
    """``events export``: the state file's event log as JSON lines (header first)."""
    stack = contextlib.ExitStack()
    try:
        config = load_config(args.config) if os.path.exists(args.config) else None
        paths: list[str] = args.state or [config.state.path if config else "state/fallback.db"]
        path = ", ".join(paths)
        to_stdout = args.output in (None, "-")
        # A bar on stderr, unless the events themselves are going to the same terminal.
        bar = stack.enter_context(Progress("exporting", unit="rows", quiet=args.quiet or (
            to_stdout and sys.stdout.isatty()) or len(paths) > 1))
        export = partial(export_events, paths[0], progress=bar.update_to if bar.shown else None) \
            if len(paths) == 1 else partial(merge_events, paths)
        if to_stdout:
            count = run_async(partial(export, sys.stdout.buffer, config=config, since=args.since,
                                      until=args.until, provider=args.provider))
            sys.stdout.buffer.flush()
        else:
            tmp = f"{args.output}.partial"
            try:
                out = open(tmp, "wb")
            except OSError as exc:  # name the file asked for, not the temporary one beside it
                raise OSError(exc.errno, exc.strerror, args.output) from None
            try:
                with out:
                    count = run_async(partial(export, out, config=config, since=args.since,
                                              until=args.until, provider=args.provider))
                os.replace(tmp, args.output)  # a killed export leaves no half-written log behind
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
    except (FallbackError, OSError) as exc:
        stack.close()
        fail(exc)
        return EXIT_STARTUP
    stack.close()  # the bar is cleared before the closing line
    target = f" to {args.output}" if args.output not in (None, "-") else ""
    print(f"exported {count} events from {path}{target}", file=sys.stderr)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay FILE``: the timeline and summary; exit 1 when replay disagrees with the log."""
    try:
        with Progress("reading", unit="B", bytes_=True, quiet=args.quiet,
                      total=_size(args.file)) as bar:
            log = read_log(reading(args.file, bar) if bar.shown else args.file, path=args.file)
        config = load_config(args.config) if args.config else None
        with Progress("replaying", unit="events", quiet=args.quiet or config is not None,
                      total=len(log.messages)) as bar:
            result = replay(log, config, progress=bar.update_to if bar.shown else None)
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
