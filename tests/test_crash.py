"""A process killed mid-ingest leaves every document fully in or fully out."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragtune import KnowledgeBase, Settings

pytestmark = pytest.mark.slow

N_DOCS = 3000


def test_sigkill_mid_batch_then_resume(tmp_path: Path, ragtune_home: Path, embedder) -> None:
    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as fh:
        for i in range(N_DOCS):
            text = f"Record {i} describes sample {i}. " + "It has several sentences. " * (i % 7)
            fh.write(json.dumps({"_id": f"r{i}", "title": f"Record {i}", "text": text}) + "\n")
    env = {**os.environ, "RAGTUNE_HOME": str(ragtune_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragtune", "ingest", str(corpus), "--kb", "crash", "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    db_path = ragtune_home / "kb" / "crash" / "store.sqlite"
    deadline = time.monotonic() + 300
    present = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db_path.exists():
                try:
                    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
                        present = db.execute("SELECT count(*) FROM documents").fetchone()[0]
                except sqlite3.OperationalError:
                    present = 0  # schema not created yet
                if present > 0:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    settings = Settings.load(home=ragtune_home)
    with KnowledgeBase("crash", settings, embedder=embedder) as kb:
        assert kb.store.check() == []
        docs = kb.documents()
        assert 0 < len(docs) < N_DOCS, "the kill must land mid-batch"
        for doc in docs:  # every document present is complete
            chunks = kb.store.chunks_of(doc.id)
            assert len(chunks) == doc.chunks > 0
        stats = kb.store.stats()
        assert stats.vectors == stats.chunks
        survived = len(docs)

        report = kb.ingest([corpus])
        assert report.failed == []
        assert report.unchanged == survived
        assert report.added == N_DOCS - survived
        assert kb.store.stats().documents == N_DOCS
        assert kb.store.check() == []


def test_sigkill_during_a_request_burst_keeps_every_acknowledged_write(
        tmp_path: Path, ragtune_home: Path, embedder) -> None:
    """`ragtune serve` killed while 8 clients ingest and search: every document the server
    acknowledged is there, whole; nothing half-written; the server starts again on it."""
    import socket
    import threading

    import httpx

    from ragtune.service import KeyStore

    settings = Settings.load(home=ragtune_home)
    key, _ = KeyStore.open(settings).create(("admin",), (), "burst")
    with KnowledgeBase("burst", settings, embedder=embedder) as kb:  # the service adds to it
        kb.ingest_records([{"id": "seed", "text": "The seed note about valve 0."}])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAGTUNE_HOME": str(ragtune_home)}
    log = (tmp_path / "serve.log").open("wb")

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragtune", "serve", "--host", "127.0.0.1", "--port",
             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not become ready")

    acknowledged: dict[str, str] = {}  # id -> text the server said it stored
    refused: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {key}"}

    def client(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=60) as http:
            i = 0
            while not stop.is_set():
                i += 1
                docs = [{"id": f"c{n}-{i}-{j}", "title": f"Client {n} note {i}",
                         "text": f"Client {n} wrote note {i}.{j} about valve {i * j}. " * 30}
                        for j in range(3)]
                try:
                    if i % 3 == 0:
                        http.post("/v1/search", json={"kb": "burst", "query": f"valve {i}",
                                                      "k": 5})
                        continue
                    r = http.post("/v1/documents", json={"kb": "burst", "documents": docs})
                except httpx.TransportError:
                    return  # the server is gone
                with lock:
                    if r.status_code == 200:
                        acknowledged.update({d["id"]: d["text"] for d in docs})
                    else:
                        refused.append(r.text)

    proc = start()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 300
        while len(acknowledged) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acknowledged) >= 30, refused[:3] or (tmp_path / "serve.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst: requests are in flight
        proc.wait(timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    assert not refused, refused[:3]
    with KnowledgeBase("burst", settings, embedder=embedder) as kb:
        assert kb.store.check() == []
        stored = {d.id: d for d in kb.documents()}
        for doc_id, text in acknowledged.items():  # every acknowledged write survived
            assert kb.store.document_text(doc_id) == text
        for doc in stored.values():  # and nothing is half there
            assert len(kb.store.chunks_of(doc.id)) == doc.chunks > 0
        stats = kb.store.stats()
        assert stats.vectors == stats.chunks
    proc = start()  # the server comes back on the same files
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=60) as http:
            listed = http.get("/v1/documents", params={"kb": "burst"})
            assert listed.status_code == 200
            hits = http.post("/v1/search", json={"kb": "burst", "query": "valve", "k": 3})
            assert hits.status_code == 200 and hits.json()["hits"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
