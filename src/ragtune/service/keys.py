"""API keys of the HTTP service: scopes, access groups, hashed at rest.

    >>> keys = KeyStore.open(settings)                 # <home>/service.db
    >>> secret, record = keys.create(["read"], groups=["support"], name="help-widget")
    >>> print(secret)                                  # shown once: rt_<id>_<secret>
    >>> keys.verify(secret).groups
    ('support',)

A key is `rt_<id>_<secret>`: the id (8 hex characters) finds the row, the secret (32 random
bytes, URL-safe base64) is checked against its SHA-256 in constant time. Only the hash is stored:
the secrets are random, so a slow password hash would add nothing but latency per request.
Scopes: `read` (search, ask, documents, reports), `ingest` (add and delete documents), `admin`
(everything, keys and traces included). Groups are the access groups whose documents the key may
see; documents without groups are visible to every key, and an `admin` key without groups sees
all documents.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ragtune.access import Access, check_group_names
from ragtune.errors import InputError, StoreError
from ragtune.store.sqlite import apply_migrations

SCOPES = ("read", "ingest", "admin")
PREFIX = "rt"
MIGRATIONS: list[tuple[str, str]] = [
    ("m001_keys", """
        CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            secret_sha256 TEXT NOT NULL,
            scopes TEXT NOT NULL,
            groups TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL,
            last_used_at REAL
        )
    """),
]


@dataclass(frozen=True)
class KeyRecord:
    """What the service knows about a key (never its secret)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """`admin` allows everything; `read` and `ingest` allow themselves."""
        return "admin" in self.scopes or scope in self.scopes

    @property
    def sees_everything(self) -> bool:
        """An admin key without groups is not limited to some groups' documents."""
        return "admin" in self.scopes and not self.groups

    @property
    def access(self) -> Access:
        """What this key may read and write (`ragtune.access`): an admin key without groups
        is the operator; any other key holds its groups."""
        return Access.operator() if self.sees_everything else Access.of(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scopes": list(self.scopes),
                "groups": list(self.groups), "created_at": _iso(self.created_at),
                "revoked_at": _iso(self.revoked_at), "last_used_at": _iso(self.last_used_at),
                "active": self.active}


