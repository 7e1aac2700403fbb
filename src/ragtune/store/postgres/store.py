"""The shared store: a knowledge base as one schema in a PostgreSQL database with pgvector.

Several processes (service replicas, the CLI) may use one knowledge base at once: every write of
a document is one transaction that locks the document's id, so versions stay numbered in order
whoever writes; the generation counter (`kb_meta`) grows with every write, and each process's
in-memory index rebuilds when it sees it change. Vectors live in `chunks.embedding` (pgvector),
with an HNSW (cosine) index for searches in the database; term counts are stored as with SQLite.

    >>> store = PostgresStore("postgresql://ragtune@db/ragtune", "ragtune_handbook")
    >>> store.write_document(doc, chunks, vectors)
    1
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

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
from ragtune.store.postgres.database import Database
from ragtune.store.postgres.migrations import VECTOR_INDEX, migrate, vector_index_sql

KB_COMMENT = "ragtune knowledge base: "
"""Each knowledge base's schema carries its name in a comment (schema names are sanitized)."""
_DOC_COLUMNS = ("id, source, title, format, version, content_hash, chunk_count, groups, "
                "metadata, created_at, updated_at")
_TRACE_COLUMNS = ("id, created_at, route, key_id, question, answer, refused, refusal_reason, "
                  "groundedness, latency_ms, prompt_tokens, output_tokens, doc_groups, detail")
_TRACE_MARKS = ", ".join(["%s"] * len(_TRACE_COLUMNS.split(",")))
_VERSION_COLUMNS = "doc_id, version, event, content_hash, chars, chunk_count, created_at"


def _setup(conn: psycopg.Connection) -> None:
    register_vector(conn)


