"""The store registry: backends by name, chosen by `store.backend`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune import KnowledgeBase, Settings
from ragtune.config import StoreSettings
from ragtune.errors import ConfigError
from ragtune.store import SQLiteStore, open_store, register_store, store_backend
from ragtune.store.registry import _BACKENDS


def test_sqlite_is_the_default_and_keeps_store_sqlite(tmp_path: Path) -> None:
    assert Settings().store.backend == "sqlite"
    store = open_store("sqlite", tmp_path / "kb")
    try:
        assert isinstance(store, SQLiteStore) and store.path == tmp_path / "kb" / "store.sqlite"
    finally:
        store.close()
    assert store_backend("sqlite").path(tmp_path) == tmp_path / "store.sqlite"


def test_an_unknown_backend_is_a_config_error_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store.backend must be one of .*sqlite.*got 'pg'"):
        open_store("pg", tmp_path / "kb")
    kb = KnowledgeBase("docs", Settings.load(home=tmp_path, store=StoreSettings(backend="pg")))
    with pytest.raises(ConfigError, match="got 'pg'"):
        kb.store  # noqa: B018


def test_the_knowledge_base_opens_the_backend_its_settings_name(tmp_path: Path) -> None:
    opened: list[Path] = []

    def opener(path: Path, settings: StoreSettings) -> SQLiteStore:
        opened.append(path)
        return SQLiteStore(path)

    salvage = store_backend("sqlite").salvage
    register_store("other", opener, file_name="other.db", salvage=salvage)
    try:
        settings = Settings.load(home=tmp_path, store={"backend": "other"})
        with KnowledgeBase("docs", settings) as kb:
            assert not kb.exists()
            assert kb.store_path == tmp_path / "kb" / "docs" / "other.db"
            kb.store.set_meta({"k": "v"})
            assert opened == [kb.store_path] and kb.exists()
    finally:
        del _BACKENDS["other"]
