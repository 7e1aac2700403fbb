"""Store backends by name: the one place a knowledge base's store is chosen (`store.backend`).

A backend registers once, with every fact about it: how to open its store from a knowledge
base's folder and the `[store]` settings, the file it keeps in that folder (its marker: a
knowledge base whose folder holds a backend's file keeps that backend whatever the settings
say for new ones), whether a knowledge base exists without its folder (a shared database seen
from another replica), and how to salvage a damaged one.

    >>> store = open_store("sqlite", Path("~/.ragtune/kb/docs"))    # kb/docs/store.sqlite
    >>> backend_of(Path("~/.ragtune/kb/docs"), settings.store).name
    'sqlite'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragtune.config import StoreSettings
from ragtune.errors import ConfigError, StoreError
from ragtune.store.base import Store
from ragtune.store.repair import Salvaged, set_aside_and_salvage
from ragtune.store.sqlite import SQLiteStore

Opener = Callable[[Path, StoreSettings], Store]
"""Opens the store whose marker is at a path (a knowledge base's folder / `file_name`),
creating it on first use."""


@dataclass(frozen=True)
class StoreBackend:
    """One registered backend."""

    name: str
    opener: Opener
    file_name: str
    """What the store keeps in a knowledge base's folder: the data (SQLite) or a marker."""
    salvage: Callable[[Path], tuple[Path, Salvaged]]
    """Sets a damaged store at a path aside and reads back every row still readable: where
    the damaged store now lies, and the rows (`ragtune.store.repair`)."""
    shared: Callable[[Path, StoreSettings], bool] | None = None
    """Whether the knowledge base of a folder exists in a shared server (for backends whose
    data lives elsewhere: another replica may have created it)."""
    names: Callable[[StoreSettings], list[str]] | None = None
    """The knowledge bases a shared server holds (a replica may have no folder for them)."""

    def path(self, folder: Path) -> Path:
        """Where this backend keeps the store (or its marker) of the knowledge base in
        `folder`."""
        return folder / self.file_name

    def open(self, folder: Path, settings: StoreSettings | None = None) -> Store:
        """The store of the knowledge base in `folder`."""
        return self.opener(self.path(folder), settings or StoreSettings(backend=self.name))

    def exists(self, folder: Path, settings: StoreSettings) -> bool:
        """Whether the knowledge base in `folder` was ever written."""
        return self.path(folder).exists() or (self.shared is not None
                                              and self.shared(folder, settings))


_BACKENDS: dict[str, StoreBackend] = {}


def register_store(name: str, opener: Opener, *, file_name: str,
                   salvage: Callable[[Path], tuple[Path, Salvaged]],
                   shared: Callable[[Path, StoreSettings], bool] | None = None,
                   names: Callable[[StoreSettings], list[str]] | None = None) -> StoreBackend:
    """Make a backend available as `store.backend = "<name>"` (a later registration of the same
    name replaces it)."""
    backend = StoreBackend(name, opener, file_name, salvage, shared, names)
    _BACKENDS[name] = backend
    return backend


def store_backend(name: str) -> StoreBackend:
    """The backend registered as `name`; `ConfigError` naming the known ones otherwise."""
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigError(f"store.backend must be one of {known}, got {name!r}") from None


def backend_of(folder: Path, settings: StoreSettings) -> StoreBackend:
    """The backend of the knowledge base in `folder`: the one whose file the folder holds
    (the settings' own first), else the one the settings name for new knowledge bases."""
    default = store_backend(settings.backend)
    for backend in (default, *(b for b in _BACKENDS.values() if b is not default)):
        if backend.path(folder).exists():
            return backend
    return default


def open_store(name: str, folder: Path, settings: StoreSettings | None = None) -> Store:
    """The store of the knowledge base in `folder`, by the backend registered as `name`."""
    return store_backend(name).open(folder, settings)


def _sqlite(path: Path, settings: StoreSettings) -> Store:
    return SQLiteStore(path)


def _postgres(path: Path, settings: StoreSettings) -> Store:
    from ragtune.store.postgres import open_postgres  # psycopg loads only when used

    return open_postgres(path, settings)


def _postgres_has(folder: Path, settings: StoreSettings) -> bool:
    from ragtune.store.postgres import schema_exists

    return settings.dsn is not None and schema_exists(folder.name, settings)


def _postgres_names(settings: StoreSettings) -> list[str]:
    from ragtune.store.postgres import knowledge_bases

    return knowledge_bases(settings) if settings.dsn else []


def knowledge_base_names(home_kb: Path, settings: StoreSettings) -> list[str]:
    """Every knowledge base of a home: its folders under `home_kb`, and those the configured
    backend's shared server holds."""
    found = {p.name for p in home_kb.iterdir() if p.is_dir()} if home_kb.is_dir() else set()
    backend = store_backend(settings.backend)
    if backend.names is not None:
        found.update(backend.names(settings))
    return sorted(found)


def _no_salvage(path: Path) -> tuple[Path, Salvaged]:
    raise StoreError(f"{path}: a PostgreSQL knowledge base is not salvaged by ragtune: restore "
                     "it from the server's backups (pg_dump / point-in-time recovery); "
                     "`pg_amcheck` finds damaged pages and indexes")


register_store("sqlite", _sqlite, file_name="store.sqlite", salvage=set_aside_and_salvage)
register_store("postgres", _postgres, file_name="store.postgres", salvage=_no_salvage,
               shared=_postgres_has, names=_postgres_names)
