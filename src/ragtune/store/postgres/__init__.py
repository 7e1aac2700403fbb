"""The PostgreSQL + pgvector backend (`store.backend = "postgres"`): one schema per knowledge
base in a database several processes share. Opened through `ragtune.store.registry`; the
knowledge base's folder keeps a marker (`store.postgres`) naming the schema and server (no
password)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ragtune.config import StoreSettings
from ragtune.errors import ConfigError
from ragtune.store.postgres.database import Database, redact
from ragtune.store.postgres.store import KB_COMMENT, PostgresStore


def schema_name(prefix: str, kb_name: str) -> str:
    """The schema of knowledge base `kb_name`: `<prefix>_<name>` lowercased, characters other
    than [a-z0-9_] replaced, and a short hash added where that changed the name (so two names
    never share a schema) or it is too long for PostgreSQL (63 bytes)."""
    plain = re.sub(r"[^a-z0-9_]", "_", kb_name.lower())
    name = f"{prefix}_{plain}"
    if plain != kb_name or len(name) > 63:
        digest = hashlib.sha256(kb_name.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{digest}"
    return name


def _dsn(settings: StoreSettings) -> str:
    if not settings.dsn:
        raise ConfigError("store.backend = 'postgres' needs a server: set store.dsn in "
                          "config.toml or RAGTUNE_PG_DSN (postgresql://user@host:5432/db)")
    return settings.dsn


def open_postgres(marker: Path, settings: StoreSettings) -> PostgresStore:
    """The store of the knowledge base whose folder holds `marker` (written here)."""
    dsn, schema = _dsn(settings), schema_name(settings.schema_prefix, marker.parent.name)
    store = PostgresStore(dsn, schema, pool_size=settings.pool_size,
                          statement_timeout_s=settings.statement_timeout_s,
                          retries=settings.connect_retries, ef_search=settings.ef_search,
                          kb_name=marker.parent.name, index_build_mb=settings.index_build_mb)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"backend": "postgres", "schema": schema,
                                  "server": redact(dsn)}, indent=2) + "\n", encoding="utf-8")
    return store


def knowledge_bases(settings: StoreSettings) -> list[str]:
    """The names of the knowledge bases the database holds under `store.schema_prefix`."""
    db = Database(_dsn(settings), "public", retries=0)
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
            "WHERE starts_with(nspname, %s) AND starts_with(obj_description(oid, "
            "'pg_namespace'), %s)", (f"{settings.schema_prefix}_", KB_COMMENT)).fetchall()
    return sorted(r[0][len(KB_COMMENT):] for r in rows)


def schema_exists(kb_name: str, settings: StoreSettings) -> bool:
    """Whether the database holds knowledge base `kb_name` (created by any process)."""
    db = Database(_dsn(settings), "public", retries=0)
    with db.connect() as conn:
        row = conn.execute("SELECT to_regclass(%s)", (
            f'"{schema_name(settings.schema_prefix, kb_name)}".documents',)).fetchone()
    return row is not None and row[0] is not None


__all__ = ["PostgresStore", "knowledge_bases", "open_postgres", "schema_exists", "schema_name"]
