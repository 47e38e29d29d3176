"""The base of every message (:mod:`actors.core.messages` has them all and re-exports it)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = ("Message",)


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message. ``at`` is the clock time it happened."""

    at: float
    logged: ClassVar[bool] = True
