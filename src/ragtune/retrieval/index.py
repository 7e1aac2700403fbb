"""`SearchIndex`: what search needs in memory, built from one store snapshot.

Row i of every array is chunk i. The index is rebuilt when the store's generation moves, from the
stored vectors and term frequencies (nothing is re-embedded or re-tokenized, except chunks stored
before term frequencies were kept).

A caller limited to access groups searches `index.scoped(groups)`: the same arrays, with BM25's
collection statistics (chunk and document counts, document frequencies, average lengths) and
dense readiness taken over the documents it may read only, so ranking is what it would be if the
others did not exist. Which documents those are, the access policy decides
(`Access.document_mask`). Scoped indexes are cached per group set (`SCOPES_KEPT` of them, each
one boolean per chunk and per document beside the shared arrays).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from ragtune.access import Access
from ragtune.documents.terms import term_frequencies
from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.filters import Filters, matches, validate_filters
from ragtune.store import IndexSnapshot

SCOPES_KEPT = 256  # scoped indexes cached per index (least recently used go first)
SAMPLE_VECTORS = 2048  # an index without vectors keeps this many, to estimate score statistics

VectorSource = Callable[[Iterable[str]], dict[str, np.ndarray]]
"""Chunk ids → their stored vectors (`VectorSearch.vectors_of`), for an index holding none."""

Caller = Access | Iterable[str] | None
"""Who searches: an `Access`, or its view (`Access.view`: the groups held, None for the
operator), as `search(groups=...)` takes it."""


class Ranking(NamedTuple):
    """Chunk rows of a `SearchIndex`, best first, with their scores; a fusion also gives each
    row's 1-based rank in every ranking it fused."""

    rows: np.ndarray
    scores: np.ndarray
    ranks: list[dict[str, int]] | None = None


