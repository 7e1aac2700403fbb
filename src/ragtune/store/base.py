"""The store protocols: the one contract every knowledge-store backend fulfils, split by role.

`DocumentStore` (documents, versions, chunks, vectors, provenance), `SnapshotSource` (what search
reads), `TraceStore` (production traces) and `Maintenance` (health, repair); `Store` is all of
them. Callers (ingestion, retrieval, the service) talk to these protocols only; the backend is
chosen by name (`ragtune.store.registry`): SQLite is the default, and a PostgreSQL + pgvector
backend can follow without changing them. Every write of a document is atomic: after a crash a
document is either fully present (row, chunks, vectors, term counts, version record) or fully
absent. Every backend passes the conformance suite `ragtune.testing.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ragtune.access import Access
from ragtune.documents.records import Chunk, Document, Page
from ragtune.errors import StoreError


@dataclass(frozen=True)
class StoredDocument:
    """A document as the store holds it (its current version)."""

    id: str
    source: str
    title: str
    format: str
    version: int
    content_hash: str
    chunks: int
    groups: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class DocumentVersion:
    """One entry of a document's history: added, updated, or deleted."""

    doc_id: str
    version: int
    event: str
    content_hash: str
    chars: int
    chunks: int
    created_at: float


@dataclass(frozen=True)
class StoreStats:
    """Sizes of a knowledge base."""

    documents: int
    chunks: int
    vectors: int
    versions: int
    bytes_on_disk: int
    generation: int


class IndexSnapshot(NamedTuple):
    """What the in-memory search index is built from: every chunk, in one consistent read.

    `terms[i]` are chunk i's BM25 term frequencies, or None for chunks stored before terms were
    kept (then `untermed_texts[i]` holds the text to analyze). `documents` maps a document id to
    its (groups, metadata), for access control and filters; `document_terms` its whole-text BM25
    term frequencies (None for documents stored before they were kept: then
    `untermed_documents` holds the text to analyze).
    """

    chunk_ids: list[str]
    doc_ids: list[str]
    matrix: np.ndarray
    has_vector: np.ndarray
    terms: list[dict[str, int] | None]
    untermed_texts: list[str | None]
    documents: dict[str, tuple[tuple[str, ...], dict[str, Any]]]
    generation: int
    document_terms: dict[str, dict[str, int] | None] = {}
    untermed_documents: dict[str, str] = {}


@dataclass(frozen=True)
class Trace:
    """One production answer as served, with its online scores (`ragtune.evaluation.online`).

    `groundedness` is the share of the answer's claims the offline judge found supported by
    the passages it was given (None for a refusal: it claims nothing). `doc_groups` are the
    access groups of the documents behind its passages: who may read the trace."""

    id: str
    created_at: float
    route: str
    key_id: str | None
    question: str
    answer: str
    refused: bool
    refusal_reason: str | None
    groundedness: float | None
    latency_ms: float
    prompt_tokens: int
    output_tokens: int
    doc_groups: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)  # citations, passages, claims


@runtime_checkable
class DocumentStore(Protocol):
    """Documents with their versions, chunks and vectors, and the knowledge base's provenance:
    what ingestion writes and what answers and citations read back."""

    # provenance: embedder, chunker settings, library version
    def get_meta(self) -> dict[str, str]: ...

    def set_meta(self, values: Mapping[str, str]) -> None: ...

    def generation(self) -> int:
        """A counter that grows with every write of a document; caches key on it."""
        ...

    # documents and versions
    def document_hashes(self) -> dict[str, str]: ...

    def get_document(self, doc_id: str) -> StoredDocument | None: ...

    def document_text(self, doc_id: str) -> str | None: ...

    def list_documents(self, sources: Sequence[str] | None = None) -> list[StoredDocument]: ...

    def versions(self, doc_id: str) -> list[DocumentVersion]: ...

    def history(self) -> list[DocumentVersion]:
        """Every document's history, deleted documents' too (by document id, then oldest
        first): what a copy to another backend carries over."""
        ...

    def export_document(self, doc_id: str) -> Document | None:
        """The current version as it was written (text, pages, metadata, groups), or None."""
        ...

    def write_document(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        vectors: np.ndarray | None,
        terms: Sequence[Mapping[str, int]] | None = None,
        document_terms: Mapping[str, int] | None = None,
        restore: tuple[int, float, float] | None = None,
    ) -> int: ...

    def delete_document(self, doc_id: str) -> bool: ...

    # chunks and vectors
    def chunks_of(self, doc_id: str) -> list[Chunk]: ...

    def get_chunks(self, chunk_ids: Iterable[str]) -> list[Chunk]: ...

    def vectors_by_text_hash(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]: ...

    def reflag_chunks(self, flagger: Callable[[str], tuple[str, ...]]) -> int:
        """Recompute every chunk's flags from its text; returns how many changed."""
        ...


@runtime_checkable
class SnapshotSource(Protocol):
    """What search reads: every chunk in one consistent snapshot (`ragtune.retrieval.index`
    builds its in-memory index from it), and which documents a caller may read, filtered in
    the backend by the one access policy (`Access.sql_filter` for SQL backends)."""

    def index_snapshot(self, vectors: bool = True) -> IndexSnapshot:
        """`vectors=False`: `has_vector` as stored but an empty (n, 0) `matrix`, for a
        replica that ranks dense in the database (`VectorSearch`) and holds no vectors."""
        ...

    def visible_documents(self, access: Access) -> set[str]: ...