class PostgresStore:
    """A knowledge base in one PostgreSQL schema (see the module docstring)."""

    def __init__(self, dsn: str, schema: str, *, pool_size: int = 4,
                 statement_timeout_s: float = 30.0, retries: int = 3,
                 ef_search: int = 100, kb_name: str | None = None,
                 index_build_mb: int = 1024) -> None:
        self.schema, self.ef_search = schema, ef_search
        self.index_build_mb = index_build_mb
        self.db = Database(dsn, schema, pool_size=pool_size,
                           statement_timeout_s=statement_timeout_s, retries=retries,
                           setup=_setup)
        self.path = f"{self.db.where} schema {schema}"  # what messages name
        self._indexed = False  # the HNSW index is known to exist
        self._bulk = False  # a bulk load defers the HNSW index
        with self.db.connect(configured=False) as conn:
            _create_extension(conn, self.db.where)
            migrate(conn, schema)
            if kb_name is not None:  # what another replica lists it by
                conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    sql.Identifier(schema), sql.Literal(KB_COMMENT + kb_name)))

    def _run(self, work: Callable[[psycopg.Connection], Any], doing: str = "") -> Any:
        return self.db.run(work, doing=doing)

    def _read(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        return self.db.read(work)

    def close(self) -> None:
        """Close the pool's connections."""
        self.db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- provenance -------------------------------------------------------------------------

    def get_meta(self) -> dict[str, str]:
        """Key/value provenance recorded with the knowledge base."""
        return dict(self._read(lambda c: c.execute("SELECT key, value FROM kb_meta").fetchall()))

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Record provenance values (embedder, chunker settings, versions)."""
        rows = [(k, str(v)) for k, v in values.items()]

        def work(conn: psycopg.Connection) -> None:
            conn.cursor().executemany(
                "INSERT INTO kb_meta(key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", rows)
        self._run(work, "recording provenance")

    def generation(self) -> int:
        """A counter that grows with every write, in every process; caches key on it."""
        row = self._read(lambda c: c.execute(
            "SELECT value FROM kb_meta WHERE key = 'generation'").fetchone())
        return int(row[0]) if row else 0

    @staticmethod
    def _bump_generation(conn: psycopg.Connection) -> None:
        conn.execute("INSERT INTO kb_meta(key, value) VALUES ('generation', '1') "
                     "ON CONFLICT (key) DO UPDATE SET value = (kb_meta.value::bigint + 1)::text")

    # --- documents --------------------------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        """Every document id with its current content hash (what incremental sync compares)."""
        return dict(self._read(lambda c: c.execute(
            "SELECT id, content_hash FROM documents").fetchall()))

    def get_document(self, doc_id: str) -> StoredDocument | None:
        """The current version of one document, or None."""
        row = self._read(lambda c: c.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = %s", (doc_id,)).fetchone())
        return _stored_document(row) if row else None

    def document_text(self, doc_id: str) -> str | None:
        """The full text of the current version (chunk offsets index into it)."""
        row = self._read(lambda c: c.execute(
            "SELECT text FROM documents WHERE id = %s", (doc_id,)).fetchone())
        return row[0] if row else None

    def list_documents(self, sources: Sequence[str] | None = None) -> list[StoredDocument]:
        """All documents, or those whose source is one of `sources` or lies under one of them."""
        rows = self._read(lambda c: c.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents ORDER BY source COLLATE \"C\", id COLLATE "
            '"C"').fetchall())
        docs = [_stored_document(r) for r in rows]
        if sources is None:
            return docs
        roots = tuple(sources)
        return [d for d in docs if any(under_source(d.source, root) for root in roots)]

    def versions(self, doc_id: str) -> list[DocumentVersion]:
        """The history of a document, oldest first (kept after deletion)."""
        rows = self._read(lambda c: c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM document_versions WHERE doc_id = %s "
            "ORDER BY version, created_at", (doc_id,)).fetchall())
        return [DocumentVersion(*r) for r in rows]

    def history(self) -> list[DocumentVersion]:
        """Every document's history, deleted ones' too."""
        rows = self._read(lambda c: c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM document_versions "
            'ORDER BY doc_id COLLATE "C", version, created_at').fetchall())
        return [DocumentVersion(*r) for r in rows]

    def export_document(self, doc_id: str) -> Document | None:
        """The current version as it was written, or None."""
        row = self._read(lambda c: c.execute(
            "SELECT id, text, source, format, title, metadata, pages, groups "
            "FROM documents WHERE id = %s", (doc_id,)).fetchone())
        return None if row is None else document_from_row(*row)

    def write_document(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        vectors: np.ndarray | None,
        terms: Sequence[Mapping[str, int]] | None = None,
        document_terms: Mapping[str, int] | None = None,
        restore: tuple[int, float, float] | None = None,
    ) -> int:
        """Insert or replace a document with its chunks, vectors and terms in one transaction
        (the contract of `DocumentStore.write_document`)."""
        if vectors is not None and len(vectors) != len(chunks):
            raise StoreError(f"{document.id}: {len(chunks)} chunks but {len(vectors)} vectors")
        if terms is not None and len(terms) != len(chunks):
            raise StoreError(f"{document.id}: {len(chunks)} chunks but {len(terms)} term lists")
        matrix = None if vectors is None else np.asarray(vectors, dtype=np.float32)

        def work(conn: psycopg.Connection) -> int:
            _lock_document(conn, document.id)
            now = time.time()
            row = conn.execute(
                "SELECT (SELECT created_at FROM documents WHERE id = %(id)s), "
                "(SELECT max(version) FROM document_versions WHERE doc_id = %(id)s)",
                {"id": document.id}).fetchone()
            assert row is not None  # a SELECT without FROM returns one row
            existed = row[0] is not None
            version, created = (row[1] or 0) + 1, row[0] if existed else now
            if restore is not None:
                version, created, now = restore
            if matrix is not None and len(matrix):
                self._ensure_vector_index(conn, matrix.shape[1])
            with conn.pipeline():  # nothing below needs an answer: one round trip
                if existed:
                    conn.execute("DELETE FROM documents WHERE id = %s", (document.id,))
                self._insert_document(conn, document, chunks, matrix, terms, document_terms,
                                      version, created, now)
                if restore is None:
                    conn.execute(
                        f"INSERT INTO document_versions({_VERSION_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (document.id, version, "updated" if existed else "added",
                         document.content_hash, len(document.text), len(chunks), now))
                self._bump_generation(conn)
            return int(version)
        result: int = self._run(work, f"writing {document.id}")
        return result

    @staticmethod
    def _insert_document(conn: psycopg.Connection, document: Document,
                         chunks: Sequence[Chunk], matrix: np.ndarray | None,
                         terms: Sequence[Mapping[str, int]] | None,
                         document_terms: Mapping[str, int] | None, version: int,
                         created: float, now: float) -> None:
        """The rows of one document version: the document, its groups, its chunks."""
        conn.execute(
            f"INSERT INTO documents({_DOC_COLUMNS}, text, pages, terms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (document.id, document.source, document.title, document.format, version,
             document.content_hash, len(chunks), Jsonb(list(document.groups)),
             Jsonb(dict(document.metadata), dumps=_dumps), created, now, document.text,
             Jsonb([[p.number, p.start, p.end] for p in document.pages]),
             None if document_terms is None else _dumps(dict(document_terms))))
        conn.cursor().executemany(
            "INSERT INTO document_groups(doc_id, grp) VALUES (%s, %s)",
            [(document.id, g) for g in sorted(set(document.groups))])
        conn.cursor().executemany(
            'INSERT INTO chunks(id, doc_id, version, idx, start, "end", tokens, heading, '
            "page, title, text, text_hash, terms, flags, embedding) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(c.id, document.id, version, c.index, c.start, c.end, c.tokens, c.heading,
              c.page, document.title, c.text, c.text_hash,
              None if terms is None else _dumps(dict(terms[i])), ",".join(c.flags),
              None if matrix is None else matrix[i])
             for i, c in enumerate(chunks)])

    def _ensure_vector_index(self, conn: psycopg.Connection, dim: int) -> None:
        """The HNSW index, made with the first vectors (unless a bulk load defers it)."""
        if self._indexed or self._bulk:
            return
        if conn.execute("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() "
                        "AND indexname = %s", (VECTOR_INDEX,)).fetchone() is None:
            conn.execute(vector_index_sql(dim))
        self._indexed = True

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Write many documents faster: the HNSW index is dropped for the load and built
        once after it (one build is much cheaper than an insert into the graph per vector);
        searches in the database scan without it meanwhile."""
        self._run(lambda c: c.execute(f"DROP INDEX IF EXISTS {VECTOR_INDEX}"), "bulk load")
        self._bulk, self._indexed = True, False
        try:
            yield
        finally:
            self._bulk = False
            self.build_vector_index()

    def build_vector_index(self) -> float:
        """Build the HNSW index over the stored vectors if it is missing; the seconds it took
        (0 when there was nothing to do)."""
        row = self._read(lambda c: c.execute(
            "SELECT vector_dims(embedding) FROM chunks WHERE embedding IS NOT NULL LIMIT 1"
        ).fetchone())
        if row is None:
            return 0.0
        started = time.perf_counter()

        def work(conn: psycopg.Connection) -> None:
            # a graph that fits builds much faster (pgvector): about 2 KiB a 384-d vector
            conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                sql.Literal(f"{int(self.index_build_mb)}MB")))
            conn.execute("SET LOCAL statement_timeout = 0")  # a build takes what it takes
            self._indexed = False
            self._ensure_vector_index(conn, int(row[0]))
        self._run(work, "building the vector index")
        return time.perf_counter() - started

    def delete_document(self, doc_id: str) -> bool:
        """Remove a document, its chunks and vectors; its history records the deletion."""
        def work(conn: psycopg.Connection) -> bool:
            _lock_document(conn, doc_id)
            row = conn.execute("DELETE FROM documents WHERE id = %s "
                               "RETURNING version, content_hash", (doc_id,)).fetchone()
            if row is None:
                return False
            conn.execute(
                f"INSERT INTO document_versions({_VERSION_COLUMNS}) "
                "VALUES (%s, %s, 'deleted', %s, 0, 0, %s) ON CONFLICT DO NOTHING",
                (doc_id, row[0], row[1], time.time()))
            self._bump_generation(conn)
            return True
        deleted: bool = self._run(work, f"deleting {doc_id}")
        return deleted

    # --- chunks and vectors -----------------------------------------------------------------

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """A document's chunks in order."""
        rows = self._read(lambda c: c.execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE doc_id = %s ORDER BY idx",
            (doc_id,)).fetchall())
        return [chunk_from_row(r) for r in rows]

    def get_chunks(self, chunk_ids: Iterable[str]) -> list[Chunk]:
        """Chunks by id, in the order asked (missing ids are skipped)."""
        ids = list(chunk_ids)
        rows = self._read(lambda c: c.execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id = ANY(%s)", (ids,)).fetchall())
        found = {r[0]: chunk_from_row(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def vectors_by_text_hash(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks with these text hashes, so equal text is never re-embedded."""
        hashes = list(set(text_hashes))
        rows = self._read(lambda c: c.execute(
            "SELECT text_hash, embedding FROM chunks WHERE text_hash = ANY(%s) "
            "AND embedding IS NOT NULL", (hashes,)).fetchall())
        return {h: np.asarray(v.to_numpy(), dtype=np.float32) for h, v in rows}

    def reflag_chunks(self, flagger: Callable[[str], tuple[str, ...]]) -> int:
        """Recompute every chunk's flags from its text (after the rules changed)."""
        rows = self._read(lambda c: c.execute("SELECT seq, text, flags FROM chunks").fetchall())
        changed = [(",".join(new), seq) for seq, text, old in rows
                   if ",".join(new := flagger(text)) != old]
        if changed:
            self._run(lambda c: c.cursor().executemany(
                "UPDATE chunks SET flags = %s WHERE seq = %s", changed), "reflagging chunks")
        return len(changed)

    # --- what search reads ------------------------------------------------------------------

    def index_snapshot(self, vectors: bool = True) -> IndexSnapshot:
        """Every chunk with its document, vector and BM25 terms, read in one consistent pass
        (a repeatable-read transaction; `vectors=False`: whether each chunk has a vector, not
        the vector)."""
        vector = "embedding" if vectors else "embedding IS NOT NULL OR NULL"

        def work(conn: psycopg.Connection) -> tuple[Any, ...]:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT value FROM kb_meta WHERE key = 'generation'").fetchone()
            with conn.cursor(binary=True) as cur:
                chunks = cur.execute(
                    f"SELECT id, doc_id, {vector}, terms, CASE WHEN terms IS NULL THEN "
                    "title || chr(10) || heading || chr(10) || text END FROM chunks "
                    "ORDER BY seq").fetchall()
            documents = conn.execute(
                "SELECT id, groups, metadata, terms, CASE WHEN terms IS NULL THEN "
                "title || chr(10) || text END FROM documents ORDER BY id COLLATE \"C\""
            ).fetchall()
            return int(row[0]) if row else 0, chunks, documents
        generation, rows, documents = self._run(work, "reading the index snapshot")
        matrix, has_vector = snapshot_vectors(  # binary: pgvector's Vector
            [r[2] for r in rows], (lambda v: v.to_numpy()) if vectors else None, self.path)
        return IndexSnapshot(
            chunk_ids=[r[0] for r in rows],
            doc_ids=[r[1] for r in rows],
            matrix=matrix,
            has_vector=has_vector,
            terms=[json.loads(r[3]) if r[3] is not None else None for r in rows],
            untermed_texts=[r[4] for r in rows],
            documents={d[0]: (tuple(d[1]), d[2]) for d in documents},
            document_terms={d[0]: json.loads(d[3]) if d[3] is not None else None
                            for d in documents},
            untermed_documents={d[0]: d[4] for d in documents if d[3] is None},
            generation=generation,
        )

    def nearest_chunks(self, vector: np.ndarray, k: int, ef_search: int | None = None,
                       access: Access | None = None) -> list[tuple[str, str, float]]:
        """The `k` chunks nearest `vector` by the HNSW index, in the database: (chunk id,
        document id, cosine similarity), best first. Approximate: `ef_search` (default
        `store.ef_search`, raised to `k` when smaller: pgvector returns at most `ef_search`)
        trades recall for speed (BENCHMARKS.md, "Where ranking runs"). The access filter
        applies after the index scan (pgvector 0.6), so a caller who may read little of a
        large knowledge base can get fewer than `k`: ask for more."""
        query = np.asarray(vector, dtype=np.float32)
        dim = int(query.shape[0])
        condition, params = (access or Access.operator()).sql_filter("c.doc_id", mark="%s")
        ef = min(max(int(ef_search or self.ef_search), k), 1000)  # pgvector's upper bound

        def work(conn: psycopg.Connection) -> list[tuple[str, str, float]]:
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(ef))
            distance = sql.SQL("c.embedding::vector({dim}) <=> %s::vector({dim})").format(
                dim=dim)
            rows = conn.execute(
                sql.SQL("SELECT c.id, c.doc_id, 1 - ({d}) FROM chunks c WHERE "
                        "c.embedding IS NOT NULL AND {cond} ORDER BY {d} LIMIT %s").format(
                    d=distance, cond=sql.SQL(condition)),  # type: ignore[arg-type]
                (query, *params, query, k)).fetchall()
            return [(r[0], r[1], float(r[2])) for r in rows]
        found: list[tuple[str, str, float]] = self._run(work, "searching by vector")
        return found

    def vectors_of(self, chunk_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these chunks (those without one, or gone, are absent)."""
        wanted = list(dict.fromkeys(chunk_ids))
        if not wanted:
            return {}

        def work(conn: psycopg.Connection) -> list[tuple[str, Any]]:
            with conn.cursor(binary=True) as cur:
                return cur.execute("SELECT id, embedding FROM chunks WHERE id = ANY(%s) AND "
                                   "embedding IS NOT NULL", (wanted,)).fetchall()
        rows = self._read(work)
        return {r[0]: r[1].to_numpy().astype(np.float32) for r in rows}

    def visible_documents(self, access: Access) -> set[str]:
        """Ids of the documents `access` may read (`Access.sql_filter`)."""
        condition, params = access.sql_filter("d.id", mark="%s")
        rows = self._read(lambda c: c.execute(
            f"SELECT id FROM documents d WHERE {condition}", params).fetchall())
        return {r[0] for r in rows}

    # --- production traces ----------------------------------------------------------------

    def add_trace(self, trace: Trace) -> None:
        """Keep one served answer's trace (its id must be new)."""
        self._run(lambda c: c.execute(
            f"INSERT INTO traces({_TRACE_COLUMNS}) VALUES ({_TRACE_MARKS})", _trace_row(trace)),
            "keeping a trace")

    def get_trace(self, trace_id: str) -> Trace | None:
        """One trace by id, or None."""
        row = self._read(lambda c: c.execute(
            f"SELECT {_TRACE_COLUMNS} FROM traces WHERE id = %s", (trace_id,)).fetchone())
        return _trace(row) if row else None

    def list_traces(self, limit: int = 50, below: float | None = None,
                    refused: bool | None = None) -> list[Trace]:
        """The newest traces first; `below`: only answers with groundedness under it."""
        query = f"SELECT {_TRACE_COLUMNS} FROM traces WHERE TRUE"
        params: list[object] = []
        if below is not None:
            query += " AND groundedness IS NOT NULL AND groundedness < %s"
            params.append(below)
        if refused is not None:
            query += " AND refused = %s"
            params.append(refused)
        query += ' ORDER BY created_at DESC, id COLLATE "C" LIMIT %s'
        params.append(limit)
        rows = self._read(lambda c: c.execute(query, params).fetchall())  # type: ignore[call-overload]
        return [_trace(r) for r in rows]

    def prune_traces(self, before: float, keep: int) -> int:
        """Delete traces created before `before`, then all but the newest `keep`."""
        def work(conn: psycopg.Connection) -> int:
            old = conn.execute("DELETE FROM traces WHERE created_at < %s", (before,)).rowcount
            extra = conn.execute(
                "DELETE FROM traces WHERE id IN (SELECT id FROM traces "
                'ORDER BY created_at DESC, id COLLATE "C" OFFSET %s)', (keep,)).rowcount
            return old + extra
        pruned: int = self._run(work, "pruning traces")
        return pruned

    # --- health -----------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counts, and the size of the schema's tables and indexes in the database."""
        def work(conn: psycopg.Connection) -> tuple[Any, ...] | None:
            return conn.execute(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), "
                "(SELECT count(*) FROM chunks WHERE embedding IS NOT NULL), "
                "(SELECT count(*) FROM document_versions), "
                "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                " JOIN pg_namespace n ON n.oid = c.relnamespace "
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')), "
                "(SELECT value FROM kb_meta WHERE key = 'generation')", (self.schema,)
            ).fetchone()
        documents, chunks, vectors, versions, size, generation = self._run(work)
        return StoreStats(documents, chunks, vectors, versions, int(size), int(generation or 0))

    def check(self) -> list[str]:
        """Problems found by our invariants (the database's own consistency is PostgreSQL's:
        `pg_amcheck` checks its pages and indexes)."""
        def work(conn: psycopg.Connection) -> list[str]:
            problems = [
                f"{doc_id}: {actual} chunks stored, {expected} recorded"
                for doc_id, expected, actual in conn.execute(
                    "SELECT d.id, d.chunk_count, (SELECT count(*) FROM chunks c "
                    "WHERE c.doc_id = d.id) FROM documents d")
                if expected != actual]
            problems += [
                f"{doc_id}: chunk {cid} does not match its offsets"
                for doc_id, cid in conn.execute(
                    "SELECT c.doc_id, c.id FROM chunks c JOIN documents d ON d.id = c.doc_id "
                    'WHERE substr(d.text, c.start + 1, c."end" - c.start) <> c.text')]
            return problems
        found: list[str] = self._run(work, "checking")
        return found

    def repair_indexes(self) -> None:
        """Rebuild every index of the schema from its tables."""
        with self.db.connect() as conn:
            try:
                conn.execute(sql.SQL("REINDEX SCHEMA {}").format(sql.Identifier(self.schema)))
            except psycopg.Error as exc:
                raise StoreError(f"{self.path}: reindex failed: {exc}") from exc
        self._run(self._bump_generation, "repairing")

    def restore_history(self, versions: Iterable[DocumentVersion],
                        traces: Iterable[Trace]) -> None:
        """Write history (document versions, traces) back as it was (a rebuild, a migration)."""
        version_rows = [(v.doc_id, v.version, v.event, v.content_hash, v.chars, v.chunks,
                         v.created_at) for v in versions]
        trace_rows = [_trace_row(t) for t in traces]

        def work(conn: psycopg.Connection) -> None:
            cur = conn.cursor()
            cur.executemany(
                f"INSERT INTO document_versions({_VERSION_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (doc_id, version, event) DO UPDATE "
                "SET content_hash = excluded.content_hash, chars = excluded.chars, "
                "chunk_count = excluded.chunk_count, created_at = excluded.created_at",
                version_rows)
            cur.executemany(
                f"INSERT INTO traces({_TRACE_COLUMNS}) VALUES ({_TRACE_MARKS}) "
                "ON CONFLICT (id) DO NOTHING", trace_rows)
        self._run(work, "restoring history")


def _create_extension(conn: psycopg.Connection, where: str) -> None:
    """pgvector in the database: created when missing (a superuser or, on PostgreSQL 13+, the
    database owner for this trusted extension may); one line saying what to run otherwise."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
        return
    try:
        with conn.transaction():  # replicas starting together: one creates it, the rest wait
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ragtune-create-extension'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreUnavailable(f"{where}: the pgvector extension is not installed and this "
                               "user may not create it: ask an administrator to run `CREATE "
                               "EXTENSION vector;` in this database", "unavailable") from exc
    except psycopg.errors.FeatureNotSupported as exc:
        raise StoreUnavailable(f"{where}: pgvector is not available on this server "
                               f"({exc}): install it (https://github.com/pgvector/pgvector)",
                               "unavailable") from exc
    except psycopg.errors.UndefinedFile as exc:
        raise StoreUnavailable(f"{where}: pgvector is not available on this server "
                               f"({exc}): install it (https://github.com/pgvector/pgvector)",
                               "unavailable") from exc


def _lock_document(conn: psycopg.Connection, doc_id: str) -> None:
    """Serialize writes of one document across processes (until the transaction ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':' || %s))",
                 (doc_id,))


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _stored_document(row: tuple) -> StoredDocument:
    return StoredDocument(
        id=row[0], source=row[1], title=row[2], format=row[3], version=row[4],
        content_hash=row[5], chunks=row[6], groups=tuple(row[7]), metadata=row[8],
        created_at=row[9], updated_at=row[10])



def _trace_row(trace: Trace) -> tuple:
    return (trace.id, trace.created_at, trace.route, trace.key_id, trace.question, trace.answer,
            trace.refused, trace.refusal_reason, trace.groundedness, trace.latency_ms,
            trace.prompt_tokens, trace.output_tokens, Jsonb(list(trace.doc_groups)),
            Jsonb(dict(trace.detail), dumps=_dumps))


def _trace(row: tuple) -> Trace:
    return Trace(id=row[0], created_at=row[1], route=row[2], key_id=row[3], question=row[4],
                 answer=row[5], refused=row[6], refusal_reason=row[7], groundedness=row[8],
                 latency_ms=row[9], prompt_tokens=row[10], output_tokens=row[11],
                 doc_groups=tuple(row[12]), detail=row[13])

