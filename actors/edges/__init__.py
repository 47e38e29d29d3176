"""Where I/O happens: provider adapters (HTTP), the prober that runs health
checks, and the store (the one owner of SQLite). Imports only :mod:`actors.core`.
"""

__all__ = ()
