"""The SQLite backend: the conformance suite, plus what is specific to one file on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragtune.config import ChunkingSettings
from ragtune.documents import chunk_document
from ragtune.errors import StoreError
from ragtune.store import SQLiteStore, Store, open_store
from ragtune.store import sqlite as sqlite_module
from ragtune.store.sqlite import MIGRATIONS
from ragtune.testing.store import StoreTests, make_doc, make_trace, unit_vectors, write


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "kb" / "store.sqlite")
    yield s
    s.close()


class TestSQLiteConformance(StoreTests):
    def make_store(self, folder: Path) -> Store:
        return open_store("sqlite", folder)


def vectors_for(chunks: list) -> np.ndarray:
    return unit_vectors(len(chunks))


def test_wal_mode_and_migrations_recorded(store: SQLiteStore) -> None:
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = [r[0] for r in db.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]


def test_reopen_applies_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SQLiteStore(path).close()
    store = SQLiteStore(path)
    assert store.check() == []
    store.close()


def test_failed_write_leaves_nothing_behind(store: SQLiteStore, counter) -> None:
    doc = make_doc("a", "Some text that makes two chunks. " * 4)
    chunks = chunk_document(doc, 0, counter, ChunkingSettings(max_tokens=16, overlap_tokens=0))
    bad_vectors = vectors_for(chunks)[:-1]  # one short: the write must refuse
    with pytest.raises(StoreError):
        store.write_document(doc, chunks, bad_vectors)
    # a failure inside the transaction (duplicate chunk id) rolls everything back
    with pytest.raises(StoreError, match="UNIQUE constraint failed.*nothing of this write"):
        store.write_document(doc, [*chunks, chunks[0]], np.vstack([vectors_for(chunks)] * 2)[
            : len(chunks) + 1])
    assert store.get_document("a") is None
    assert store.stats().chunks == 0 and store.stats().vectors == 0
    assert store.check() == []


def test_check_reports_tampering(store: SQLiteStore, counter) -> None:
    doc = make_doc("a", "Alpha beta gamma.")
    chunks = chunk_document(doc, 0, counter, ChunkingSettings())
    store.write_document(doc, chunks, vectors_for(chunks))
    db = sqlite3.connect(store.path)
    db.execute("UPDATE documents SET chunk_count = 5")
    db.commit()
    assert any("5 recorded" in p for p in store.check())


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk.sqlite: corrupt: .*cannot open the knowledge "
                       r"store.*kb check --kb .* --repair"):
        SQLiteStore(path)


def test_readers_do_not_wait_for_a_write_in_progress(store: SQLiteStore, counter) -> None:
    """A write transaction held open in one thread: another thread still reads, and sees the
    last committed state (not the write in progress); the writer reads its own writes."""
    import threading

    doc = make_doc("a", "Committed text about kettles.")
    chunks = chunk_document(doc, 0, counter, ChunkingSettings())
    store.write_document(doc, chunks, vectors_for(chunks))
    seen: dict[str, object] = {}
    writing, read_done = threading.Event(), threading.Event()

    def writer() -> None:
        with store._transaction() as db:
            db.execute("UPDATE documents SET title = 'uncommitted' WHERE id = 'a'")
            seen["writer"] = store.get_document("a").title  # its own write
            writing.set()
            read_done.wait(30)  # hold the transaction until the reader has read

    def reader() -> None:
        writing.wait(30)
        seen["reader"] = store.get_document("a").title
        seen["snapshot"] = store.index_snapshot().doc_ids
        read_done.set()

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert read_done.is_set(), "the reader waited for the writer's transaction"
    assert seen == {"writer": "uncommitted", "reader": doc.title, "snapshot": ["a"]}
    assert store.get_document("a").title == "uncommitted"  # committed now


def test_read_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """A server's worker threads come and go; their read connections must not pile up."""
    import threading

    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        for _ in range(50):
            thread = threading.Thread(target=store.generation)
            thread.start()
            thread.join()
        store.generation()  # this thread's reader opens, closing those of the ended threads
        assert len(store._readers) <= 2
    finally:
        store.close()


def test_a_store_of_the_old_schema_migrates_and_loses_its_full_text_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store created before `m006_drop_fts` (FTS5 table, triggers, rows indexed) opens:
    the FTS table and its triggers are dropped, nothing else changes, and writes work."""
    path = tmp_path / "old.sqlite"
    old = [(name, sql) for name, sql in MIGRATIONS if name < "m006"]
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", old)
    with SQLiteStore(path) as before:
        written = write(before, make_doc("a", "Text about kettles and teapots.", groups=("g",)))
        before.add_trace(make_trace("t", 1.0))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 1
    monkeypatch.undo()

    with SQLiteStore(path) as store:
        db = sqlite3.connect(path)
        objects = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert not {o for o in objects if o.startswith("chunks_fts")}
        assert not objects & {"chunks_ai", "chunks_ad", "chunks_au"}
        assert [r[0] for r in db.execute("SELECT name FROM migrations ORDER BY name")] == [
            name for name, _ in MIGRATIONS]
        db.close()
        assert store.check() == []
        assert [c.id for c in store.chunks_of("a")] == [c.id for c in written.chunks]
        assert store.get_trace("t") is not None
        write(store, make_doc("a", "Replaced text."))  # the chunks table's triggers are gone
        assert store.delete_document("a") and store.check() == []

