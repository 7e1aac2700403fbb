"""The embedded default store: one SQLite file per knowledge base.

WAL mode; float32 vectors as BLOBs and BM25 term counts (JSON) in the same file, so one
transaction covers a document's row, chunks, vectors and term counts. Schema changes are named,
append-only migrations. (The FTS5 index the first schema kept by triggers had no reader: ranked
search runs over the stored term counts. `m006_drop_fts` drops it.)

    >>> store = SQLiteStore(Path("kb/store.sqlite"))
    >>> store.write_document(doc, chunks, vectors)
    1
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.access import Access
from ragtune.documents.records import Chunk, Document
from ragtune.errors import StoreError, StoreUnavailable
from ragtune.store.base import (
    CHUNK_COLUMNS,
    DocumentVersion,
    IndexSnapshot,
    StoredDocument,
    StoreStats,
    Trace,
    chunk_from_row,
    document_from_row,
    snapshot_vectors,
    under_source,
)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_initial",
        """
        CREATE TABLE kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            title TEXT NOT NULL,
            format TEXT NOT NULL,
            text TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            version INTEGER NOT NULL,
            chunk_count INTEGER NOT NULL,
            groups TEXT NOT NULL,
            metadata TEXT NOT NULL,
            pages TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX documents_source ON documents(source);
        CREATE TABLE document_groups (
            doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            grp TEXT NOT NULL,
            PRIMARY KEY (doc_id, grp)
        );
        CREATE INDEX document_groups_grp ON document_groups(grp);
        CREATE TABLE document_versions (
            doc_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            event TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            chars INTEGER NOT NULL,
            chunk_count INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (doc_id, version, event)
        );
        CREATE TABLE chunks (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            heading TEXT NOT NULL,
            page INTEGER,
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            text_hash TEXT NOT NULL
        );
        CREATE INDEX chunks_doc ON chunks(doc_id);
        CREATE INDEX chunks_text_hash ON chunks(text_hash);
        CREATE TABLE vectors (
            chunk_rowid INTEGER PRIMARY KEY REFERENCES chunks(rowid) ON DELETE CASCADE,
            vector BLOB NOT NULL
        );
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            title, heading, text,
            content='chunks', content_rowid='rowid',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, title, heading, text)
            VALUES (new.rowid, new.title, new.heading, new.text);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, title, heading, text)
            VALUES ('delete', old.rowid, old.title, old.heading, old.text);
        END;
        CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, title, heading, text)
            VALUES ('delete', old.rowid, old.title, old.heading, old.text);
            INSERT INTO chunks_fts(rowid, title, heading, text)
            VALUES (new.rowid, new.title, new.heading, new.text);
        END;
        """,
    ),
    (
        "m002_chunk_terms",
        """
        ALTER TABLE chunks ADD COLUMN terms TEXT;
        """,
    ),
    (
        "m003_document_terms",
        """
        ALTER TABLE documents ADD COLUMN terms TEXT;
        """,
    ),
    (
        "m004_chunk_flags",
        """
        ALTER TABLE chunks ADD COLUMN flags TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        "m005_traces",
        """
        CREATE TABLE traces (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            route TEXT NOT NULL,
            key_id TEXT,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            refused INTEGER NOT NULL,
            refusal_reason TEXT,
            groundedness REAL,
            latency_ms REAL NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            doc_groups TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX traces_created ON traces(created_at);
        """,
    ),
    (
        "m006_drop_fts",
        """
        DROP TRIGGER IF EXISTS chunks_ai;
        DROP TRIGGER IF EXISTS chunks_ad;
        DROP TRIGGER IF EXISTS chunks_au;
        DROP TABLE IF EXISTS chunks_fts;
        """,
    ),
]

_TRACE_COLUMNS = (
    "id, created_at, route, key_id, question, answer, refused, refusal_reason, groundedness, "
    "latency_ms, prompt_tokens, output_tokens, doc_groups, detail"
)




