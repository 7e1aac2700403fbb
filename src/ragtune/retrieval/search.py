"""Search a knowledge base: BM25, dense (exact cosine, or the database's HNSW index with
`store.dense = "database"`) or hybrid (z-score or rank fusion).

    >>> result = search(kb, "how do I rotate keys", k=5, mode="hybrid", groups=["staff"])
    >>> result.hits[0].doc_id, result.degraded

Access groups and metadata filters are applied inside retrieval, before ranking, in every mode.
If dense search cannot run, hybrid falls back to BM25 and says so in `degraded`.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ragtune.config import RetrievalSettings, Settings
from ragtune.errors import ConfigError, InputError, ModelError
from ragtune.kb import KnowledgeBase
from ragtune.retrieval.filters import Filters
from ragtune.retrieval.index import Ranking, SearchIndex
from ragtune.retrieval.retrievers import (
    FUSIONS,
    BM25Retriever,
    DatabaseDenseRetriever,
    DenseRetriever,
    HybridRetriever,
    Reranker,
    Retriever,
)
from ragtune.store import VectorSearch

MODES: tuple[str, ...] = ("bm25", "dense", "hybrid")
DUPLICATE_COSINE = 0.98  # chunks at least this similar to a better hit are collapsed


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk, its document, its score and the ranks that produced it."""

    rank: int
    score: float
    doc_id: str
    chunk_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass
class SearchResult:
    """Hits plus how they were made; `degraded` names a fallback when one happened."""

    mode: str
    hits: list[Hit]
    degraded: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "hits": [asdict(h) for h in self.hits],
            "degraded": self.degraded,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


class Searcher:
    """Searches one knowledge base, keeping its `SearchIndex` fresh across store writes."""

    def __init__(self, kb: KnowledgeBase, depth: int = 100) -> None:
        self.kb = kb
        self.depth = depth
        self.bm25 = BM25Retriever()
        self._retrievers_for(kb.settings)
        self._index: SearchIndex | None = None
        self._lock = threading.Lock()

    def _retrievers_for(self, settings: Settings) -> None:
        """Dense and hybrid retrievers as `settings` say (the embedder, the fusion weights)."""
        self._settings = settings
        tuned = settings.retrieval
        self.dense = _dense_retriever(self.kb, self.depth)
        self.fusion = tuned.fusion
        self.hybrids = {f: HybridRetriever(self.bm25, self.dense, f, depth=self.depth,
                                           **(hybrid_options(tuned) if f == tuned.fusion else {}))
                        for f in FUSIONS}

    def index(self) -> SearchIndex:
        """The current index, rebuilt if the store changed since it was built."""
        generation = self.kb.store.generation()
        with self._lock:
            if self._index is None or self._index.generation != generation:
                if self._index is not None:
                    self.kb.reload_settings()  # adopted elsewhere (tune-retrieval --apply)?
                store = self.kb.store
                if isinstance(self.dense, DatabaseDenseRetriever):  # no vectors held here
                    assert isinstance(store, VectorSearch)
                    self._index = SearchIndex(store.index_snapshot(vectors=False),
                                              store.vectors_of)
                else:
                    self._index = SearchIndex(store.index_snapshot())
            return self._index

    def retriever(self, mode: str, fusion: str | None = None) -> Retriever:
        """The retriever of a mode (`fusion` picks the hybrid's method; None: the knowledge
        base's, `retrieval.fusion`, with its weights)."""
        if self.kb.settings is not self._settings:  # adopted or rebuilt since: follow them
            self._retrievers_for(self.kb.settings)
        fusion = fusion or self.fusion
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        retrievers: dict[str, Retriever] = {
            "bm25": self.bm25, "dense": self.dense, "hybrid": self.hybrids[fusion]}
        return retrievers[mode]

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        groups: Iterable[str] | None = None,
        filters: Filters | None = None,
        per_doc: int | None = None,
        dedupe: bool = True,
        reranker: Reranker | None = None,
        fusion: str | None = None,
    ) -> SearchResult:
        """Search; `groups=None` is an unrestricted local caller (see `search`)."""
        if not query.strip():
            raise InputError("query is empty")
        if k <= 0:
            raise InputError(f"k must be > 0, got {k}")
        if per_doc is not None and per_doc <= 0:
            raise InputError(f"per_doc must be > 0, got {per_doc}")
        t0 = time.perf_counter()
        groups = None if groups is None else tuple(groups)
        index = self.index().scoped(groups)  # statistics over what the caller may read
        retriever = self.retriever(mode, fusion)  # after the index: settings may have moved
        mask = index.mask(groups, filters)
        t1 = time.perf_counter()
        degraded: str | None = None
        used = mode
        fetch = k if not dedupe else max(2 * k, k + 10)
        try:
            ranking = retriever.retrieve(query, index, fetch, mask, per_doc)
        except ModelError as exc:
            if mode != "hybrid":
                raise
            degraded = f"dense search unavailable ({exc}); results are BM25 only"
            used = "bm25"
            ranking = self.bm25.retrieve(query, index, fetch, mask, per_doc)
        if dedupe:
            ranking = _collapse_duplicates(index, ranking)
        if reranker is not None:
            ranking = reranker.rerank(query, index, ranking)
        t2 = time.perf_counter()
        hits = self._hits(index, ranking, k, used)
        t3 = time.perf_counter()
        timings = {"index": (t1 - t0) * 1000, "retrieve": (t2 - t1) * 1000,
                   "fetch": (t3 - t2) * 1000, "total": (t3 - t0) * 1000}
        return SearchResult(mode, hits, degraded, timings)

    def _hits(self, index: SearchIndex, ranking: Ranking, k: int, used: str) -> list[Hit]:
        rows = [int(r) for r in ranking.rows[:k]]
        chunks = {c.id: c for c in self.kb.store.get_chunks([index.chunk_ids[r] for r in rows])}
        hits: list[Hit] = []
        for i, row in enumerate(rows):
            chunk = chunks.get(index.chunk_ids[row])
            if chunk is None:  # deleted after the index was built
                continue
            ranks = ranking.ranks[i] if ranking.ranks is not None else {used: i + 1}
            hits.append(Hit(
                rank=len(hits) + 1, score=float(ranking.scores[i]), doc_id=chunk.doc_id,
                chunk_id=chunk.id, text=chunk.text, ranks=dict(ranks),
                metadata={"title": chunk.title, "heading": chunk.heading, "page": chunk.page,
                          "start": chunk.start, "end": chunk.end, "version": chunk.version},
            ))
        return hits


