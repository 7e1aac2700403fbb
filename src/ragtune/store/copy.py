"""Copy a knowledge base from one store to another (`ragtune kb migrate`), through the store
contract only, so any backend copies to any other; then verify the copy.

Each document is written with its chunks, vectors and term counts as stored (nothing is
re-chunked or re-embedded) and its version and timestamps kept (`restore`); then every
document's history, the traces and the provenance follow. A copy that stopped half way is
resumed by running it again: documents the target already holds at the same version and
content are skipped. The copy is verified by counts (documents, chunks, vectors, versions,
traces) and by comparing a sample of vectors exactly.

    >>> report = copy_store(SQLiteStore(path), postgres_store, progress=bar)
    >>> report.verified, report.counts
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ragtune.errors import StoreError
from ragtune.store.base import IndexSnapshot, Store, StoredDocument

TRACE_PAGE = 100_000
"""Traces are read newest first in pages of this many (the trace store has no cursor)."""
VECTOR_SAMPLE = 200


@dataclass
class CopyReport:
    """What a copy did and what its verification found."""

    copied: int = 0
    skipped: int = 0
    counts: dict[str, list[int]] = field(default_factory=dict)
    """Per table: [source, target] row counts after the copy."""
    vectors_compared: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verified": self.verified}


def copy_store(source: Store, target: Store,
               progress: Callable[[int, int | None], None] | None = None,
               seed: int = 0) -> CopyReport:
    """Copy everything `source` holds into `target` and verify it (see the module docstring);
    `progress(done, total)` is called with (0, total) once, then (1, None) per document."""
    notify = progress or (lambda done, total: None)
    report = CopyReport()
    snapshot = source.index_snapshot()
    rows_of = _rows_by_document(snapshot)
    documents = source.list_documents()
    notify(0, len(documents))
    held = {d.id: d for d in target.list_documents()}
    with target.bulk_load():
        for stored in documents:
            _copy_document(source, target, snapshot, rows_of, stored, held.get(stored.id),
                           report)
            notify(1, None)
    target.restore_history(source.history(), _all_traces(source))
    target.set_meta({k: v for k, v in source.get_meta().items() if k != "generation"})
    _verify(source, target, snapshot, report, seed)
    return report


def _copy_document(source: Store, target: Store, snapshot: IndexSnapshot,
                   rows_of: dict[str, int], stored: StoredDocument,
                   have: StoredDocument | None, report: CopyReport) -> None:
    """One document into the target as stored, unless it holds it already."""
    if have is not None and (have.version, have.content_hash) == (stored.version,
                                                                  stored.content_hash):
        report.skipped += 1
        return
    document = source.export_document(stored.id)
    if document is None:  # deleted while copying: its history still follows
        return
    chunks = source.chunks_of(stored.id)
    rows = [rows_of[c.id] for c in chunks]
    vectors = None
    if rows and all(snapshot.has_vector[r] for r in rows):
        vectors = snapshot.matrix[rows]
    terms = [snapshot.terms[r] for r in rows]
    target.write_document(
        document, chunks, vectors,
        None if any(t is None for t in terms) else terms,  # type: ignore[arg-type]
        snapshot.document_terms.get(stored.id),
        restore=(stored.version, stored.created_at, stored.updated_at))
    report.copied += 1


def _rows_by_document(snapshot: IndexSnapshot) -> dict[str, int]:
    return {chunk_id: i for i, chunk_id in enumerate(snapshot.chunk_ids)}


def _all_traces(store: Store) -> list[Any]:
    traces = store.list_traces(limit=TRACE_PAGE)
    if len(traces) == TRACE_PAGE:
        raise StoreError(f"more than {TRACE_PAGE} traces: prune them first "
                         "(`ragtune traces prune`), then migrate")
    return traces


def _verify(source: Store, target: Store, snapshot: IndexSnapshot, report: CopyReport,
            seed: int) -> None:
    s, t = source.stats(), target.stats()
    report.counts = {
        "documents": [s.documents, t.documents], "chunks": [s.chunks, t.chunks],
        "vectors": [s.vectors, t.vectors], "versions": [s.versions, t.versions],
        "traces": [len(_all_traces(source)), len(_all_traces(target))]}
    report.problems += [f"{table}: {a} in the source, {b} in the copy"
                        for table, (a, b) in report.counts.items() if a != b]
    copied = target.index_snapshot()
    where = _rows_by_document(copied)
    with_vectors = [i for i in range(len(snapshot.chunk_ids)) if snapshot.has_vector[i]]
    sample = random.Random(seed).sample(with_vectors, min(VECTOR_SAMPLE, len(with_vectors)))
    for i in sample:
        j = where.get(snapshot.chunk_ids[i])
        if j is None or not copied.has_vector[j] or not np.array_equal(
                snapshot.matrix[i], copied.matrix[j]):
            report.problems.append(f"chunk {snapshot.chunk_ids[i]}: its vector differs in "
                                   "the copy")
    report.vectors_compared = len(sample)
    copied_hashes = target.document_hashes()
    mismatched = [doc_id for doc_id, content in source.document_hashes().items()
                  if copied_hashes.get(doc_id) != content]
    report.problems += [f"document {doc_id}: content differs in the copy"
                        for doc_id in mismatched[:20]]