class SearchIndex:
    """In-memory arrays for BM25, dense search, access groups and metadata filters."""

    def __init__(self, snapshot: IndexSnapshot, vector_source: VectorSource | None = None
                 ) -> None:
        """`vector_source`: where the vectors of a snapshot taken without them (an (n, 0)
        matrix: dense ranking runs in the database) are read when needed."""
        self.generation = snapshot.generation
        self.doc_ids = sorted(snapshot.documents)
        doc_pos = {d: i for i, d in enumerate(self.doc_ids)}
        chunk_doc = np.fromiter((doc_pos[d] for d in snapshot.doc_ids), np.int64,
                                len(snapshot.doc_ids))
        # Rows are ordered by document so each document's chunks are one contiguous segment:
        # per-document maxima are then one `np.maximum.reduceat`.
        order = np.argsort(chunk_doc, kind="stable")
        self.chunk_doc = chunk_doc[order]
        self.chunk_ids = [snapshot.chunk_ids[i] for i in order]
        self.matrix = snapshot.matrix[order]
        self.has_vector = snapshot.has_vector[order]
        terms = [
            snapshot.terms[i] if snapshot.terms[i] is not None
            else term_frequencies(snapshot.untermed_texts[i] or "")
            for i in order
        ]
        self.bm25 = BM25Index.build(terms)
        # Segment s = the chunks of document self.segment_doc[s], rows starts[s]:ends[s].
        self.segment_starts = np.flatnonzero(np.diff(self.chunk_doc, prepend=-1))
        self.segment_ends = np.append(self.segment_starts[1:], len(self.chunk_doc))
        self.segment_doc = self.chunk_doc[self.segment_starts]
        doc_terms = []
        for d in (self.doc_ids[i] for i in self.segment_doc.tolist()):
            found = snapshot.document_terms.get(d)
            doc_terms.append(found if found is not None
                             else term_frequencies(snapshot.untermed_documents.get(d, "")))
        self.document_bm25 = BM25Index.build(doc_terms)
        self.doc_metadata: list[dict[str, Any]] = [snapshot.documents[d][1] for d in self.doc_ids]
        doc_groups = [snapshot.documents[d][0] for d in self.doc_ids]
        self._public = np.array([not g for g in doc_groups], dtype=bool)
        self._by_group: dict[str, np.ndarray] = {}
        for i, groups in enumerate(doc_groups):
            for g in groups:
                self._by_group.setdefault(g, np.zeros(len(self.doc_ids), dtype=bool))[i] = True
        self._filter_cache: dict[str, np.ndarray] = {}
        self.visible: np.ndarray | None = None  # chunk rows this index's caller may read
        self.access = Access.operator()  # who this index's caller is
        self._vector_source = vector_source
        self._scopes: OrderedDict[tuple[str, ...], SearchIndex] = OrderedDict()
        self._scopes_lock = threading.Lock()

    def scoped(self, caller: Caller) -> SearchIndex:
        """The index as `caller` sees it (the operator: this index): BM25 statistics and
        dense readiness over the documents it may read only."""
        access = _access(caller)
        if access.everything:
            return self
        key = access.groups  # sorted and unique: one cached scope per group set
        with self._scopes_lock:
            found = self._scopes.get(key)
            if found is not None:
                self._scopes.move_to_end(key)
                return found
        visible = self._readable(access)
        if not self.holds_vectors:  # built once here, shared by every scope
            _ = self.row_of, self.vector_sample
        scoped = copy.copy(self)
        scoped.visible = visible[self.chunk_doc]
        scoped.access = access
        scoped.bm25 = self.bm25.restricted(scoped.visible)
        scoped.document_bm25 = self.document_bm25.restricted(visible[self.segment_doc])
        scoped._filter_cache = self._filter_cache  # filters are per document, not per caller
        with self._scopes_lock:
            self._scopes[key] = scoped
            while len(self._scopes) > SCOPES_KEPT:
                self._scopes.popitem(last=False)
        return scoped

    def _readable(self, access: Access) -> np.ndarray:
        """Documents (by position in `doc_ids`) `access` may read."""
        return access.document_mask(self._public, self._by_group)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Chunk id → row."""
        return {chunk_id: row for row, chunk_id in enumerate(self.chunk_ids)}

    @property
    def holds_vectors(self) -> bool:
        """Whether the vectors are in memory (else dense ranking runs in the database)."""
        return self.matrix.shape[1] > 0 or self._vector_source is None

    def vectors(self, rows: np.ndarray | list[int], dim: int = 0) -> np.ndarray:
        """The vectors of these rows (zero rows for chunks without one, or deleted since the
        index was built): from memory, or read from the store when this index holds none
        (`dim`: their width should none be found)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.holds_vectors:
            return self.matrix[rows]
        assert self._vector_source is not None
        ids = [self.chunk_ids[r] for r in rows.tolist()]
        found = self._vector_source(ids)
        dim = len(next(iter(found.values()))) if found else dim
        out = np.zeros((len(ids), dim), dtype=np.float32)
        for i, chunk_id in enumerate(ids):
            if chunk_id in found:
                out[i] = found[chunk_id]
        return out

    @cached_property
    def vector_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, vectors) of up to `SAMPLE_VECTORS` chunks with a vector, drawn evenly (a
        fixed seed): an index without vectors estimates the spread of a query's cosine
        scores over every chunk from them."""
        with_vector = np.flatnonzero(self.has_vector)
        if len(with_vector) > SAMPLE_VECTORS:
            rng = np.random.default_rng(0)
            with_vector = np.sort(rng.choice(with_vector, SAMPLE_VECTORS, replace=False))
        return with_vector, self.vectors(with_vector)

    def similarities(self, query_vector: np.ndarray, chunk_ids: Iterable[str]) -> list[float]:
        """Cosine similarity of the query to each chunk (0.0 for chunks without a vector)."""
        rows = [self.row_of.get(chunk_id) for chunk_id in chunk_ids]
        known = [r for r in rows if r is not None and bool(self.has_vector[r])]
        sims = (np.einsum("ij,j->i", self.vectors(known, len(query_vector)), query_vector)
                if known else [])
        by_row = dict(zip(known, sims, strict=True))
        return [float(by_row[r]) if r in by_row else 0.0 for r in rows]

    @property
    def dense_ready(self) -> bool:
        """Whether every chunk the caller may read has a vector (dense search is exact over
        all of them)."""
        return self.visible_chunks > 0 and self.missing_vectors == 0

    @property
    def visible_chunks(self) -> int:
        return len(self.chunk_ids) if self.visible is None else int(self.visible.sum())

    @property
    def missing_vectors(self) -> int:
        """Chunks the caller may read that have no vector."""
        missing = ~self.has_vector
        return int((missing if self.visible is None else missing & self.visible).sum())

    def mask(self, caller: Caller, filters: Filters | None) -> np.ndarray | None:
        """Chunk rows `caller` may read that pass the filters (None = every row)."""
        access = _access(caller)
        doc_mask = None if access.everything else self._readable(access)
        if filters:
            normalized = validate_filters(filters)
            key = repr(sorted((k, sorted(v.items(), key=str)) for k, v in normalized.items()))
            fmask = self._filter_cache.get(key)
            if fmask is None:
                fmask = np.fromiter((matches(m, normalized) for m in self.doc_metadata), bool,
                                    len(self.doc_ids))
                if len(self._filter_cache) > 64:
                    self._filter_cache.clear()
                self._filter_cache[key] = fmask
            doc_mask = fmask if doc_mask is None else doc_mask & fmask
        return None if doc_mask is None else doc_mask[self.chunk_doc]

    def top(
        self,
        scores: np.ndarray,
        k: int,
        mask: np.ndarray | None = None,
        per_doc: int | None = None,
    ) -> Ranking:
        """The k best rows by score among finite scores in `mask`.

        `per_doc` caps hits per document before truncation, so the result is full whenever
        enough rows qualify.
        """
        scores = np.asarray(scores, dtype=np.float32)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        finite = int(np.isfinite(scores).sum())
        k = min(k, finite)
        if k <= 0:
            return Ranking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        if per_doc is None:
            rows = _top_k(scores, k)
            return Ranking(rows, scores[rows])
        pool = min(finite, max(4 * k, k + 32))
        while True:
            candidates = _top_k(scores, pool)
            kept: list[int] = []
            per: dict[int, int] = {}
            for row in candidates.tolist():
                doc = int(self.chunk_doc[row])
                if per.get(doc, 0) >= per_doc:
                    continue
                kept.append(row)
                per[doc] = per.get(doc, 0) + 1
                if len(kept) == k:
                    break
            if len(kept) == k or pool >= finite:
                rows = np.asarray(kept, dtype=np.int64)
                return Ranking(rows, scores[rows])
            pool = min(finite, pool * 4)

    def segment_mask(self, mask: np.ndarray | None) -> np.ndarray | None:
        """A chunk mask as a document (segment) mask (masks are per document anyway)."""
        return None if mask is None else mask[self.segment_starts]

    def segment_max(self, scores: np.ndarray) -> np.ndarray:
        """The best chunk score of every document segment."""
        if len(scores) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.maximum.reduceat(scores, self.segment_starts)

    def segment_first(self, scores: np.ndarray) -> np.ndarray:
        """The score of every document's first chunk (it carries the title and opening)."""
        return scores[self.segment_starts]

    def top_documents(
        self, doc_scores: np.ndarray, chunk_scores: np.ndarray, k: int,
        mask: np.ndarray | None = None,
    ) -> Ranking:
        """The k best documents by `doc_scores` (one per segment), each shown by its best chunk.

        Returned rows are chunk rows; scores are the documents' scores.
        """
        seg_mask = self.segment_mask(mask)
        doc_scores = np.asarray(doc_scores, dtype=np.float32)
        if seg_mask is not None:
            doc_scores = np.where(seg_mask, doc_scores, -np.inf)
        k = min(k, int(np.isfinite(doc_scores).sum()))
        if k <= 0:
            return Ranking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        segments = _top_k(doc_scores, k)
        return Ranking(self.best_rows(chunk_scores, segments), doc_scores[segments])

    def best_rows(self, chunk_scores: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """For each given segment, the row of its best chunk (the first one on ties)."""
        starts = self.segment_starts[segments]
        lengths = self.segment_ends[segments] - starts
        if len(segments) == 0 or lengths.max() == 1:
            return starts
        offsets = np.cumsum(lengths) - lengths  # where each segment begins in `rows`
        rows = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
        values = chunk_scores[rows]
        best = np.maximum.reduceat(values, offsets)
        winners = np.flatnonzero(values >= np.repeat(best, lengths))[::-1]
        out = starts.copy()  # all -inf in a segment: show its first chunk
        out[np.searchsorted(offsets, winners, side="right") - 1] = rows[winners]
        return out


def _access(caller: Caller) -> Access:
    return caller if isinstance(caller, Access) else Access.from_view(caller)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first; ties broken by lower index (stable)."""
    if k >= len(scores):
        order = np.argsort(-scores, kind="stable")
    else:
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((part, -scores[part]))]
        return order[np.isfinite(scores[order])]
    return order[np.isfinite(scores[order])][:k]

