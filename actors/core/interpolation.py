"""``${VAR}`` and ``${VAR:-default}`` in config strings: the syntax, the substitution, typed values.

:func:`interpolate` replaces every reference in the strings of TOML data
with the variable's value (empty counts as unset, as in the shell's ``:-``);
a value is never scanned again. ``$`` not followed by ``{`` (a lone ``$``,
``$$``) is literal text. An unclosed ``${``, an empty or invalid name, or a
nested ``${`` in a default is an :class:`InterpolationError` naming the bad
text, never a value from the environment.

A string that is exactly one reference can become a number or a boolean
(:func:`retype`) when the key it sets expects one: ``port = "${PORT:-8080}"``.
:func:`redact` keeps values substituted from secret variables out of messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.core.errors import ConfigError

__all__ = ("Interpolated", "InterpolationError", "KeyPath", "dotted", "interpolate", "redact", "retype")

KeyPath = tuple[str | int, ...]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
_SYNTAX = "write ${NAME} or ${NAME:-default}"


class InterpolationError(Exception):
    """A reference that can't be substituted; ``where`` is the key path it is at."""

    def __init__(self, where: KeyPath, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(message)


@dataclass
class Interpolated:
    """The data with every reference substituted, and what it took."""

    data: Any
    whole: dict[KeyPath, str] = field(default_factory=dict)  # strings that were exactly one reference
    used: dict[str, str] = field(default_factory=dict)  # variable name -> the value substituted

    def values_of(self, names: Iterable[object]) -> set[str]:
        """What was substituted from these variables, and each comma-separated part of it."""
        values = {self.used[n] for n in names if isinstance(n, str) and n in self.used}
        return values | {part.strip() for value in values for part in value.split(",")}


def dotted(where: KeyPath) -> str:
    """``("providers", 1, "base_url")`` -> ``providers[1].base_url``."""
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in where).lstrip(".")


def interpolate(value: Any, env: Mapping[str, str]) -> Interpolated:
    """Substitute every ``${...}`` in the strings of ``value`` (dicts and lists are copied)."""
    found = Interpolated(data=None)
    found.data = _walk(value, env, (), found)
    return found


def _walk(value: Any, env: Mapping[str, str], where: KeyPath, found: Interpolated) -> Any:
    if isinstance(value, str):
        return _substitute(value, env, where, found)
    if isinstance(value, dict):
        return {k: _walk(v, env, (*where, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, env, (*where, i), found) for i, v in enumerate(value)]
    return value


def _substitute(text: str, env: Mapping[str, str], where: KeyPath, found: Interpolated) -> str:
    out: list[str] = []
    done = 0
    while (start := text.find("${", done)) >= 0:
        end = text.find("}", start)
        if end < 0:
            raise InterpolationError(where, f"unclosed '${{' in {text[start:]!r} ({_SYNTAX})")
        ref = text[start : end + 1]
        out += [text[done:start], _resolve(ref, env, where, found)]
        if (start, end) == (0, len(text) - 1):
            found.whole[where] = ref
        done = end + 1
    return "".join(out) + text[done:]


def _resolve(ref: str, env: Mapping[str, str], where: KeyPath, found: Interpolated) -> str:
    name, sep, default = ref[2:-1].partition(":-")
    if not name:
        raise InterpolationError(where, f"empty variable name in {ref!r} ({_SYNTAX})")
    if not _NAME.fullmatch(name):
        raise InterpolationError(
            where,
            f"invalid variable name {name!r} in {ref!r}: a name is letters, digits and _, "
            f"not starting with a digit ({_SYNTAX})",
        )
    if "${" in default:
        raise InterpolationError(where, f"a default can't hold another '${{' in {ref!r} (no nesting)")
    got = env.get(name)
    if got:
        found.used[name] = got
        return got
    if sep:
        return default
    raise InterpolationError(
        where, f"environment variable {name} is not set and has no default (write ${{{name}:-default}})"
    )


def retype(found: Interpolated, kind_at: Callable[[KeyPath], type[Any] | None]) -> None:
    """Make each whole-reference string a number or boolean where ``kind_at`` says its key wants one."""
    for where, ref in found.whole.items():
        kind = kind_at(where)
        if kind in (int, float, bool):
            *parents, last = where
            node = found.data
            for step in parents:
                node = node[step]
            node[last] = _typed(node[last], kind, ref, where)


def _typed(text: str, kind: type[Any], ref: str, where: KeyPath) -> int | float | bool:
    word = text.strip()
    if kind is bool:
        if word.lower() in _BOOLS:
            return _BOOLS[word.lower()]
        expected = "true or false (or yes/no, on/off, 1/0)"
    elif kind is int:
        if _INT.fullmatch(word):
            return int(word)
        expected = "an integer"
    else:
        if _FLOAT.fullmatch(word):
            return float(word)
        expected = "a number"
    raise InterpolationError(where, f"expected {expected} from {ref}, got {text!r}")


def redact(exc: ConfigError, hidden: Collection[str]) -> ConfigError:
    """``exc`` with every value in ``hidden`` (and its repr form) shown as ``***``."""
    forms = sorted({f for v in hidden if v for f in (v, repr(v)[1:-1])}, key=len, reverse=True)
    if not any(f in str(exc) for f in forms):
        return exc
    prefix = ": ".join(p for p in (exc.path, exc.key) if p)
    message, key = str(exc).removeprefix(f"{prefix}: " if prefix else ""), exc.key
    for form in forms:
        message, key = message.replace(form, "***"), key.replace(form, "***")
    return ConfigError(message, path=exc.path, key=key)
