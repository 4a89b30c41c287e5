"""The storage engine: databases, values and expiry. No I/O and no trio here."""

from kvrepl.store.database import Database, Keyspace
from kvrepl.store.values import ZSet, type_name

__all__ = ["Database", "Keyspace", "ZSet", "type_name"]