class SQLiteStore:
    """A knowledge base in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # the one write connection
        self._local = threading.local()  # per thread: its read connection, writing or not
        # each thread's read connection, closed once its thread has ended (a server's worker
        # threads come and go: left open, their connections would pile up, files and caches)
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}
        self._readers_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_os_error(self.path.parent, exc) from exc
        self._uri = str(self.path)
        try:
            self._db = sqlite3.connect(
                self._uri, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            if not self._open_read_only():
                raise self._error(exc, "cannot open the knowledge store") from exc

    def _open_read_only(self) -> bool:
        """Open an existing store on a read-only file system or folder: reads work, a write
        fails with one line saying so. A WAL store needs its shared-memory file, which a
        read-only folder cannot hold unless it is there already; nobody can write the file
        then, so it is opened as immutable."""
        if not self.path.is_file() or os.access(self.path.parent, os.W_OK | os.X_OK) and \
                not _read_only_mount(self.path.parent):
            return False
        for mode in ("mode=ro", "immutable=1"):
            uri = f"{self.path.resolve().as_uri()}?{mode}"
            try:
                db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                     check_same_thread=False, timeout=30)
                db.execute("SELECT count(*) FROM documents").fetchone()
            except sqlite3.Error:
                continue
            self._db, self._uri = db, uri
            return True
        return False

    def _error(self, exc: sqlite3.Error, doing: str = "") -> StoreError:
        """One line naming the file and what to do (`store_error`)."""
        return store_error(self.path, exc, doing)

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The connection to read with: this thread's own, so readers never wait for a write
        in progress (WAL: they see the last committed state) — except inside this thread's
        own write transaction, which must read what it wrote. SQLite's errors leave as one
        `StoreError` line naming the file."""
        if getattr(self._local, "writing", False):
            with self._lock:
                yield self._db
            return
        db = getattr(self._local, "db", None)
        try:
            if db is None or self._closed:
                with self._readers_lock:  # not the write lock: a writer may hold that for long
                    if self._closed:
                        raise StoreError(f"{self.path}: the store is closed")
                    db = sqlite3.connect(self._uri, uri=self._uri.startswith("file:"),
                                         isolation_level=None, check_same_thread=False,
                                         timeout=30)
                    db.execute("PRAGMA query_only=ON")
                    for thread in [t for t in self._readers if not t.is_alive()]:
                        self._readers.pop(thread).close()
                    self._readers[threading.current_thread()] = db
                self._local.db = db
            yield db
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _migrate(self) -> None:
        apply_migrations(self._db, MIGRATIONS, self._lock)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (a failed COMMIT — the disk
        full, say — is rolled back too, so nothing half-written is ever committed)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._local.writing = True
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise
                finally:
                    self._local.writing = False
            except sqlite3.Error as exc:
                raise self._error(exc, "nothing of this write was committed") from exc

    def _bump_generation(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO kb_meta(key, value) VALUES ('generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def close(self) -> None:
        """Close the connections (checkpointing the WAL)."""
        with self._lock, self._readers_lock:
            self._closed = True
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- provenance -------------------------------------------------------------------------

    def get_meta(self) -> dict[str, str]:
        """Key/value provenance recorded with the knowledge base."""
        with self._read() as db:
            return dict(db.execute("SELECT key, value FROM kb_meta").fetchall())

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Record provenance values (embedder, chunker settings, versions)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO kb_meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, str(v)) for k, v in values.items()],
            )

    def generation(self) -> int:
        """A counter that grows with every write; caches key on it."""
        with self._read() as db:
            row = db.execute("SELECT value FROM kb_meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    # --- documents --------------------------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        """Every document id with its current content hash (what incremental sync compares)."""
        with self._read() as db:
            return dict(db.execute("SELECT id, content_hash FROM documents").fetchall())

    def get_document(self, doc_id: str) -> StoredDocument | None:
        """The current version of one document, or None."""
        with self._read() as db:
            row = db.execute(f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ?",
                                   (doc_id,)).fetchone()
        return _stored_document(row) if row else None

    def document_text(self, doc_id: str) -> str | None:
        """The full text of the current version (chunk offsets index into it)."""
        with self._read() as db:
            row = db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return row[0] if row else None

    def list_documents(self, sources: Sequence[str] | None = None) -> list[StoredDocument]:
        """All documents, or those whose source is one of `sources` or lies under one of them."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents ORDER BY source, id"
            ).fetchall()
        docs = [_stored_document(r) for r in rows]
        if sources is None:
            return docs
        roots = tuple(sources)
        return [d for d in docs if any(under_source(d.source, root) for root in roots)]

    def versions(self, doc_id: str) -> list[DocumentVersion]:
        """The history of a document, oldest first (kept after deletion)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT doc_id, version, event, content_hash, chars, chunk_count, created_at "
                "FROM document_versions WHERE doc_id = ? ORDER BY version, created_at",
                (doc_id,),
            ).fetchall()
        return [DocumentVersion(*r) for r in rows]

    def history(self) -> list[DocumentVersion]:
        """Every document's history, deleted ones' too."""
        with self._read() as db:
            rows = db.execute(
                "SELECT doc_id, version, event, content_hash, chars, chunk_count, created_at "
                "FROM document_versions ORDER BY doc_id, version, created_at").fetchall()
        return [DocumentVersion(*r) for r in rows]

    def export_document(self, doc_id: str) -> Document | None:
        """The current version as it was written, or None."""
        with self._read() as db:
            row = db.execute("SELECT id, text, source, format, title, metadata, pages, groups "
                             "FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        doc_id, text, source, format_, title = row[:5]
        return document_from_row(doc_id, text, source, format_, title, json.loads(row[5]),
                                 json.loads(row[6]), json.loads(row[7]))

    def write_document(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        vectors: np.ndarray | None,
        terms: Sequence[Mapping[str, int]] | None = None,
        document_terms: Mapping[str, int] | None = None,
        restore: tuple[int, float, float] | None = None,
    ) -> int:
        """Insert or replace a document with its chunks, vectors and terms in one transaction.

        Returns the new version number (the store numbers versions; `chunk.version` is
        ignored). `vectors[i]` and `terms[i]` (BM25 term frequencies) belong to `chunks[i]`;
        `document_terms` are the whole document's (for document-level BM25). `restore`
        (version, created_at, updated_at) writes a document back as it was, history untouched
        (a repair: `ragtune.store.repair`).
        """
        if vectors is not None and len(vectors) != len(chunks):
            raise StoreError(
                f"{document.id}: {len(chunks)} chunks but {len(vectors)} vectors"
            )
        if terms is not None and len(terms) != len(chunks):
            raise StoreError(f"{document.id}: {len(chunks)} chunks but {len(terms)} term lists")
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT version, created_at FROM documents WHERE id = ?", (document.id,)
            ).fetchone()
            last = db.execute(
                "SELECT max(version) FROM document_versions WHERE doc_id = ?", (document.id,)
            ).fetchone()[0]
            version = (last or 0) + 1
            created = row[1] if row else now
            if restore is not None:
                version, created, now = restore
            if row:
                self._delete_rows(db, document.id)
            db.execute(
                f"INSERT INTO documents({_DOC_COLUMNS}, text, pages, terms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    document.id, document.source, document.title, document.format,
                    version, document.content_hash, len(chunks),
                    json.dumps(list(document.groups)),
                    json.dumps(dict(document.metadata), ensure_ascii=False, default=str),
                    created, now, document.text,
                    json.dumps([[p.number, p.start, p.end] for p in document.pages]),
                    None if document_terms is None
                    else json.dumps(dict(document_terms), ensure_ascii=False),
                ),
            )
            db.executemany(
                "INSERT INTO document_groups(doc_id, grp) VALUES (?, ?)",
                [(document.id, g) for g in sorted(set(document.groups))],
            )
            for i, chunk in enumerate(chunks):
                cur = db.execute(
                    'INSERT INTO chunks(id, doc_id, version, idx, start, "end", tokens, heading, '
                    "page, title, text, text_hash, terms, flags) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        chunk.id, document.id, version, chunk.index, chunk.start, chunk.end,
                        chunk.tokens, chunk.heading, chunk.page, document.title, chunk.text,
                        chunk.text_hash,
                        None if terms is None else json.dumps(terms[i], ensure_ascii=False),
                        ",".join(chunk.flags),
                    ),
                )
                if vectors is not None:
                    db.execute(
                        "INSERT INTO vectors(chunk_rowid, vector) VALUES (?, ?)",
                        (cur.lastrowid, np.asarray(vectors[i], dtype="<f4").tobytes()),
                    )
            if restore is None:
                db.execute(
                    "INSERT OR REPLACE INTO document_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (document.id, version, "updated" if row else "added",
                     document.content_hash, len(document.text), len(chunks), now),
                )
            self._bump_generation(db)
        return version

    def delete_document(self, doc_id: str) -> bool:
        """Remove a document, its chunks and vectors; its history records the deletion."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT version, content_hash FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
            if row is None:
                return False
            self._delete_rows(db, doc_id)
            db.execute(
                "INSERT OR REPLACE INTO document_versions VALUES (?, ?, 'deleted', ?, 0, 0, ?)",
                (doc_id, row[0], row[1], time.time()),
            )
            self._bump_generation(db)
        return True

    @staticmethod
    def _delete_rows(db: sqlite3.Connection, doc_id: str) -> None:
        db.execute(
            "DELETE FROM vectors WHERE chunk_rowid IN (SELECT rowid FROM chunks WHERE doc_id = ?)",
            (doc_id,),
        )
        db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        db.execute("DELETE FROM document_groups WHERE doc_id = ?", (doc_id,))
        db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    # --- chunks and vectors -----------------------------------------------------------------

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """A document's chunks in order."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE doc_id = ? ORDER BY idx", (doc_id,)
            ).fetchall()
        return [chunk_from_row(r) for r in rows]

    def get_chunks(self, chunk_ids: Iterable[str]) -> list[Chunk]:
        """Chunks by id, in the order asked (missing ids are skipped)."""
        ids = list(chunk_ids)
        found: dict[str, Chunk] = {}
        with self._read() as db:
            for batch in _batches(ids, 500):
                marks = ",".join("?" * len(batch))
                for r in db.execute(
                    f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", batch
                ):
                    found[r[0]] = chunk_from_row(r)
        return [found[i] for i in ids if i in found]

    def vectors_by_text_hash(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks with these text hashes, so equal text is never re-embedded."""
        out: dict[str, np.ndarray] = {}
        hashes = list(set(text_hashes))
        with self._read() as db:
            for batch in _batches(hashes, 500):
                marks = ",".join("?" * len(batch))
                for text_hash, blob in db.execute(
                    "SELECT c.text_hash, v.vector FROM chunks c "
                    f"JOIN vectors v ON v.chunk_rowid = c.rowid WHERE c.text_hash IN ({marks})",
                    batch,
                ):
                    out[text_hash] = np.frombuffer(blob, dtype="<f4")
        return out

    def reflag_chunks(self, flagger: Callable[[str], tuple[str, ...]]) -> int:
        """Recompute every chunk's flags from its text (after the rules changed)."""
        with self._read() as db:
            rows = db.execute("SELECT rowid, text, flags FROM chunks").fetchall()
        changed = [(",".join(new), rowid) for rowid, text, old in rows
                   if ",".join(new := flagger(text)) != old]
        if changed:
            with self._transaction() as db:
                db.executemany("UPDATE chunks SET flags = ? WHERE rowid = ?", changed)
        return len(changed)

    def index_snapshot(self, vectors: bool = True) -> IndexSnapshot:
        """Every chunk with its document, vector and BM25 terms, read in one consistent pass
        (`vectors=False`: whether each chunk has a vector, not the vector)."""
        vector = "v.vector" if vectors else "CASE WHEN v.chunk_rowid IS NOT NULL THEN 1 END"
        with self._read() as db:
            db.execute("BEGIN")  # one read transaction: a consistent snapshot
            try:
                row = db.execute("SELECT value FROM kb_meta WHERE key='generation'").fetchone()
                generation = int(row[0]) if row else 0
                rows = db.execute(
                    f"SELECT c.id, c.doc_id, {vector}, c.terms, "
                    "CASE WHEN c.terms IS NULL THEN c.title || char(10) || c.heading || char(10) "
                    "|| c.text END FROM chunks c LEFT JOIN vectors v ON v.chunk_rowid = c.rowid "
                    "ORDER BY c.rowid"
                ).fetchall()
                documents = db.execute(
                    "SELECT id, groups, metadata, terms, "
                    "CASE WHEN terms IS NULL THEN title || char(10) || text END "
                    "FROM documents ORDER BY id"
                ).fetchall()
            finally:
                db.execute("COMMIT")
        matrix, has_vector = snapshot_vectors(
            [r[2] for r in rows], (lambda b: np.frombuffer(b, dtype="<f4")) if vectors else None,
            self.path)
        return IndexSnapshot(
            chunk_ids=[r[0] for r in rows],
            doc_ids=[r[1] for r in rows],
            matrix=matrix,
            has_vector=has_vector,
            terms=[json.loads(r[3]) if r[3] is not None else None for r in rows],
            untermed_texts=[r[4] for r in rows],
            documents={d[0]: (tuple(json.loads(d[1])), json.loads(d[2])) for d in documents},
            document_terms={d[0]: json.loads(d[3]) if d[3] is not None else None
                            for d in documents},
            untermed_documents={d[0]: d[4] for d in documents if d[3] is None},
            generation=generation,
        )

    def visible_documents(self, access: Access) -> set[str]:
        """Ids of the documents `access` may read (`Access.sql_filter`)."""
        condition, params = access.sql_filter("d.id")
        with self._read() as db:
            rows = db.execute(f"SELECT id FROM documents d WHERE {condition}", params).fetchall()
        return {r[0] for r in rows}

    # --- production traces ----------------------------------------------------------------

    def add_trace(self, trace: Trace) -> None:
        """Keep one served answer's trace (its id must be new)."""
        with self._transaction() as db:
            db.execute(f"INSERT INTO traces({_TRACE_COLUMNS}) VALUES ({_TRACE_MARKS})",
                       _trace_row(trace))

    def get_trace(self, trace_id: str) -> Trace | None:
        """One trace by id, or None."""
        with self._read() as db:
            row = db.execute(f"SELECT {_TRACE_COLUMNS} FROM traces WHERE id = ?",
                             (trace_id,)).fetchone()
        return trace_from_row(row) if row else None

    def list_traces(self, limit: int = 50, below: float | None = None,
                    refused: bool | None = None) -> list[Trace]:
        """The newest traces first; `below`: only answers with groundedness under it."""
        sql = f"SELECT {_TRACE_COLUMNS} FROM traces WHERE 1"
        params: list[object] = []
        if below is not None:
            sql += " AND groundedness IS NOT NULL AND groundedness < ?"
            params.append(below)
        if refused is not None:
            sql += " AND refused = ?"
            params.append(int(refused))
        sql += " ORDER BY created_at DESC, id LIMIT ?"
        params.append(limit)
        with self._read() as db:
            rows = db.execute(sql, params).fetchall()
        return [trace_from_row(r) for r in rows]

    def prune_traces(self, before: float, keep: int) -> int:
        """Delete traces created before `before`, then all but the newest `keep`."""
        with self._transaction() as db:
            old = db.execute("DELETE FROM traces WHERE created_at < ?", (before,)).rowcount
            extra = db.execute(
                "DELETE FROM traces WHERE id IN (SELECT id FROM traces "
                "ORDER BY created_at DESC, id LIMIT -1 OFFSET ?)", (keep,)).rowcount
        return old + extra

    # --- health -----------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counts and the size of the files on disk (database + WAL)."""
        with self._read() as db:
            q = db.execute
            documents = q("SELECT count(*) FROM documents").fetchone()[0]
            chunks = q("SELECT count(*) FROM chunks").fetchone()[0]
            vectors = q("SELECT count(*) FROM vectors").fetchone()[0]
            versions = q("SELECT count(*) FROM document_versions").fetchone()[0]
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return StoreStats(documents, chunks, vectors, versions, size, self.generation())

    def check(self) -> list[str]:
        """Problems found by SQLite's integrity check and by our own invariants (a file too
        damaged to run a check is itself the problem reported)."""
        problems: list[str] = []
        with self._lock:
            try:
                result = [r[0] for r in self._db.execute("PRAGMA integrity_check").fetchall()]
            except sqlite3.DatabaseError as exc:
                return [f"sqlite: {exc}"]
            if result != ["ok"]:
                problems.extend(f"sqlite: {r}" for r in result)
            try:
                problems.extend(self._invariant_problems())
            except sqlite3.DatabaseError as exc:
                problems.append(f"sqlite: {exc}")
        return problems

    def _invariant_problems(self) -> list[str]:
        problems: list[str] = []
        q = self._db.execute
        for doc_id, expected, actual in q(
            "SELECT d.id, d.chunk_count, (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id)"
            " FROM documents d"
        ):
            if expected != actual:
                problems.append(f"{doc_id}: {actual} chunks stored, {expected} recorded")
        orphans = q(
            "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} chunks without a document")
        for doc_id, text in q("SELECT id, text FROM documents"):
            for cid, start, end, ctext in q(
                'SELECT id, start, "end", text FROM chunks WHERE doc_id = ?', (doc_id,)
            ):
                if text[start:end] != ctext:
                    problems.append(f"{doc_id}: chunk {cid} does not match its offsets")
        return problems

    def bulk_load(self) -> AbstractContextManager[None]:
        """Nothing to defer: SQLite keeps no index that a bulk load could build once."""
        return nullcontext()

    def restore_history(self, versions: Iterable[DocumentVersion],
                        traces: Iterable[Trace]) -> None:
        """Write salvaged history (document versions, traces) back as it was."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO document_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(v.doc_id, v.version, v.event, v.content_hash, v.chars, v.chunks,
                             v.created_at) for v in versions])
            db.executemany(f"INSERT OR REPLACE INTO traces({_TRACE_COLUMNS}) "
                           f"VALUES ({_TRACE_MARKS})", [_trace_row(t) for t in traces])

    def repair_indexes(self) -> None:
        """Mend what can be mended in place: rebuild every index from the tables, and drop
        chunks and vectors whose document is gone. Table damage needs
        `ragtune.store.repair.salvage` (a new file from the rows still readable)."""
        with self._transaction() as db:
            db.execute("REINDEX")
            db.execute("DELETE FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)")
            db.execute("DELETE FROM vectors WHERE chunk_rowid NOT IN (SELECT rowid FROM chunks)")
            self._bump_generation(db)


_DOC_COLUMNS = (
    "id, source, title, format, version, content_hash, chunk_count, groups, metadata, "
    "created_at, updated_at"
)


def _stored_document(row: tuple) -> StoredDocument:
    return StoredDocument(
        id=row[0], source=row[1], title=row[2], format=row[3], version=row[4],
        content_hash=row[5], chunks=row[6], groups=tuple(json.loads(row[7])),
        metadata=json.loads(row[8]), created_at=row[9], updated_at=row[10],
    )


_TRACE_MARKS = ",".join("?" * len(_TRACE_COLUMNS.split(",")))


def _trace_row(trace: Trace) -> tuple:
    """A trace as its row in the `traces` table (`_TRACE_COLUMNS`)."""
    return (trace.id, trace.created_at, trace.route, trace.key_id, trace.question,
            trace.answer, int(trace.refused), trace.refusal_reason, trace.groundedness,
            trace.latency_ms, trace.prompt_tokens, trace.output_tokens,
            json.dumps(list(trace.doc_groups)), json.dumps(dict(trace.detail), ensure_ascii=False))


def trace_from_row(row: tuple) -> Trace:
    """A row of the `traces` table (`_TRACE_COLUMNS`) as a `Trace`."""
    return Trace(
        id=row[0], created_at=row[1], route=row[2], key_id=row[3], question=row[4],
        answer=row[5], refused=bool(row[6]), refusal_reason=row[7], groundedness=row[8],
        latency_ms=row[9], prompt_tokens=row[10], output_tokens=row[11],
        doc_groups=tuple(json.loads(row[12])), detail=json.loads(row[13]),
    )



def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def apply_migrations(db: sqlite3.Connection, migrations: list[tuple[str, str]],
                     lock: Any) -> None:
    """Apply the named migrations not yet recorded in the `migrations` table, each in its own
    transaction (shared by every SQLite file ragtune keeps: knowledge stores, the key store)."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {r[0] for r in db.execute("SELECT name FROM migrations")}
    for name, sql in migrations:
        if name in done:
            continue
        with lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    db.execute(statement)
                db.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements


