"""The SQLite state file: provider state, metric rollups and the event log."""

from actors.edges.store.schema import MIGRATIONS, MetricRollup, StoredEvent
from actors.edges.store.store import Store

__all__ = ("MIGRATIONS", "MetricRollup", "Store", "StoredEvent")
