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
