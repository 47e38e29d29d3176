"""Client faults in the service log: one line each, rate-limited per kind, never a traceback.

A client that sends malformed HTTP or hangs up mid-request is not a bug of
the service: :class:`Lines` logs such an event as one line, at most one per
kind per ``window_s`` seconds; the next line of that kind counts the ones left
out. :class:`ServerLog` is the logger aiohttp's ``RequestHandler`` is given
(``AppRunner(logger=...)``, a documented handler argument): aiohttp logs a
request it cannot parse with ``logger.exception("Error handling request
...")`` (or ``logger.debug`` for a bad method on a first request), which would
print a traceback for every bad request line; here it becomes one line. Any
other exception aiohttp logs is a real bug and keeps its traceback, once.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp.http import HttpProcessingError

__all__ = ("Lines", "ServerLog", "one_line")

log = logging.getLogger("actors.gateway")
_LONGEST = 300  # characters of a client-controlled detail that reach the log


def one_line(detail: object) -> str:
    """``detail`` as one short line: whitespace (newlines too) collapsed, cut at 300 characters."""
    text = " ".join(str(detail).split())
    return text if len(text) <= _LONGEST else text[:_LONGEST] + "..."


class Lines:
    """At most one log line per kind per ``window_s`` seconds; the next one counts those left out."""

    def __init__(self, logger: logging.Logger = log, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.window_s, self._clock = logger, window_s, clock
        self._kinds: dict[str, tuple[float, int]] = {}  # kind: (last logged at, left out since)

    def emit(self, level: int, kind: str, text: str) -> bool:
        """Log ``text`` unless a line of ``kind`` was logged in the window; True when it was logged."""
        now = self._clock()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self.window_s:
            self._kinds[kind] = (last[0], last[1] + 1)
            return False
        self._kinds[kind] = (now, 0)
        if last is not None and last[1]:
            text += f" (and {last[1]} more like it in the {self.window_s:g} s before, not logged)"
        self.logger.log(level, "%s", text)
        return True


def _exception(exc_info: object) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    return sys.exc_info()[1] if exc_info is True else None


class ServerLog:
    """The logger for aiohttp's request handler: client faults become :class:`Lines`, the rest passes.

    aiohttp calls ``debug``, ``exception`` and ``warning`` on it; each record
    goes to ``lines.logger`` (``actors.gateway``).
    """

    def __init__(self, lines: Lines) -> None:
        self.lines = lines

    def _client_fault(self, exc: BaseException | None, args: tuple[object, ...]) -> bool:
        """Log ``exc`` as one line if it is the client's doing (malformed HTTP, a hang-up)."""
        peer = f" from {args[0]}" if args else ""
        if isinstance(exc, HttpProcessingError):
            self.lines.emit(logging.WARNING, type(exc).__name__,
                            f"malformed HTTP request{peer}, answered {exc.code}: "
                            f"{type(exc).__name__}: {one_line(exc.message)}")
            return True
        if isinstance(exc, ConnectionError):
            self.lines.emit(logging.INFO, "disconnect",
                            f"client{peer} disconnected mid-request ({type(exc).__name__}: {one_line(exc)})")
            return True
        return False

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        exc = _exception(kwargs.get("exc_info"))
        if exc is None or not self._client_fault(exc, args):
            self.lines.logger.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: Any) -> None:
        exc = _exception(exc_info)
        if not self._client_fault(exc, args):
            self.lines.logger.error(msg, *args, exc_info=exc, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.lines.logger.info(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.lines.logger.warning(msg, *args, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.lines.logger.error(msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return self.lines.logger.isEnabledFor(level)
