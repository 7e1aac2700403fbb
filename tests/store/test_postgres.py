"""The PostgreSQL + pgvector backend on a real server (pgserver: PostgreSQL 16, pgvector 0.6):
the conformance suite, plus what is specific to a shared database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ragtune.config import StoreSettings
from ragtune.store import Store, open_store
from ragtune.testing.postgres import TemporaryPostgres
from ragtune.testing.store import StoreTests


def pg_settings(server: TemporaryPostgres, folder: Path) -> StoreSettings:
    """Settings whose schema is this folder's own (each test a fresh knowledge base)."""
    prefix = "t" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return StoreSettings(backend="postgres", dsn=server.dsn, schema_prefix=prefix)


class TestPostgresConformance(StoreTests):
    @pytest.fixture(autouse=True)
    def _server(self, postgres: TemporaryPostgres) -> None:
        self.server = postgres

    def make_store(self, folder: Path) -> Store:
        return open_store("postgres", folder, pg_settings(self.server, folder))
