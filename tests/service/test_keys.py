"""API keys: created once, stored as hashes, checked in constant time, revocable, scoped."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.errors import InputError
from ragtune.service import KeyStore, parse_scopes

runner = CliRunner()


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "service.db")


def test_a_key_verifies_and_only_its_hash_is_stored(keys: KeyStore, tmp_path: Path) -> None:
    secret, record = keys.create(["read"], groups=["support", " billing ", ""], name="widget")
    assert secret.startswith(f"rt_{record.id}_") and len(secret) > 40
    assert record.groups == ("billing", "support") and record.scopes == ("read",)
    found = keys.verify(secret)
    assert found is not None and found.id == record.id and found.last_used_at is not None
    raw = (tmp_path / "service.db").read_bytes()
    wal = tmp_path / "service.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert secret.split("_", 2)[2].encode() not in raw  # never the secret, in no file
    stored = sqlite3.connect(tmp_path / "service.db").execute(
        "SELECT secret_sha256 FROM keys").fetchone()[0]
    assert len(stored) == 64


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
