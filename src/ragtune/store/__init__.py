"""The knowledge store: the store protocols (one per role), their backends (SQLite is the
default) and the registry that opens a backend by name."""

from ragtune.store.base import (
    DocumentStore,
    DocumentVersion,
    IndexSnapshot,
    Maintenance,
    SnapshotSource,
    Store,
    StoredDocument,
    StoreStats,
    Trace,
    TraceStore,
    VectorSearch,
)
from ragtune.store.registry import (
    StoreBackend,
    backend_of,
    knowledge_base_names,
    open_store,
    register_store,
    store_backend,
)
from ragtune.store.sqlite import SQLiteStore

__all__ = [
    "DocumentStore",
    "DocumentVersion",
    "IndexSnapshot",
    "Maintenance",
    "SQLiteStore",
    "SnapshotSource",
    "Store",
    "StoreBackend",
    "StoreStats",
    "StoredDocument",
    "Trace",
    "TraceStore",
    "VectorSearch",
    "backend_of",
    "knowledge_base_names",
    "open_store",
    "register_store",
    "store_backend",
]