class KeyStore:
    """The keys table in one SQLite file (WAL: the CLI can revoke while the server runs).

    The logic (secrets, scopes, verification) is here; the rows go through a few primitives
    (`_insert`, `_rows`, ...), which `PostgresKeyStore` implements on a database that several
    replicas share."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None,
                                       check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            apply_migrations(self._db, MIGRATIONS, self._lock)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the key store ({exc})") from exc

    @classmethod
    def open(cls, settings: Any) -> KeyStore:
        """The key store of a data home: `<home>/service.db`, or with `store.backend =
        "postgres"` the `<prefix>_service` schema every replica shares."""
        if settings.store.backend == "postgres":
            from ragtune.service.shared import PostgresKeyStore

            return PostgresKeyStore.open(settings.store)
        return cls(Path(settings.home) / "service.db")

    def close(self) -> None:
        self._db.close()

    def rate_limiter(self, per_minute: int, burst: int) -> RateLimiter:
        """Request budgets per key for this store's users: in this process (one SQLite home
        is served by one process)."""
        return MemoryRateLimiter(per_minute, burst)

    # --- rows (what PostgresKeyStore implements again) --------------------------------------

    def _insert(self, record: KeyRecord, secret_sha256: str) -> bool:
        """Add a key's row; False when its id is taken."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO keys (id, name, secret_sha256, scopes, groups, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, record.name, secret_sha256, ",".join(record.scopes),
                 ",".join(record.groups), record.created_at))
        return cur.rowcount == 1

    def _rows(self, key_id: str | None = None) -> list[tuple[Any, ...]]:
        """Rows (`_COLUMNS`): every key's by creation, or the one with `key_id`."""
        if key_id is None:
            return self._db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at"
                                    ).fetchall()
        return self._db.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,)
                                ).fetchall()

    def _set(self, key_id: str, column: str, when: float) -> None:
        """Set `revoked_at` (once: a second revocation keeps the first time) or
        `last_used_at`."""
        value = "COALESCE(revoked_at, ?)" if column == "revoked_at" else "?"
        with self._lock:
            self._db.execute(f"UPDATE keys SET {column} = {value} WHERE id = ?", (when, key_id))

    def any_active(self) -> bool:
        return self._db.execute("SELECT 1 FROM keys WHERE revoked_at IS NULL LIMIT 1"
                                ).fetchone() is not None

    # --- management -------------------------------------------------------------------------

    def create(self, scopes: Iterable[str], groups: Iterable[str] = (), name: str = ""
               ) -> tuple[str, KeyRecord]:
        """A new key: returns its secret (shown once, stored only as a hash) and its record."""
        wanted = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise InputError(f"scopes must be among {', '.join(SCOPES)}, got "
                             f"{', '.join(unknown) if unknown else 'none'}")
        clean_groups = check_group_names(groups)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        while True:
            record = KeyRecord(secrets.token_hex(4), name, wanted, clean_groups, time.time())
            if self._insert(record, _sha256(secret)):
                return f"{PREFIX}_{record.id}_{secret}", record

    def list(self) -> list[KeyRecord]:
        return [_record(row) for row in self._rows()]

    def get(self, key_id: str) -> KeyRecord | None:
        rows = self._rows(key_id)
        return _record(rows[0]) if rows else None

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key by id (its first 8 characters after `rt_`); revoking twice is fine."""
        self._set(key_id, "revoked_at", time.time())
        record = self.get(key_id)
        if record is None:
            raise InputError(f"no key with id {key_id!r} (see ragtune keys list)")
        return record

    # --- checking a request -----------------------------------------------------------------

    def verify(self, token: str, touch: bool = True) -> KeyRecord | None:
        """The active key this token is, or None (unknown, malformed, wrong secret, revoked).
        `touch` records the use (at most once a minute per key, to spare the disk)."""
        parts = token.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        key_id, secret = parts[1], parts[2]
        rows = self._rows(key_id)
        if not rows:
            _sha256(secret)  # the same work as a known id: no timing hint about ids
            return None
        row = rows[0]
        if not hmac.compare_digest(row[7], _sha256(secret)):
            return None
        record = _record(row)
        if not record.active:
            return None
        now = time.time()
        if touch and (record.last_used_at is None or now - record.last_used_at > 60):
            self._set(key_id, "last_used_at", now)
            record = replace(record, last_used_at=now)
        return record


_COLUMNS = "id, name, scopes, groups, created_at, revoked_at, last_used_at, secret_sha256"


class RateLimiter(Protocol):
    """Request budgets per key id (`MemoryRateLimiter`, or one shared by replicas)."""

    def wait(self, key_id: str, count: bool = True) -> float:
        """0 when the request may go now (and counts it, unless `count` is false: a look),
        else the seconds until it may."""
        ...


class MemoryRateLimiter:
    """A token bucket per key in this process: `burst` requests at once, `per_minute`
    sustained."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate, self.burst = per_minute / 60.0, float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)
        self.lock = threading.Lock()

    def wait(self, key_id: str, count: bool = True) -> float:
        """0 when the request may go now (and counts it, unless `count` is false: a look),
        else the seconds until it may."""
        with self.lock:
            now = time.monotonic()
            tokens, then = self.buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1:
                self.buckets[key_id] = (tokens, now)
                return (1 - tokens) / self.rate
            self.buckets[key_id] = (tokens - 1 if count else tokens, now)
            if len(self.buckets) > 100_000:  # guessed ids must not grow this without bound
                self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 600}
            return 0.0


def key_id_of(token: str) -> str | None:
    """The key id a token claims (`rt_<id>_<secret>`), or None when it is not that shape:
    failed logins are counted per id."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isalnum() or len(parts[1]) > 16:
        return None
    return f"key {parts[1]}"


def parse_scopes(values: Iterable[str]) -> list[str]:
    """`--scope read --scope ingest` or `--scope read,ingest`."""
    return [s for v in values for s in v.split(",") if s.strip()]


def _record(row: Any) -> KeyRecord:
    """A row (`_COLUMNS`; the secret's hash, last, is left out) as a `KeyRecord`."""
    return KeyRecord(row[0], row[1], tuple(s for s in row[2].split(",") if s),
                     tuple(g for g in row[3].split(",") if g), row[4], row[5], row[6])


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