# What SQLite's result codes mean for the user: the cause, and what to do about it.
_UNAVAILABLE = {
    "SQLITE_FULL": ("disk full", "free space and run the command again"),
    "SQLITE_READONLY": ("read-only", "the file or its folder cannot be written"),
    "SQLITE_CANTOPEN": ("cannot open", "check that the folder exists and is writable"),
    "SQLITE_CORRUPT": ("corrupt", "run `ragtune kb check --kb NAME --repair`"),
    "SQLITE_NOTADB": ("corrupt", "run `ragtune kb check --kb NAME --repair`"),
    "SQLITE_IOERR": ("I/O error", "check the disk"),
}


def store_error(path: Path, exc: sqlite3.Error, doing: str = "") -> StoreError:
    """An SQLite error as one line that names the file, the cause and what to do. Errors that
    concern the whole file (disk full, read-only, corrupt, I/O) are `StoreUnavailable`."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    base = next((k for k in _UNAVAILABLE if code == k or code.startswith(k + "_")), None)
    if base is None and "readonly" in str(exc):
        base = "SQLITE_READONLY"
    detail = f" ({doing})" if doing else ""
    if base is None:
        return StoreError(f"{path}: {exc}{detail}")
    reason, hint = _UNAVAILABLE[base]
    if base == "SQLITE_CORRUPT" or base == "SQLITE_NOTADB":
        hint = hint.replace("NAME", path.parent.name)
    return StoreUnavailable(f"{path}: {reason}: {exc}{detail}; {hint}", reason)


def _read_only_mount(folder: Path) -> bool:
    """Whether `folder` lies on a file system mounted read-only (root ignores permissions,
    not a read-only mount)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def store_os_error(path: Path, exc: OSError) -> StoreError:
    """An operating-system error on the store's folder, in the same one-line form."""
    import errno

    reasons = {errno.ENOSPC: "disk full", errno.EROFS: "read-only", errno.EACCES: "read-only",
               errno.EPERM: "read-only", errno.EDQUOT: "disk full"}
    reason = reasons.get(exc.errno or 0, "I/O error")
    return StoreUnavailable(f"{path}: {reason}: {exc.strerror or exc}", reason)