def _collapse_duplicates(index: SearchIndex, ranking: Ranking) -> Ranking:
    """Drop hits whose vector is near-identical to a better hit's (mirrored or copied text)."""
    if len(ranking.rows) < 2 or not index.has_vector[ranking.rows].all():
        return ranking
    vectors = index.vectors(ranking.rows)
    if vectors.shape[1] == 0:  # deleted since the index was built: nothing to compare
        return ranking
    sims = vectors @ vectors.T
    keep: list[int] = []
    for i in range(len(ranking.rows)):
        if all(sims[i, j] < DUPLICATE_COSINE for j in keep):
            keep.append(i)
    if len(keep) == len(ranking.rows):
        return ranking
    ranks = [ranking.ranks[i] for i in keep] if ranking.ranks is not None else None
    return Ranking(ranking.rows[keep], ranking.scores[keep], ranks)


def hybrid_options(settings: RetrievalSettings) -> dict[str, Any]:
    """`HybridRetriever` keyword arguments for retrieval settings (weights, rank constant)."""
    options: dict[str, Any] = {"rrf_k": settings.rrf_k}
    if settings.bm25_weight is not None:
        options["weights"] = {"bm25": settings.bm25_weight, "dense": 1 - settings.bm25_weight}
    return options


def _dense_retriever(kb: KnowledgeBase, depth: int) -> DenseRetriever:
    """Exact cosine over vectors in memory, or the store's own vector index where
    `store.dense = "database"` (a backend that has one: `VectorSearch`)."""
    settings = kb.settings.store
    if settings.dense == "process":
        return DenseRetriever(kb.embedder)
    if not isinstance(kb.store, VectorSearch):
        raise ConfigError(
            f"store.dense = 'database' needs a backend that searches vectors itself "
            f"(postgres); knowledge base {kb.name!r} is on {type(kb.store).__name__}")
    return DatabaseDenseRetriever(kb.embedder, kb.store, depth, settings.ef_search)


_searchers: weakref.WeakKeyDictionary[KnowledgeBase, Searcher] = weakref.WeakKeyDictionary()


def searcher_for(kb: KnowledgeBase) -> Searcher:
    """The process-wide `Searcher` of a knowledge base object (its index is reused)."""
    found = _searchers.get(kb)
    if found is None:
        found = _searchers[kb] = Searcher(kb)
    return found


def search(
    kb: KnowledgeBase,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    groups: Iterable[str] | None = None,
    filters: Filters | None = None,
    per_doc: int | None = None,
    dedupe: bool = True,
    fusion: str | None = None,
) -> SearchResult:
    """Search `kb` for `query`.

    `groups=None` means an unrestricted, trusted local caller; pass the caller's groups
    (possibly empty) to enforce access control. `filters` restrict document metadata (see
    `ragtune.retrieval.filters`); `per_doc` caps hits per document; `dedupe` collapses
    near-duplicate chunks; `fusion` is the hybrid's method (`zscore` or `rrf`; None: the knowledge
    base's `retrieval` settings, weights included).
    """
    return searcher_for(kb).search(query, k, mode, groups, filters, per_doc, dedupe,
                                   fusion=fusion)


__all__ = ["MODES", "Hit", "SearchResult", "Searcher", "hybrid_options", "search",
           "searcher_for"]
