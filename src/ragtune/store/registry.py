"""Store backends by name: the one place a knowledge base's store is chosen (`store.backend`).

A backend registers once, with every fact about it: how to open its store, the file it keeps in a
knowledge base's folder (there: the knowledge base exists), and how to salvage a damaged one.

    >>> store = open_store("sqlite", Path("~/.ragtune/kb/docs"))    # kb/docs/store.sqlite
    >>> register_store("postgres", PostgresStore, file_name="store.url",
    ...                salvage=salvage_postgres)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import ConfigError
from ragtune.store.base import Store
from ragtune.store.repair import Salvaged, set_aside_and_salvage
from ragtune.store.sqlite import SQLiteStore


@dataclass(frozen=True)
class StoreBackend:
    """One registered backend."""

    name: str
    opener: Callable[[Path], Store]
    """Opens the store at a path (a knowledge base's folder / `file_name`), creating it on
    first write."""
    file_name: str
    """What the store keeps in a knowledge base's folder."""
    salvage: Callable[[Path], tuple[Path, Salvaged]]
    """Sets a damaged store at a path aside and reads back every row still readable: where
    the damaged store now lies, and the rows (`ragtune.store.repair`)."""

    def path(self, folder: Path) -> Path:
        """Where this backend keeps the store of the knowledge base in `folder`."""
        return folder / self.file_name

    def open(self, folder: Path) -> Store:
        """The store of the knowledge base in `folder`."""
        return self.opener(self.path(folder))


_BACKENDS: dict[str, StoreBackend] = {}


def register_store(name: str, opener: Callable[[Path], Store], *, file_name: str,
                   salvage: Callable[[Path], tuple[Path, Salvaged]]) -> StoreBackend:
    """Make a backend available as `store.backend = "<name>"` (a later registration of the same
    name replaces it)."""
    backend = StoreBackend(name, opener, file_name, salvage)
    _BACKENDS[name] = backend
    return backend


def store_backend(name: str) -> StoreBackend:
    """The backend registered as `name`; `ConfigError` naming the known ones otherwise."""
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigError(f"store.backend must be one of {known}, got {name!r}") from None


def open_store(name: str, folder: Path) -> Store:
    """The store of the knowledge base in `folder`, by the backend registered as `name`."""
    return store_backend(name).open(folder)


register_store("sqlite", SQLiteStore, file_name="store.sqlite", salvage=set_aside_and_salvage)
