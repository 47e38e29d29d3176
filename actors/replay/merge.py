"""``run.py events export --state a.db --state b.db``: several instances' logs as one, for reading.

Each instance of a cluster (``[state] shared_url``) keeps its own event log,
and each replays alone. To read what the cluster did, this merges them into
one time-ordered excerpt: a header naming every source (and saying it is not
for replay), then every line of every log merged by its ``at``, each with a
``"source"`` key naming the state file it came from. Each log keeps its own
order (a decision is dated by its cause, so a log's times may step back a
little): the merge interleaves the logs, it never reorders one. Each log is exported
first (:func:`~actors.replay.export.export_events`, same filters) to a
temporary file beside nothing, then merged by streaming, so memory stays flat.
"""

from __future__ import annotations

import heapq
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

import msgspec

from actors.core.config import Config
from actors.core.messages import SCHEMA_VERSION
from actors.replay.eventlog import FORMAT, LogHeader
from actors.replay.export import export_events

__all__ = ("merge_events",)

NOTE = "merged from several instances' logs for reading: replay each instance's own log"


class _At(msgspec.Struct):
    at: float = 0.0


_at_decoder = msgspec.json.Decoder(_At)


def _lines(path: str, source: str) -> Iterator[tuple[float, int, bytes]]:
    with open(path, "rb") as f:
        next(f, None)  # its own header
        for n, line in enumerate(f):
            line = line.rstrip(b"\n")
            if line:
                # The source goes first, spliced into the object: the line stays exactly the stored JSON.
                head = b'{"source":' + msgspec.json.encode(source) + b","
                yield _at_decoder.decode(line).at, n, head + line[1:]


async def merge_events(state_paths: Sequence[str | os.PathLike[str]], out: IO[bytes], *,
                       config: Config | None = None, since: float | None = None, until: float | None = None,
                       provider: str | None = None) -> int:
    """Write one header and every event of ``state_paths``, ordered by time; return how many events."""
    count = 0
    sources: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pf-merge-") as tmp:
        parts: list[tuple[str, str]] = []
        for i, path in enumerate(state_paths):
            part = os.path.join(tmp, f"{i}.jsonl")
            with open(part, "wb") as f:  # noqa: ASYNC230 (export_events writes to it synchronously too)
                count += await export_events(path, f, config=config, since=since, until=until,
                                             provider=provider)
            source = os.fspath(path)
            sources.append(source)
            parts.append((part, source))
        asked = (("since", since), ("until", until), ("provider", provider))
        filters: dict[str, Any] = {k: v for k, v in asked if v is not None}
        header = LogHeader(format=FORMAT, schema_version=SCHEMA_VERSION, exported_at=time.time(),
                           source=", ".join(os.path.basename(s) for s in sources),
                           filters={**filters, "merged": sources, "note": NOTE})
        out.write(msgspec.json.encode(header) + b"\n")
        for _, _, line in heapq.merge(*(_lines(part, source) for part, source in parts),
                                      key=lambda item: (item[0], item[1])):
            out.write(line + b"\n")
    return count
