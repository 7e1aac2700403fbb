"""One PostgreSQL knowledge base's connections: a pool, its schema, timeouts and retries.

Every unit of work runs in one transaction on a pooled connection (`Database.run`). A lost
connection (the server restarted, a network blip, a failover) is retried `retries` times with a
growing wait; after the last try, or when the connection was lost while a write was committing
(its outcome unknown), one `StoreUnavailable` names the server and what to do. A statement
running past the timeout is cancelled by the server and raised as one `StoreError`.

    >>> db = Database(dsn, "ragtune_docs", pool_size=4, statement_timeout_s=30, retries=3)
    >>> db.run(lambda conn: conn.execute("SELECT count(*) FROM documents").fetchone()[0])
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ragtune.errors import StoreError, StoreUnavailable

T = TypeVar("T")
RETRY_WAIT_S = 0.5
"""The first wait after a lost connection; each later one doubles."""
CONNECT_TIMEOUT_S = 5
"""How long one connection attempt (and a wait for a pooled connection) may take."""


def redact(dsn: str) -> str:
    """A connection URI or keyword string without its password, for messages."""
    dsn = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


class Database:
    """A connection pool bound to one schema (see the module docstring)."""

    def __init__(self, dsn: str, schema: str, *, pool_size: int = 4,
                 statement_timeout_s: float = 30.0, retries: int = 3,
                 setup: Callable[[psycopg.Connection], None] | None = None) -> None:
        self.dsn, self.schema, self.retries = dsn, schema, retries
        self.where = redact(dsn)
        self._timeout_ms = max(1, int(statement_timeout_s * 1000))
        self._setup = setup
        self._pool: ConnectionPool | None = None
        self._pool_size = pool_size
        self._lock = threading.Lock()

    def connect(self, configured: bool = True) -> psycopg.Connection:
        """One connection outside the pool (autocommit), set up like the pooled ones (or
        bare: to create what the setup needs)."""
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{self.where}: cannot connect: {_first_line(exc)}; check "
                                   "that the server is up and store.dsn (or RAGTUNE_PG_DSN)",
                                   "unavailable") from exc
        if configured:
            self._configure(conn)
        return conn

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(self._timeout_ms))
        conn.execute(sql.SQL("SET search_path TO {}, public").format(
            sql.Identifier(self.schema)))
        if self._setup is not None:
            self._setup(conn)

    @property
    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn, min_size=1, max_size=self._pool_size, open=False,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                    configure=self._configure, timeout=CONNECT_TIMEOUT_S,
                    name=f"ragtune-{self.schema}")
                self._pool.open(wait=False)
            return self._pool

    def run(self, work: Callable[[psycopg.Connection], T], *, doing: str = "") -> T:
        """`work(conn)` in one transaction: all of it commits, or none of it. Retried on a lost
        connection unless the loss came while committing (see the module docstring)."""
        return self._attempt(work, doing, atomic=True)

    def read(self, work: Callable[[psycopg.Connection], T]) -> T:
        """`work(conn)`, one statement that only reads, outside a transaction (one round trip
        instead of three). Retried on a lost connection like `run`."""
        return self._attempt(work, "", atomic=False)

    def _attempt(self, work: Callable[[psycopg.Connection], T], doing: str, atomic: bool
                 ) -> T:
        waited, last = 0.0, None
        for attempt in range(self.retries + 1):
            committing = False
            try:
                with self.pool.connection() as conn:
                    if not atomic:
                        return work(conn)
                    with conn.transaction():
                        result = work(conn)
                        committing = True
                    return result
            except psycopg.errors.QueryCanceled as exc:
                raise StoreError(f"{self.where}: a statement ran past store.statement_timeout_s "
                                 f"({self._timeout_ms / 1000:g} s){_doing(doing)}") from exc
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if committing:
                    raise StoreUnavailable(
                        f"{self.where}: the connection was lost while committing"
                        f"{_doing(doing)}; whether it was saved is unknown: run the command "
                        "again (ingestion skips what is already stored)", "unavailable") from exc
                last = exc
                if attempt < self.retries:
                    wait = RETRY_WAIT_S * 2 ** attempt
                    time.sleep(wait)
                    waited += wait
            except psycopg.Error as exc:
                raise StoreError(f"{self.where}: {_first_line(exc)}{_doing(doing)}") from exc
        raise StoreUnavailable(
            f"{self.where}: the server cannot be reached ({_first_line(last)}); tried "
            f"{self.retries + 1} times over {waited:.1f} s{_doing(doing)}; nothing of this "
            "step was committed: check the server, then run the command again", "unavailable")

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__


def _doing(doing: str) -> str:
    return f" ({doing})" if doing else ""


def execute_values(conn: psycopg.Connection, statement: str, rows: list[tuple[Any, ...]]
                   ) -> None:
    """`statement` once per row, pipelined (one round trip for the lot)."""
    if rows:
        with conn.cursor() as cur:
            cur.executemany(statement, rows)
