"""What every command shares: running on uvloop, the one ``error:`` line, tables, argument types."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

from actors.core.config import Config
from actors.core.times import parse_time

__all__ = ("EXIT_FAILED", "EXIT_OK", "EXIT_STARTUP", "fail", "format_table", "port", "positive", "run_async",
           "service_url", "when", "worker_count")

EXIT_OK, EXIT_FAILED, EXIT_STARTUP = 0, 1, 2
_T = TypeVar("_T")


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


def when(text: str) -> float:
    """A time on the command line: epoch seconds, or ISO 8601 (UTC unless it says otherwise)."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected 0..65535, got {port}")
    return port


def worker_count(text: str) -> int:
    """``--workers N``: 1 to 64 processes."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, got {text!r}") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"expected 1..64, got {count}")
    return count


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
