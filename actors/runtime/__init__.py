"""Wiring shared by the Supervisor and replay, the Supervisor, and the request path.

Imports :mod:`actors.policy` and :mod:`actors.edges` (and the core under them).
"""

__all__ = ()