@runtime_checkable
class TraceStore(Protocol):
    """Production traces (`ragtune.evaluation.online`), newest first."""

    def add_trace(self, trace: Trace) -> None: ...

    def get_trace(self, trace_id: str) -> Trace | None: ...

    def list_traces(self, limit: int = 50, below: float | None = None,
                    refused: bool | None = None) -> list[Trace]:
        """`below`: only answers with groundedness under it (refusals left out); `refused`:
        only refusals (True) or only answers (False)."""
        ...

    def prune_traces(self, before: float, keep: int) -> int:
        """Delete traces created before `before` and all but the newest `keep`."""
        ...


@runtime_checkable
class Maintenance(Protocol):
    """Health and repair (`ragtune kb check [--repair]`)."""

    def stats(self) -> StoreStats: ...

    def check(self) -> list[str]:
        """Problems found (empty: healthy)."""
        ...

    def repair_indexes(self) -> None:
        """Rebuild what is derived from the tables (indexes) in place."""
        ...

    def bulk_load(self) -> AbstractContextManager[None]:
        """Around many writes into a store that is empty or nearly so (a first ingest, a
        copy): indexes that are cheaper built once than kept up per write are built when it
        ends (PostgreSQL's HNSW index); every write inside is the same as outside."""
        ...

    def restore_history(self, versions: Iterable[DocumentVersion],
                        traces: Iterable[Trace]) -> None:
        """Write salvaged history (document versions, traces) back as it was (a rebuild
        after damage: `ragtune.store.repair`)."""
        ...


@runtime_checkable
class Store(DocumentStore, SnapshotSource, TraceStore, Maintenance, Protocol):
    """A knowledge base's store: every role above, in one backend (chosen by name through
    `ragtune.store.registry`). Conformance: `ragtune.testing.store`."""

    @property
    def path(self) -> Path | str:
        """Where it is, for messages: a file, or a server (no password) and schema."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class VectorSearch(Protocol):
    """Optional: dense ranking inside the backend (PostgreSQL's HNSW index), so a replica need
    not hold every vector (`store.dense = "database"`). Conformance: `VectorSearchTests`."""

    def nearest_chunks(self, vector: np.ndarray, k: int, ef_search: int | None = None,
                       access: Access | None = None) -> list[tuple[str, str, float]]:
        """The `k` chunks (at most) nearest `vector` among those `access` may read: (chunk id,
        document id, cosine similarity), best first; approximate."""
        ...

    def vectors_of(self, chunk_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these chunks (those without one, or gone, are absent)."""
        ...


ROLES: tuple[type, ...] = (Store, DocumentStore, SnapshotSource, TraceStore, Maintenance)
"""The store protocols; every method of each has a test in the conformance suite."""

OPTIONAL_ROLES: tuple[type, ...] = (VectorSearch,)
"""Protocols a backend may also fulfil; callers check with `isinstance`."""

CHUNK_COLUMNS = 'id, doc_id, version, idx, start, "end", text, tokens, heading, page, title, flags'
"""A chunk's columns in the SQL backends, in the order `chunk_from_row` reads them."""


def snapshot_vectors(column: Sequence[Any], decode: Callable[[Any], np.ndarray] | None,
                     where: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """An index snapshot's (`matrix`, `has_vector`) from each chunk's vector column (None: no
    vector). `decode=None`: the column holds presence flags only and the matrix is (n, 0)."""
    has_vector = np.fromiter((v is not None and v is not False for v in column), bool,
                             len(column))
    if decode is None:
        return np.zeros((len(column), 0), dtype=np.float32), has_vector
    vectors = [None if v is None else decode(v) for v in column]
    dims = {len(v) for v in vectors if v is not None}
    if len(dims) > 1:
        raise StoreError(f"{where}: vectors of different dimensions {sorted(dims)}")
    matrix = np.zeros((len(column), dims.pop() if dims else 0), dtype=np.float32)
    for i, vector in enumerate(vectors):
        if vector is not None:
            matrix[i] = vector
    return matrix, has_vector


def chunk_from_row(row: Sequence[Any]) -> Chunk:
    """A `CHUNK_COLUMNS` row as a `Chunk` (flags are stored comma-separated)."""
    flags = tuple(f for f in row[-1].split(",") if f)
    return Chunk(*row[:-1], flags=flags)  # type: ignore[misc]  # the columns in order


def document_from_row(doc_id: str, text: str, source: str, format: str, title: str,
                      metadata: Mapping[str, Any], pages: Sequence[Sequence[int]],
                      groups: Sequence[str]) -> Document:
    """A stored document's columns (JSON already decoded) as the `Document` written."""
    return Document(id=doc_id, text=text, source=source, format=format, title=title,
                    metadata=dict(metadata), pages=tuple(Page(*p) for p in pages),
                    groups=tuple(groups))


def under_source(source: str, root: str) -> bool:
    """Whether a document's `source` is `root` or lies under it (`list_documents`)."""
    return source == root or source.startswith(root.rstrip("/") + "/")
