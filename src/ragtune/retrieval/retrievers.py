"""Retrievers behind one protocol: BM25, dense (exact cosine) and hybrid (fusion of the two).

Each scores every chunk of a `SearchIndex` and selects the top k inside the caller's mask (access
groups and metadata filters are applied before ranking, so top-k stays full). With one hit per
document (`per_doc=1`), documents are ranked by document-level scores and shown by their best
chunk: BM25 over the whole document's terms, and for dense the mean of the best chunk's and the
first chunk's cosine (measured better than either alone on SciFact train, see BENCHMARKS.md).

    >>> hybrid = HybridRetriever(BM25Retriever(), DenseRetriever(embedder))
    >>> ranking = hybrid.retrieve("query", index, k=10)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np

from ragtune.documents.terms import analyze
from ragtune.errors import ConfigError, ModelError
from ragtune.models.embedders import Embedder
from ragtune.retrieval.fusion import reciprocal_rank_fusion
from ragtune.retrieval.index import Ranking, SearchIndex, _top_k
from ragtune.store import VectorSearch

FUSIONS = ("zscore", "rrf")
MAX_CANDIDATES = 1000  # the most a database-side dense search asks for (pgvector's ef_search cap)
MIN_SAMPLE = 32  # sampled vectors a caller must be able to read to estimate a score spread


@runtime_checkable
class Retriever(Protocol):
    """Ranks the chunks (or, with `per_doc=1`, the documents) of a `SearchIndex`."""

    name: str

    def retrieve(
        self,
        query: str,
        index: SearchIndex,
        k: int,
        mask: np.ndarray | None = None,
        per_doc: int | None = None,
    ) -> Ranking: ...


@runtime_checkable
class Reranker(Protocol):
    """Re-orders a first-stage ranking (for example with a cross-encoder)."""

    name: str

    def rerank(self, query: str, index: SearchIndex, ranking: Ranking) -> Ranking: ...


class _Scored:
    """Shared `retrieve` for retrievers that score every chunk and every document."""

    name = ""

    def chunk_scores(self, query: str, index: SearchIndex) -> np.ndarray:
        raise NotImplementedError

    def document_scores(self, query: str, index: SearchIndex, chunk_scores: np.ndarray
                        ) -> np.ndarray:
        raise NotImplementedError

    def retrieve(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None = None,
                 per_doc: int | None = None) -> Ranking:
        chunks = self.chunk_scores(query, index)
        if per_doc == 1:
            docs = self.document_scores(query, index, chunks)
            return index.top_documents(docs, chunks, k, mask)
        return index.top(chunks, k, mask, per_doc)


class BM25Retriever(_Scored):
    """Lexical BM25; chunks and documents matching no query term are excluded (-inf)."""

    name = "bm25"

    def chunk_scores(self, query: str, index: SearchIndex) -> np.ndarray:
        return _matched(index.bm25.scores(_query_terms(query)))

    def document_scores(self, query: str, index: SearchIndex, chunk_scores: np.ndarray
                        ) -> np.ndarray:
        return _matched(index.document_bm25.scores(_query_terms(query)))


class DenseRetriever(_Scored):
    """Exact cosine similarity between the query embedding and every chunk vector."""

    name = "dense"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def chunk_scores(self, query: str, index: SearchIndex) -> np.ndarray:
        if not _dense_ready(index):  # an empty knowledge base is not a degraded one
            return np.zeros(len(index), dtype=np.float32)
        if index.matrix.shape[1] != self.embedder.dim:
            raise ModelError(
                f"stored vectors have {index.matrix.shape[1]} dimensions, the embedder "
                f"{self.embedder.name} gives {self.embedder.dim}"
            )
        return _matvec(index.matrix, self.embedder.embed_query(query))

    def document_scores(self, query: str, index: SearchIndex, chunk_scores: np.ndarray
                        ) -> np.ndarray:
        return 0.5 * index.segment_max(chunk_scores) + 0.5 * index.segment_first(chunk_scores)

    def spread(self, query: str, index: SearchIndex, mask: np.ndarray | None = None
               ) -> tuple[float, float] | None:
        """The mean and standard deviation of the query's scores over the chunks in `mask`,
        where `chunk_scores` does not give them all (None: it does)."""
        return None


class DatabaseDenseRetriever(DenseRetriever):
    """Dense ranking by the store's own vector index (`store.dense = "database"`: PostgreSQL's
    HNSW), for replicas that hold no vectors.

    The `depth` nearest chunks the caller may read, and the first chunk of each of their
    documents (a document's dense score uses it), get their exact cosine; every other chunk
    scores as the lowest of those (as far as the approximate index knows, it is no nearer).
    Hybrid fusion standardizes dense scores by the mean and spread of the query's cosine over
    a fixed sample of the chunks in the caller's mask (`SearchIndex.vector_sample`), since
    the others are not known; for documents (`per_doc=1`) the chunks' spread stands in.
    Dense mode returns candidates only, asking for more when filters leave fewer than k.
    """

    def __init__(self, embedder: Embedder, store: VectorSearch, depth: int = 100,
                 ef_search: int | None = None) -> None:
        super().__init__(embedder)
        self.store, self.depth, self.ef_search = store, depth, ef_search
        self._vector = lru_cache(maxsize=64)(embedder.embed_query)  # hybrid asks twice

    def chunk_scores(self, query: str, index: SearchIndex) -> np.ndarray:
        enough = min(self.depth, index.visible_chunks)
        scores, _ = self._asking_more(query, index, self.depth,
                                      lambda s: (int(np.isfinite(s).sum()) >= enough, None))
        finite = np.isfinite(scores)
        floor = float(scores[finite].min()) if finite.any() else 0.0
        return np.where(finite, scores, floor).astype(np.float32)

    def retrieve(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None = None,
                 per_doc: int | None = None) -> Ranking:
        def ranked(chunks: np.ndarray) -> tuple[bool, Ranking]:
            if per_doc == 1:
                ranking = index.top_documents(self.document_scores(query, index, chunks),
                                              chunks, k, mask)
            else:
                ranking = index.top(chunks, k, mask, per_doc)
            return len(ranking.rows) >= k, ranking
        _, ranking = self._asking_more(query, index, max(self.depth, 2 * k), ranked)
        assert ranking is not None
        return ranking

    def _asking_more(self, query: str, index: SearchIndex, wanted: int,
                     check: Callable[[np.ndarray], tuple[bool, Ranking | None]]
                     ) -> tuple[np.ndarray, Ranking | None]:
        """`_candidates` for `wanted` chunks, then four times as many, until `check` says
        they are enough or more cannot be had; the last scores and what `check` made."""
        while True:
            scores, exhausted = self._candidates(query, index, wanted)
            done, made = check(scores)
            if done or exhausted:
                return scores, made
            wanted = min(4 * wanted, MAX_CANDIDATES)

    def spread(self, query: str, index: SearchIndex, mask: np.ndarray | None = None
               ) -> tuple[float, float] | None:
        rows, vectors = index.vector_sample
        inside = mask if mask is not None else index.visible
        if inside is not None:
            vectors = vectors[inside[rows]]
        vector = self._vector(query)
        if len(vectors) < MIN_SAMPLE or vectors.shape[1] != len(vector):
            return None  # too few to estimate: standardize over the scores themselves
        sims = np.einsum("ij,j->i", vectors, vector)
        return float(sims.mean()), float(sims.std())

    def _candidates(self, query: str, index: SearchIndex, wanted: int
                    ) -> tuple[np.ndarray, bool]:
        """Exact cosine for the nearest `wanted` chunks and their documents' first chunks,
        -inf for the rest; and whether asking for more could find no others."""
        if not _dense_ready(index):
            return np.zeros(len(index), dtype=np.float32), True
        vector = self._vector(query)
        _, sample = index.vector_sample
        if sample.shape[1] not in (0, len(vector)):
            raise ModelError(f"stored vectors have {sample.shape[1]} dimensions, the embedder "
                             f"{self.embedder.name} gives {len(vector)}")
        found = self.store.nearest_chunks(vector, wanted, self.ef_search, index.access)
        scores = np.full(len(index), -np.inf, dtype=np.float32)
        rows = [(index.row_of.get(chunk_id), sim) for chunk_id, _, sim in found]
        near = np.asarray([r for r, _ in rows if r is not None], dtype=np.int64)
        scores[near] = [sim for r, sim in rows if r is not None]  # newer than the index: left out
        segments = np.searchsorted(index.segment_starts, near, side="right") - 1
        firsts = [int(r) for r in np.unique(index.segment_starts[segments])
                  if not np.isfinite(scores[r]) and index.has_vector[r]]
        if firsts:
            vectors = index.vectors(firsts, len(vector))
            scores[firsts] = np.einsum("ij,j->i", vectors, vector)
        # the access filter applies after the index scan: a short answer is the end only for
        # a caller who reads everything, or once the most that may be asked for was asked
        exhausted = (len(found) < wanted and index.access.everything) or (
            wanted >= min(len(index), MAX_CANDIDATES))
        return scores, exhausted


def _dense_ready(index: SearchIndex) -> bool:
    """Whether dense scores can be given: False for nothing visible (an empty knowledge base
    is not a degraded one); a ModelError when visible chunks lack vectors."""
    if index.visible_chunks == 0:
        return False
    if not index.dense_ready:
        missing = index.missing_vectors
        raise ModelError("no vectors stored" if missing == index.visible_chunks
                         else f"{missing} chunks lack vectors")
    return True


class HybridRetriever:
    """BM25 and dense fused: z-score (default) or reciprocal rank fusion.

    - `zscore`: each retriever's scores are standardized over the visible chunks (or documents)
      and combined as `w_bm25 * z(bm25) + w_dense * z(dense)`; default weights 0.3 / 0.7.
    - `rrf`: reciprocal rank fusion of each retriever's top `depth`, `rrf_k` = 60 by default,
      weights 1 / 1.

    `ranks` on the result give each retriever's 1-based rank (within its top `depth`).
    """

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, fusion: str = "zscore",
                 rrf_k: float = 60.0, weights: Mapping[str, float] | None = None,
                 depth: int = 100) -> None:
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.bm25, self.dense = bm25, dense
        self.fusion = fusion
        self.rrf_k = rrf_k
        default = {"bm25": 0.3, "dense": 0.7} if fusion == "zscore" else {"bm25": 1.0,
                                                                          "dense": 1.0}
        self.weights = {**default, **dict(weights or {})}
        self.depth = depth

    def retrieve(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None = None,
                 per_doc: int | None = None) -> Ranking:
        if self.fusion == "rrf":
            return self._rrf(query, index, k, mask, per_doc)
        lex_chunks = self.bm25.chunk_scores(query, index)
        sem_chunks = self.dense.chunk_scores(query, index)
        spread = self.dense.spread(query, index, mask)
        if per_doc == 1:
            lex = self.bm25.document_scores(query, index, lex_chunks)
            sem = self.dense.document_scores(query, index, sem_chunks)
            seg_mask = index.segment_mask(mask)
            fused = self._combine(lex, sem, seg_mask, spread)
            ranking = index.top_documents(
                fused, self._combine(lex_chunks, sem_chunks, mask, spread), k, mask)
            keys = index.chunk_doc[ranking.rows]  # rank documents, not chunks
            key_of = index.segment_doc
            ranks = _ranks(keys, {"bm25": (lex, seg_mask), "dense": (sem, seg_mask)},
                           self.depth, key_of)
        else:
            fused = self._combine(lex_chunks, sem_chunks, mask, spread)
            ranking = index.top(fused, k, mask, per_doc)
            ranks = _ranks(ranking.rows, {"bm25": (lex_chunks, mask),
                                          "dense": (sem_chunks, mask)}, self.depth, None)
        return Ranking(ranking.rows, ranking.scores, ranks)

    def _combine(self, lex: np.ndarray, sem: np.ndarray, mask: np.ndarray | None,
                 spread: tuple[float, float] | None = None) -> np.ndarray:
        """`spread`: the dense scores' mean and deviation where `sem` does not hold them all."""
        visible = np.ones(len(lex), dtype=bool) if mask is None else mask
        lex = np.where(np.isfinite(lex), lex, 0.0)  # no match = a BM25 score of 0
        fused = self.weights["bm25"] * _zscore(lex, visible) + self.weights["dense"] * _zscore(
            sem, visible, spread)
        return np.where(visible, fused, -np.inf).astype(np.float32)

    def _rrf(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None,
             per_doc: int | None) -> Ranking:
        depth = max(k, self.depth)
        lists = {r.name: r.retrieve(query, index, depth, mask, per_doc).rows.tolist()
                 for r in (self.bm25, self.dense)}
        if per_doc == 1:
            return self._rrf_documents(index, lists, k)
        fused = reciprocal_rank_fusion(lists, k=self.rrf_k, weights=self.weights)
        ranks = {row: r for row, _, r in fused}
        rows = np.asarray([row for row, _, _ in fused], dtype=np.int64)
        scores = np.asarray([score for _, score, _ in fused], dtype=np.float32)
        if per_doc is not None:
            full = np.full(len(index), -np.inf, dtype=np.float32)
            full[rows] = scores
            rows, scores, _ = index.top(full, k, None, per_doc)
        rows, scores = rows[:k], scores[:k]
        return Ranking(rows, scores, [ranks[int(r)] for r in rows])

    def _rrf_documents(self, index: SearchIndex, lists: dict[str, list[int]], k: int
                       ) -> Ranking:
        """Fuse document rankings: a document's best BM25 chunk and best dense chunk can
        differ, and fusing chunk rows would count it twice, each time half as strongly."""
        by_doc = {name: [int(index.chunk_doc[r]) for r in rows] for name, rows in lists.items()}
        best_row: dict[int, tuple[int, int]] = {}  # doc -> (rank, row) of its best chunk
        for rows in lists.values():
            for rank, row in enumerate(rows):
                doc = int(index.chunk_doc[row])
                if doc not in best_row or rank < best_row[doc][0]:
                    best_row[doc] = (rank, row)
        fused = reciprocal_rank_fusion(by_doc, k=self.rrf_k, weights=self.weights)[:k]
        shown = np.asarray([best_row[doc][1] for doc, _, _ in fused], dtype=np.int64)
        scores = np.asarray([score for _, score, _ in fused], dtype=np.float32)
        return Ranking(shown, scores, [ranks for _, _, ranks in fused])


@lru_cache(maxsize=256)
def _query_terms(query: str) -> tuple[str, ...]:
    """A query's BM25 terms (cached: chunk- and document-level scoring both need them)."""
    return tuple(analyze(query))


def _matched(scores: np.ndarray) -> np.ndarray:
    return np.where(scores > 0, scores, -np.inf).astype(np.float32)


def _zscore(x: np.ndarray, visible: np.ndarray,
            spread: tuple[float, float] | None = None) -> np.ndarray:
    if spread is not None:
        mean, std = spread
    else:
        seen = x[visible]
        if seen.size == 0:
            return np.zeros_like(x, dtype=np.float32)
        mean, std = float(seen.mean()), float(seen.std())
    return ((x - mean) / (std if std > 0 else 1.0)).astype(np.float32)


def _ranks(keys: np.ndarray, lists: dict[str, tuple[np.ndarray, np.ndarray | None]],
           depth: int, key_of: np.ndarray | None) -> list[dict[str, int]]:
    """Each key's 1-based rank in each retriever's own top `depth` (absent if deeper)."""
    positions: dict[str, dict[int, int]] = {}
    for name, (scores, mask) in lists.items():
        s = np.where(mask, scores, -np.inf) if mask is not None else scores
        top = _top_k(s, min(depth, len(s)))
        ids = top if key_of is None else key_of[top]
        positions[name] = {int(x): i + 1 for i, x in enumerate(ids.tolist())}
    return [{name: pos[int(key)] for name, pos in positions.items() if int(key) in pos}
            for key in keys.tolist()]


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector, single-threaded on purpose.

    Right after the query encoder ran, a threaded product contends with the encoder's thread
    pool (numpy's BLAS after a PyTorch pass: 40-60 ms instead of 0.2). `einsum` needs no thread
    pool; in the hybrid search loop it measured 10.8 ms per query against 12.1 (torch.mv) and
    12.4 (numpy BLAS) (BENCHMARKS.md).
    """
    return np.einsum("ij,j->i", matrix, vector)
