"""Two `ragtune serve` processes on one PostgreSQL database (pgserver), the second ranking dense
in the database (`store.dense = "database"`): what is written through one is searchable and
answerable through the other within a second, keys created or
revoked anywhere hold everywhere, and a key's request budget is spent across both."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import SIX_DOCS, TEST_CONFIG
from ragtune import KnowledgeBase, Settings
from ragtune.service import KeyStore
from ragtune.testing.postgres import TemporaryPostgres

pytestmark = pytest.mark.slow


def replica_home(root: Path, server: TemporaryPostgres, prefix: str, dense: str = "process"
                 ) -> Path:
    """A data home of its own whose knowledge bases and keys live in the shared database;
    `dense`: where its dense ranking runs (`store.dense`)."""
    root.mkdir(parents=True)
    (root / "config.toml").write_text(
        TEST_CONFIG + f'\n[store]\nbackend = "postgres"\ndsn = "{server.dsn}"\n'
        f'schema_prefix = "{prefix}"\ndense = "{dense}"\n\n'
        '[service]\nrequests_per_minute = 1\nburst = 40\n',
        encoding="utf-8")
    return root


@contextmanager
def serving(home: Path, model_cache: Path) -> Iterator[str]:
    """`ragtune serve` in its own process on a free port, until ready (models loaded)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAGTUNE_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    log = home / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port",
                                    str(port), "--home", str(home)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready in 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_two_replicas_on_one_database(postgres: TemporaryPostgres, tmp_path: Path,
                                      model_cache: Path, embedder) -> None:
    prefix = "r" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    one = replica_home(tmp_path / "one", postgres, prefix)
    two = replica_home(tmp_path / "two", postgres, prefix, dense="database")  # no vectors
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "kettle.md").write_text(SIX_DOCS["kettle.md"], encoding="utf-8")
    with KnowledgeBase.open("default", Settings.load(home=one)) as kb:
        kb.ingest([corpus])
    keys = KeyStore.open(Settings.load(home=one))  # the CLI's view: the shared database
    admin, _ = keys.create(["admin"], name="ops")
    reader, reader_record = keys.create(["read"], name="widget")
    budget, _ = keys.create(["read"], name="budget")
    with ExitStack() as stack:
        a = stack.enter_context(serving(one, model_cache))
        b = stack.enter_context(serving(two, model_cache))
        auth = {"Authorization": f"Bearer {admin}"}
        written = httpx.post(f"{a}/v1/documents", headers=auth, timeout=60, json={
            "documents": [{"id": "walrus", "text": "The walrus enclosure opens at 9:40 every "
                           "morning; feeding is at 11:15."}]})
        assert written.status_code == 200, written.text
        seen_at, started = None, time.monotonic()
        while time.monotonic() - started < 5:
            hits = httpx.post(f"{b}/v1/search", headers=auth, timeout=10, json={
                "query": "walrus enclosure opening time", "k": 3}).json()["hits"]
            if hits and "walrus" in hits[0]["text"]:
                seen_at = time.monotonic() - started
                break
            time.sleep(0.05)
        assert seen_at is not None and seen_at < 1.0, seen_at
        models = httpx.get(f"{b}/v1/models", headers=auth).json()["data"]
        assert "kb:default" in [m["id"] for m in models]  # no folder for it on this replica
        asked = httpx.post(f"{b}/v1/ask", headers=auth, timeout=120, json={
            "question": "When does the walrus enclosure open?"}).json()
        assert any("walrus" in p["doc_id"] for p in asked["passages"]), asked

        # a key revoked through one is refused by the other (and by itself)
        who = {"Authorization": f"Bearer {reader}"}
        assert httpx.get(f"{b}/v1/whoami", headers=who).status_code == 200
        keys.revoke(reader_record.id)
        assert httpx.get(f"{b}/v1/whoami", headers=who).status_code == 401
        assert httpx.get(f"{a}/v1/whoami", headers=who).status_code == 401

        # one budget per key across both: 40 at once (burst), then 429 from either
        spend = {"Authorization": f"Bearer {budget}"}
        codes = [httpx.get(f"{(a, b)[i % 2]}/v1/whoami", headers=spend).status_code
                 for i in range(40)]
        assert codes == [200] * 40
        assert httpx.get(f"{a}/v1/whoami", headers=spend).status_code == 429
        assert httpx.get(f"{b}/v1/whoami", headers=spend).status_code == 429
    keys.close()
