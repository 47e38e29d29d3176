"""The five actors and the pure ``classify()``: decisions only, no I/O.

Each actor's ``handle(message, now)`` is synchronous and pure over its own
state, so unit tests and replay call it directly. Imports only :mod:`actors.core`.
"""

__all__ = ()
