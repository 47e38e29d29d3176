"""A progress bar on stderr for long command-line work (``events export``, ``replay``).

tqdm draws it (a runtime dependency: one pure-Python package with no dependencies of its own, whose
bar people know; it limits its redraws to ten a second and clears its line when done). It is drawn
only on a terminal and never with ``--quiet``: on a pipe, a file or a CI log nothing at all is
written, not even an escape code. The object takes updates either way, so callers never ask.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any

__all__ = ("Progress", "reading")


class Progress:
    """One bar: ``update_to(done, total)`` moves it; closing clears it (no trace left on the terminal)."""

    def __init__(self, desc: str, *, unit: str, quiet: bool = False, total: float | None = None,
                 stream: IO[str] | None = None, bytes_: bool = False) -> None:
        stream = stream or sys.stderr
        self._bar: Any = None
        if quiet or not _is_terminal(stream):
            return
        from tqdm import tqdm  # type: ignore[import-untyped]  # only when a bar is drawn

        self._bar = tqdm(desc=desc, total=total, unit=unit, file=stream, leave=False, dynamic_ncols=True,
                         unit_scale=bytes_, unit_divisor=1024 if bytes_ else 1000, mininterval=0.1)

    @property
    def shown(self) -> bool:
        """A bar is on the terminal."""
        return self._bar is not None

    def update_to(self, done: float, total: float | None = None) -> None:
        bar = self._bar
        if bar is None:
            return
        if total is not None and bar.total != total:
            bar.total = total
            bar.n = done
            bar.refresh()  # the total is news: draw it now, not after tqdm's mininterval
            return
        bar.update(done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def reading(path: str, bar: Progress) -> Iterator[bytes]:
    """The lines of ``path`` (opened on the first ``next``), moving ``bar`` by the bytes read."""
    done = told = 0
    with open(path, "rb") as f:
        for line in f:
            done += len(line)
            if done - told >= 1 << 20:  # every MiB: a bar costs nothing next to the reading
                bar.update_to(told := done)
            yield line
    bar.update_to(done)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False
