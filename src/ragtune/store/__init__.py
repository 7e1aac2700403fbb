"""The knowledge store: the `Store` protocol and its backends (SQLite is the default)."""

from ragtune.store.base import (
    DocumentVersion,
    IndexSnapshot,
    LexicalHits,
    Store,
    StoredDocument,
    StoreStats,
    Trace,
)
from ragtune.store.sqlite import SQLiteStore

__all__ = [
    "DocumentVersion",
    "IndexSnapshot",
    "LexicalHits",
    "SQLiteStore",
    "Store",
    "StoreStats",
    "StoredDocument",
    "Trace",
]
