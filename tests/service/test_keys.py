"""API keys: created once, stored as hashes, checked in constant time, revocable, scoped."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import StoreSettings
from ragtune.errors import InputError
from ragtune.service import KeyStore, parse_scopes
from ragtune.service.shared import PostgresKeyStore

runner = CliRunner()


def shared_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """Store settings on the session's PostgreSQL, with this test's own schemas."""
    server = request.getfixturevalue("postgres")
    prefix = "k" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    return StoreSettings(backend="postgres", dsn=server.dsn, schema_prefix=prefix)


@pytest.fixture(params=["sqlite", "postgres"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    """The key store of each backend: one file, or a database replicas share."""
    if request.param == "sqlite":
        store = KeyStore(tmp_path / "service.db")
    else:
        store = PostgresKeyStore.open(shared_settings(request, tmp_path))
    yield store
    store.close()


def stored_rows(keys: KeyStore, tmp_path: Path) -> list[tuple]:
    """Every column of every key row, read past the key store."""
    if isinstance(keys, PostgresKeyStore):
        with psycopg.connect(keys.db.dsn) as conn:
            return conn.execute(f'SELECT * FROM "{keys.db.schema}".keys').fetchall()
    return sqlite3.connect(tmp_path / "service.db").execute("SELECT * FROM keys").fetchall()


def test_a_key_verifies_and_only_its_hash_is_stored(keys: KeyStore, tmp_path: Path) -> None:
    secret, record = keys.create(["read"], groups=["support", " billing ", ""], name="widget")
    assert secret.startswith(f"rt_{record.id}_") and len(secret) > 40
    assert record.groups == ("billing", "support") and record.scopes == ("read",)
    found = keys.verify(secret)
    assert found is not None and found.id == record.id and found.last_used_at is not None
    if not isinstance(keys, PostgresKeyStore):
        raw = (tmp_path / "service.db").read_bytes()
        wal = tmp_path / "service.db-wal"
        raw += wal.read_bytes() if wal.exists() else b""
        assert secret.split("_", 2)[2].encode() not in raw  # never the secret, in no file
    rows = stored_rows(keys, tmp_path)
    assert not any(secret.split("_", 2)[2] in str(value) for row in rows for value in row)
    assert [len(v) for v in rows[0] if isinstance(v, str) and len(v) == 64] == [64]


def test_replicas_share_keys_and_each_keys_budget(request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    settings = shared_settings(request, tmp_path)
    one, two = PostgresKeyStore.open(settings), PostgresKeyStore.open(settings)
    try:
        secret, record = one.create(["read"])
        other, _ = one.create(["read"])
        assert two.verify(secret) is not None  # created on one, known to the other
        two.revoke(record.id)
        assert one.verify(secret) is None and one.verify(other) is not None
        first, second = one.rate_limiter(1, 3), two.rate_limiter(1, 3)
        assert [lim.wait("k1") for lim in (first, second, first)] == [0.0, 0.0, 0.0]
        assert second.wait("k1") > 50 and first.wait("k1") > 50  # spent across both
        assert first.wait("k2") == 0.0  # another key's budget is its own
        assert first.wait("k3", count=False) == 0.0 and second.wait("k3", count=False) == 0.0
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("mangle", [
    lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),   # wrong secret
    lambda s: "rt_00000000_" + s.split("_", 2)[2],       # unknown id
    lambda s: s.replace("rt_", "xx_", 1),                # not a ragtune key
    lambda s: "",
    lambda s: "rt_only-two",
])
def test_anything_but_the_exact_key_is_refused(keys: KeyStore, mangle) -> None:
    secret, _ = keys.create(["read"])
    assert keys.verify(mangle(secret)) is None


def test_revoked_keys_are_refused_and_listed_as_revoked(keys: KeyStore) -> None:
    secret, record = keys.create(["ingest"])
    other, _ = keys.create(["read"])
    assert keys.any_active()
    revoked = keys.revoke(record.id)
    assert not revoked.active and keys.verify(secret) is None
    assert keys.verify(other) is not None
    assert keys.revoke(record.id).revoked_at == revoked.revoked_at  # twice: no change
    assert [r.active for r in keys.list()] == [False, True]
    with pytest.raises(InputError, match="no key with id 'nope'"):
        keys.revoke("nope")


def test_scopes_and_groups(keys: KeyStore) -> None:
    _, admin = keys.create(["admin"])
    _, reader = keys.create(parse_scopes(["read,ingest"]), groups=["a"])
    assert admin.allows("ingest") and admin.allows("read") and admin.sees_everything
    assert reader.allows("read") and reader.allows("ingest") and not reader.allows("admin")
    assert not reader.sees_everything
    _, scoped_admin = keys.create(["admin"], groups=["a"])
    assert not scoped_admin.sees_everything
    with pytest.raises(InputError, match="scopes must be among read, ingest, admin, got owner"):
        keys.create(["owner"])
    with pytest.raises(InputError, match="got none"):
        keys.create([])


def test_the_cli_prints_the_key_once_and_never_lists_it(ragtune_home: Path) -> None:
    created = runner.invoke(app, ["keys", "create", "--scope", "read", "--groups", "a,b",
                                  "--name", "bot"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("rt_") and "not shown again" in created.stderr
    as_json = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert [k["groups"] for k in as_json] == [["a", "b"]]
    listed = runner.invoke(app, ["keys", "list"]).stdout + json.dumps(as_json)
    assert secret.split("_", 2)[2] not in listed
    key_id = as_json[0]["id"]
    assert KeyStore(ragtune_home / "service.db").verify(secret) is not None
    revoked = runner.invoke(app, ["keys", "revoke", key_id, "--json"])
    assert json.loads(revoked.stdout)["active"] is False
    assert KeyStore(ragtune_home / "service.db").verify(secret) is None
    bad = runner.invoke(app, ["keys", "create", "--scope", "root"])
    assert bad.exit_code == 1 and "scopes must be among" in bad.stderr
