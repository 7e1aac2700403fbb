"""What replicas of the service share when the knowledge bases live in PostgreSQL
(`store.backend = "postgres"`): the API keys and the request budgets per key, in the
`<store.schema_prefix>_service` schema. A key created or revoked through one replica (or the CLI)
holds on every other at its next request; a key's budget is spent across all of them.

    >>> keys = PostgresKeyStore.open(settings.store)
    >>> limiter = keys.rate_limiter(per_minute=120, burst=20)
"""

from __future__ import annotations

import random
from typing import Any

import psycopg

from ragtune.config import StoreSettings
from ragtune.errors import ConfigError
from ragtune.service.keys import KeyRecord, KeyStore
from ragtune.store.postgres.database import Database

MIGRATIONS = """
CREATE TABLE IF NOT EXISTS keys (
    id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    secret_sha256 text NOT NULL,
    scopes text NOT NULL,
    groups text NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision,
    last_used_at double precision
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    limiter text NOT NULL,
    key_id text NOT NULL,
    tokens double precision NOT NULL,
    updated_at double precision NOT NULL,
    allowed boolean NOT NULL,
    PRIMARY KEY (limiter, key_id)
);
"""
_COLUMNS = "id, name, scopes, groups, created_at, revoked_at, last_used_at, secret_sha256"
PRUNE_CHANCE = 0.001
"""How often a request also deletes buckets idle for ten minutes (full again by then)."""
_NOW = "extract(epoch from clock_timestamp())"  # the database's clock: one for all replicas


class PostgresKeyStore(KeyStore):
    """The key store in a database several replicas share (see the module docstring)."""

    def __init__(self, db: Database) -> None:  # no super().__init__: no SQLite file
        self.db = db
        self.path = db.where  # type: ignore[assignment]  # what messages name
        with db.connect(configured=False) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (db.schema,))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"')
            conn.execute(f'SET LOCAL search_path TO "{db.schema}"')
            conn.execute(MIGRATIONS)

    @classmethod
    def open(cls, settings: StoreSettings) -> PostgresKeyStore:  # type: ignore[override]
        if not settings.dsn:
            raise ConfigError("store.backend = 'postgres' needs a server for the keys too: set "
                              "store.dsn or RAGTUNE_PG_DSN")
        return cls(Database(settings.dsn, f"{settings.schema_prefix}_service",
                            pool_size=settings.pool_size,
                            statement_timeout_s=settings.statement_timeout_s,
                            retries=settings.connect_retries))

    def close(self) -> None:
        self.db.close()

    def rate_limiter(self, per_minute: int, burst: int) -> SharedRateLimiter:
        """Budgets kept in the database: spent by every replica together."""
        return SharedRateLimiter(self.db, per_minute, burst)

    def _insert(self, record: KeyRecord, secret_sha256: str) -> bool:
        cur = self.db.run(lambda c: c.execute(
            "INSERT INTO keys (id, name, secret_sha256, scopes, groups, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (record.id, record.name, secret_sha256, ",".join(record.scopes),
             ",".join(record.groups), record.created_at)), doing="creating a key")
        return bool(cur.rowcount == 1)

    def _rows(self, key_id: str | None = None) -> list[tuple[Any, ...]]:
        if key_id is None:
            rows = self.db.read(lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM keys ORDER BY created_at").fetchall())
        else:
            rows = self.db.read(lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM keys WHERE id = %s", (key_id,)).fetchall())
        return list(rows)

    def _set(self, key_id: str, column: str, when: float) -> None:
        value = "COALESCE(revoked_at, %s)" if column == "revoked_at" else "%s"
        self.db.run(lambda c: c.execute(
            f"UPDATE keys SET {column} = {value} WHERE id = %s",  # type: ignore[arg-type]
            (when, key_id)), doing="updating a key")

    def any_active(self) -> bool:
        return self.db.read(lambda c: c.execute(
            "SELECT 1 FROM keys WHERE revoked_at IS NULL LIMIT 1").fetchone()) is not None


class SharedRateLimiter:
    """A token bucket per key in the database: `burst` requests at once, `per_minute`
    sustained, counted by one atomic statement per request whichever replica serves it."""

    def __init__(self, db: Database, per_minute: int, burst: int) -> None:
        self.db, self.rate, self.burst = db, per_minute / 60.0, float(burst)
        self.name = f"{per_minute}/{burst}"  # limiters with other budgets keep other buckets

    def wait(self, key_id: str, count: bool = True) -> float:
        """0 when the request may go now (and counts it, unless `count` is false: a look),
        else the seconds until it may."""
        refill = f"least(%(burst)s, b.tokens + ({_NOW} - b.updated_at) * %(rate)s)"
        params = {"limiter": self.name, "key": key_id, "burst": self.burst, "rate": self.rate}
        if not count:  # a look: nothing written
            row = self.db.read(lambda c: c.execute(
                f"SELECT {refill} FROM rate_buckets b WHERE limiter = %(limiter)s "  # type: ignore[arg-type]
                "AND key_id = %(key)s", params).fetchone())
            tokens = self.burst if row is None else float(row[0])
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

        def work(conn: psycopg.Connection) -> tuple[bool, float]:
            # a count lost in a crash costs nothing: do not wait for the disk
            conn.execute("SET LOCAL synchronous_commit = off")
            row = conn.execute(
                "INSERT INTO rate_buckets AS b (limiter, key_id, tokens, updated_at, allowed) "
                f"VALUES (%(limiter)s, %(key)s, %(burst)s - 1, {_NOW}, true) "
                f"ON CONFLICT (limiter, key_id) DO UPDATE SET "
                f"tokens = CASE WHEN {refill} >= 1 THEN {refill} - 1 ELSE {refill} END, "
                f"allowed = {refill} >= 1, updated_at = {_NOW} "
                "RETURNING allowed, tokens", params).fetchone()  # type: ignore[arg-type]
            if random.random() < PRUNE_CHANCE:  # guessed ids must not grow it without bound
                conn.execute(f"DELETE FROM rate_buckets WHERE updated_at < {_NOW} - 600")
            assert row is not None  # an upsert returns its row
            return bool(row[0]), float(row[1])
        allowed, tokens = self.db.run(work, doing="counting a request")
        return 0.0 if allowed else (1 - tokens) / self.rate
