"""Plain files in a log directory: a size-rotated JSON-lines file fed from a bounded queue, and an
atomically replaced JSON document.

Takes in: encoded lines (:meth:`LineLog.put`, O(1), never waits: the request path calls it through
the bus) and whole documents (:func:`replace_json`). Puts out: the files. Owns: the queue of lines
not yet written and the batch being written. :meth:`LineLog.run` is the drain task; every write
happens on a worker thread (``anyio.to_thread``), so the event loop never touches the disk.

Promises:

* :meth:`~LineLog.put` never blocks and never raises: a full queue (``capacity`` lines) drops the
  line and counts it in ``dropped``; the first drop of an episode is one warning, and the count is
  logged once the writer has caught up.
* A failed write (directory gone, disk full, permissions) is one warning per episode; the lines
  stay in memory (the batch, plus the queue up to ``capacity``) and are retried with a growing
  real-time backoff (1 s, doubling to 30 s). Recovery is logged too.
* No line is written twice and none is lost between the drain task and :meth:`~LineLog.flush`:
  the worker thread removes each chunk from the batch as soon as it is on disk, and one lock
  keeps a flush from starting while another is writing (a cancelled drain waits for its thread).
* Rotation by size: a chunk that would take the file past ``max_bytes`` goes to a new file
  after ``name`` -> ``name.1`` -> ... -> ``name.N`` (``backups``; the oldest falls off; with 0 the
  file simply starts again). A single line longer than ``max_bytes`` gets a file of its own.
* :func:`replace_json` writes a temporary file in the same directory, fsyncs it and
  ``os.replace``-s it over the target, so a reader sees the old document or the new one, never
  half of one.

Timers here are housekeeping on real time (``anyio.sleep``), never the injected clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec

__all__ = ("LineLog", "check_directory", "replace_json")

_log = logging.getLogger("actors.logdir")
_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 30.0


def check_directory(directory: Path, *files: str) -> str | None:
    """Create ``directory`` if needed; what makes it unusable for writing ``files``, or None.

    Blocking: call it on a worker thread.
    """
    try:
        if directory.exists() and not directory.is_dir():
            return "it exists and is not a directory"
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):  # can we create files in it?
            pass
        for name in files:
            target = directory / name
            if target.exists() and not target.is_file():
                return f"{name} in it is not a regular file"
            if target.exists():
                with target.open("ab"):  # can we append to it? (writes nothing)
                    pass
    except OSError as exc:
        return f"{exc.strerror or exc} ({type(exc).__name__})"
    return None


class LineLog:
    """One JSON-lines file, appended to by a drain task from a bounded in-memory queue."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int, capacity: int = 10_000) -> None:
        self.path = path
        self.max_bytes = max(1, max_bytes)
        self.backups = max(0, backups)
        self.capacity = capacity
        self._queue: deque[bytes] = deque()
        self._batch: list[bytes] = []  # taken from the queue; only the writer thread shrinks it
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._closed = False
        self._dropping = False
        self._failing = False
        self.dropped = 0  # lines dropped because the queue was full (or put after close)
        self.written = 0  # lines on disk

    # ---------------------------------------------------------------- the producer side

    def put(self, line: bytes) -> bool:
        """Queue one line (its newline is added here); False when it was dropped. Never blocks."""
        if self._closed or len(self._queue) >= self.capacity:
            self.dropped += 1
            if not self._dropping and not self._closed:
                self._dropping = True
                _log.warning("the fallback log's queue is full (%d lines waiting for %s): dropping new "
                             "lines until it drains", self.capacity, self.path)
            return False
        self._queue.append(line + b"\n")
        self._wake.set()
        return True

    def pending(self) -> int:
        """Lines not yet on disk."""
        return len(self._queue) + len(self._batch)

    # ---------------------------------------------------------------- the drain task

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write what is queued whenever lines arrive; after a failure, retry with a backoff."""
        task_status.started()
        delay = _RETRY_FIRST_S
        while not self._closed:
            if self._failing:
                await anyio.sleep(delay)
                delay = min(_RETRY_MAX_S, delay * 2)
            else:
                delay = _RETRY_FIRST_S
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> bool:
        """Write everything queued now; True when nothing is left unwritten."""
        async with self._lock:
            self._batch.extend(self._queue)
            self._queue.clear()
            if not self._batch:
                return True
            try:
                await anyio.to_thread.run_sync(self._write_batch)
            except Exception as exc:  # OSError mostly; whatever it is, serving goes on
                if not self._failing:
                    _log.warning("cannot write %s (%s): %d fallback lines kept in memory and retried; "
                                 "serving goes on", self.path, exc, self.pending())
                self._failing = True
                return False
            if self._failing:
                _log.warning("writing %s works again", self.path)
                self._failing = False
            if self._dropping and not self._queue:
                _log.warning("the fallback log caught up: %d lines were dropped in all while its queue "
                             "was full", self.dropped)
                self._dropping = False
            return True

    async def close(self) -> bool:
        """Take no more lines and write the rest; True when nothing was left unwritten."""
        self._closed = True
        self._wake.set()
        written = await self.flush()
        if not written:
            _log.warning("%d fallback lines could not be written to %s before shutdown", self.pending(),
                         self.path)
        return written

    # ---------------------------------------------------------------- on the worker thread

    def _write_batch(self) -> None:
        """Append the batch, rotating by size; each chunk leaves the batch once it is on disk."""
        batch = self._batch
        while batch:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            room = self.max_bytes - size
            if size and len(batch[0]) > room:
                self._rotate()
                continue
            count, total = 0, 0
            for line in batch:
                if count and total + len(line) > max(room, 0):
                    break
                count, total = count + 1, total + len(line)
            with self.path.open("ab") as out:
                out.write(b"".join(batch[:count]))
            del batch[:count]
            self.written += count

    def _rotate(self) -> None:
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def _replace(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from a dashboard run by another user
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


async def replace_json(path: Path, document: Any) -> None:
    """Write ``document`` as indented JSON to ``path`` atomically (temp file, fsync, rename).

    Raises OSError when it can't; the old document, if any, is then left as it was.
    """
    data = msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
    await anyio.to_thread.run_sync(_replace, path, data)
