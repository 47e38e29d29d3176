"""What crosses Redis: the shared record of a provider or deployment, the change messages peers
publish, and the small results of the atomic operations.

Change messages are frozen, keyword-only msgspec Structs with an explicit,
stable ``type`` tag (the house style of :mod:`actors.core.messages`): a Lua
script publishes them, and whoever wires them in logs them as inputs, so a
tag is never renamed or reused, and new fields get defaults.

Times (``until``, ``at``) are wall-clock epoch seconds, each written by the
instance that made the change: instances share no monotonic clock, so the
shared record can only speak in wall time, and instances are expected to
keep their clocks in step (NTP). ``version`` is one counter for the whole
cluster, bumped by every change: a higher version is a later change, which
is what reconcile compares.
"""

from __future__ import annotations

import contextlib

import msgspec

from actors.core.states import ProviderState

__all__ = (
    "ChangesResumed",
    "CooldownExtended",
    "HeadroomExhausted",
    "PeerChange",
    "SharedChange",
    "SharedRecord",
    "Spent",
    "StateSet",
    "Written",
    "change_head",
    "decode_change",
    "encode_message",
    "usage_by_instance",
)


class SharedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's or deployment's shared state, as stored (``records()`` returns these by key)."""

    key: str  # the provider name, or ``provider/upstream`` for a deployment
    state: ProviderState
    until: float = 0.0  # cooldown end (epoch seconds); 0: none
    reason: str = ""
    origin: str = ""  # what caused it, as the writer said (a request id, "admin", a probe)
    instance: str = ""  # the instance that wrote it
    version: int = 0
    at: float = 0.0  # when it was written, by the writer's clock


class SharedChange(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of the messages a change publishes on the cluster's channel (the record as written)."""

    key: str
    state: ProviderState
    until: float = 0.0
    reason: str = ""
    origin: str = ""
    instance: str = ""
    at: float = 0.0
    #: Set by the script that publishes (0 never reaches a reader): ``omit_defaults`` leaves it out
    #: of the JSON the caller encodes, and the script appends the version it assigned.
    version: int = 0


class CooldownExtended(SharedChange, frozen=True, kw_only=True, tag="shared_cooldown_extended"):
    """A peer set a later cooldown end than the record had (a shorter one never publishes)."""


class StateSet(SharedChange, frozen=True, kw_only=True, tag="shared_state_set"):
    """A peer set the record unconditionally: a restore (``healthy``), an admin disable or enable."""

    #: A restore also cleared the failure count (``restore()``); an admin set leaves it.
    restored: bool = False


class ChangesResumed(msgspec.Struct, frozen=True, kw_only=True, tag="shared_changes_resumed"):
    """The subscription (re)started: messages may have been missed before it, so reconcile now.

    Not published by anyone: ``changes()`` yields it first and after every reconnect.
    """

    at: float


class HeadroomExhausted(msgspec.Struct, frozen=True, kw_only=True, tag="shared_headroom_exhausted"):
    """A peer's answer said deployment ``key`` has no requests (or tokens) left until ``until``.

    Published once per (key, reset) by the instance that read the headers; a peer skips the
    deployment until then without paying a request to learn it. Not a provider state change: no
    record, no version, and nobody logs it (admission is per-process state that replay doesn't model).
    """

    key: str  # ``provider/upstream``
    until: float  # when the budget resets (epoch seconds, the publisher's clock)
    instance: str = ""
    at: float = 0.0


#: What ``changes()`` yields.
PeerChange = CooldownExtended | StateSet | HeadroomExhausted | ChangesResumed

_DECODER: msgspec.json.Decoder[CooldownExtended | StateSet | HeadroomExhausted] = msgspec.json.Decoder(
    CooldownExtended | StateSet | HeadroomExhausted)
_ENCODER = msgspec.json.Encoder()


def decode_change(data: bytes | str) -> CooldownExtended | StateSet | HeadroomExhausted:
    """A published message; ``msgspec.DecodeError`` (a ValueError) when it is not one."""
    return _DECODER.decode(data)


def encode_message(message: HeadroomExhausted) -> bytes:
    """A message published as it is (no version to splice in)."""
    return _ENCODER.encode(message)


def change_head(change: CooldownExtended | StateSet) -> bytes:
    """The change's JSON without its closing brace: the script appends ``,"version":N}``.

    The version is only known inside the script, and splicing an integer is all
    the JSON the script writes; msgspec escapes every string.
    """
    if change.version:
        raise ValueError("the script assigns the version: leave it 0")
    return _ENCODER.encode(change)[:-1]


class Written(msgspec.Struct, frozen=True, kw_only=True):
    """What a write left in the record: ``changed`` says whether this call changed it."""

    until: float  # the cooldown end now stored (the caller's when changed, else the longer one kept)
    changed: bool
    version: int  # the record's version after the call (0: there is no record)


class Spent(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``spend()``: whether the budget allowed it, and what is left in the window."""

    allowed: bool
    requests_used: int
    tokens_used: int
    remaining_requests: int | None  # None: no request limit
    remaining_tokens: int | None  # None: no token limit
    reset_s: float  # seconds until the window starts over


def usage_by_instance(fields: list[str]) -> dict[str, tuple[int, int]]:
    """A usage hash as read (``r:<instance>``, ``t:<instance>``, ...): ``{instance: (requests, tokens)}``."""
    data = dict(zip(fields[::2], fields[1::2], strict=True))
    out: dict[str, tuple[int, int]] = {}
    for name, value in data.items():
        if name.startswith("r:"):
            with contextlib.suppress(ValueError):
                out[name[2:]] = (int(value), int(data.get("t:" + name[2:], 0)))
    return out
