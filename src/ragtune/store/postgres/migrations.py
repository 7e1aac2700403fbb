"""The PostgreSQL schema of one knowledge base: named, append-only migrations, recorded.

A knowledge base is one schema (`<store.schema_prefix>_<name>`); its tables mirror the SQLite
store's, with vectors in a pgvector column (`chunks.embedding`) and JSON as `jsonb` where a
query may look inside it. The HNSW index is made when the first vector arrives (its
dimension is known then: `vector_index_sql`). Migrations run under an advisory lock, so two
replicas starting at once apply each one once.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_initial",
        """
        CREATE TABLE kb_meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE documents (
            id text PRIMARY KEY,
            source text NOT NULL,
            title text NOT NULL,
            format text NOT NULL,
            text text NOT NULL,
            content_hash text NOT NULL,
            version integer NOT NULL,
            chunk_count integer NOT NULL,
            groups jsonb NOT NULL,
            metadata jsonb NOT NULL,
            pages jsonb NOT NULL,
            terms text,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL
        );
        CREATE INDEX documents_source ON documents(source);
        CREATE TABLE document_groups (
            doc_id text NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            grp text NOT NULL,
            PRIMARY KEY (doc_id, grp)
        );
        CREATE INDEX document_groups_grp ON document_groups(grp);
        CREATE TABLE document_versions (
            doc_id text NOT NULL,
            version integer NOT NULL,
            event text NOT NULL,
            content_hash text NOT NULL,
            chars integer NOT NULL,
            chunk_count integer NOT NULL,
            created_at double precision NOT NULL,
            PRIMARY KEY (doc_id, version, event)
        );
        CREATE TABLE chunks (
            seq bigserial PRIMARY KEY,
            id text NOT NULL UNIQUE,
            doc_id text NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            version integer NOT NULL,
            idx integer NOT NULL,
            start integer NOT NULL,
            "end" integer NOT NULL,
            tokens integer NOT NULL,
            heading text NOT NULL,
            page integer,
            title text NOT NULL,
            text text NOT NULL,
            text_hash text NOT NULL,
            terms text,
            flags text NOT NULL DEFAULT '',
            embedding vector
        );
        CREATE INDEX chunks_doc ON chunks(doc_id);
        CREATE INDEX chunks_text_hash ON chunks(text_hash);
        CREATE TABLE traces (
            id text PRIMARY KEY,
            created_at double precision NOT NULL,
            route text NOT NULL,
            key_id text,
            question text NOT NULL,
            answer text NOT NULL,
            refused boolean NOT NULL,
            refusal_reason text,
            groundedness double precision,
            latency_ms double precision NOT NULL,
            prompt_tokens integer NOT NULL,
            output_tokens integer NOT NULL,
            doc_groups jsonb NOT NULL,
            detail jsonb NOT NULL
        );
        CREATE INDEX traces_created ON traces(created_at);
        """,
    ),
]

VECTOR_INDEX = "chunks_embedding_hnsw"


def vector_index_sql(dim: int) -> sql.Composed:
    """The HNSW (cosine) index over the embeddings, once their dimension is known; a search in
    the database must order by the same expression (`embedding::vector(dim)`) to use it."""
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON chunks USING hnsw "
                   "((embedding::vector({})) vector_cosine_ops)").format(
                       sql.Identifier(VECTOR_INDEX), sql.Literal(int(dim)))


def migrate(conn: psycopg.Connection, schema: str) -> None:
    """Create `schema` and apply the migrations it has not recorded, each in its own
    transaction, under an advisory lock held for the schema (autocommit connection)."""
    ident = sql.Identifier(schema)
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ragtune-migrate:{schema}",))
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.migrations "
                             "(name text PRIMARY KEY, applied_at double precision)").format(ident))
        done = {r[0] for r in conn.execute(
            sql.SQL("SELECT name FROM {}.migrations").format(ident))}
        for name, script in MIGRATIONS:
            if name in done:
                continue
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(ident))
                conn.execute(script)  # type: ignore[call-overload]  # a literal script
                conn.execute(sql.SQL("INSERT INTO {}.migrations VALUES (%s, %s)").format(ident),
                             (name, time.time()))
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"ragtune-migrate:{schema}",))
