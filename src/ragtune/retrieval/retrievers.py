"""Retrievers behind one protocol: BM25, dense (exact cosine) and hybrid (reciprocal rank fusion).

Each scores every chunk of a `SearchIndex` and selects the top k inside the caller's mask (access
groups and metadata filters are applied before ranking, so top-k stays full).

    >>> hybrid = HybridRetriever(BM25Retriever(), DenseRetriever(embedder))
    >>> ranking = hybrid.retrieve("query", index, k=10)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from ragtune.documents.terms import analyze
from ragtune.errors import ModelError
from ragtune.models.embedders import Embedder
from ragtune.retrieval.fusion import reciprocal_rank_fusion
from ragtune.retrieval.index import Ranking, SearchIndex


@runtime_checkable
class Retriever(Protocol):
    """Ranks the chunks of a `SearchIndex` for a query."""

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


class BM25Retriever:
    """Lexical BM25 over the index's term weights; chunks matching no query term are excluded."""

    name = "bm25"

    def scores(self, query: str, index: SearchIndex) -> np.ndarray:
        scores = index.bm25.scores(analyze(query))
        return np.where(scores > 0, scores, -np.inf).astype(np.float32)

    def retrieve(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None = None,
                 per_doc: int | None = None) -> Ranking:
        return index.top(self.scores(query, index), k, mask, per_doc)


class DenseRetriever:
    """Exact cosine similarity between the query embedding and every chunk vector."""

    name = "dense"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def scores(self, query: str, index: SearchIndex) -> np.ndarray:
        if not index.dense_ready:
            missing = int((~index.has_vector).sum()) if len(index) else 0
            raise ModelError(
                "no vectors stored" if missing == len(index) else f"{missing} chunks lack vectors"
            )
        if index.matrix.shape[1] != self.embedder.dim:
            raise ModelError(
                f"stored vectors have {index.matrix.shape[1]} dimensions, the embedder "
                f"{self.embedder.name} gives {self.embedder.dim}"
            )
        return index.matrix @ self.embedder.embed_query(query)

    def retrieve(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None = None,
                 per_doc: int | None = None) -> Ranking:
        return index.top(self.scores(query, index), k, mask, per_doc)


class HybridRetriever:
    """Reciprocal rank fusion of BM25 and dense rankings, each `depth` deep.

    `ranks` on the result records each retriever's 1-based rank for every fused row.
    """

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, rrf_k: float = 60.0,
                 weights: Mapping[str, float] | None = None, depth: int = 100) -> None:
        self.retrievers = (bm25, dense)
        self.rrf_k = rrf_k
        self.weights = dict(weights or {})
        self.depth = depth

    def retrieve(self, query: str, index: SearchIndex, k: int, mask: np.ndarray | None = None,
                 per_doc: int | None = None) -> Ranking:
        depth = max(k, self.depth)
        lists = {r.name: r.retrieve(query, index, depth, mask, per_doc).rows.tolist()
                 for r in self.retrievers}
        if per_doc == 1:
            return self._fuse_documents(index, lists, k)
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

    def _fuse_documents(self, index: SearchIndex, lists: dict[str, list[int]], k: int
                        ) -> Ranking:
        """Fuse document rankings (one best chunk per document in each list).

        A document's best BM25 chunk and best dense chunk can differ; fusing chunk rows would
        count such a document twice, each time half as strongly.
        """
        by_doc = {name: [int(index.chunk_doc[r]) for r in rows] for name, rows in lists.items()}
        best_row: dict[int, tuple[int, int]] = {}  # doc -> (rank, row) of its best chunk
        for rows in lists.values():
            for rank, row in enumerate(rows):
                doc = int(index.chunk_doc[row])
                if doc not in best_row or rank < best_row[doc][0]:
                    best_row[doc] = (rank, row)
        fused = reciprocal_rank_fusion(by_doc, k=self.rrf_k, weights=self.weights)[:k]
        rows = np.asarray([best_row[doc][1] for doc, _, _ in fused], dtype=np.int64)
        scores = np.asarray([score for _, score, _ in fused], dtype=np.float32)
        return Ranking(rows, scores, [ranks for _, _, ranks in fused])
