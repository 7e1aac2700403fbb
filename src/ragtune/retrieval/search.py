"""Search a knowledge base: BM25 (the store's lexical index), dense (exact cosine) or hybrid (RRF).

    >>> result = search(kb, "how do I rotate keys", k=5, mode="hybrid")
    >>> result.hits[0].doc_id, result.degraded
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ragtune.errors import InputError, ModelError
from ragtune.kb import KnowledgeBase
from ragtune.retrieval.fusion import reciprocal_rank_fusion

Mode = Literal["bm25", "dense", "hybrid"]
MODES: tuple[str, ...] = ("bm25", "dense", "hybrid")
CANDIDATES = 100  # per-retriever depth fused by hybrid


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


class DenseIndex:
    """Exact cosine search over the store's vectors, reloaded when the store changes."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._generation = -1
        self._chunk_ids: list[str] = []
        self._doc_ids = np.zeros(0, dtype=object)
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def _refresh(self) -> None:
        generation = self.kb.store.stats().generation
        if generation != self._generation:
            vm = self.kb.store.vector_matrix()
            self._chunk_ids, self._matrix = vm.chunk_ids, vm.matrix
            self._doc_ids = np.array(vm.doc_ids, dtype=object)
            self._generation = vm.generation

    def search(
        self, query: str, k: int, groups: Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """Top-k chunks by cosine; with `groups`, invisible documents are masked before ranking."""
        self._refresh()
        if not self._chunk_ids:
            raise ModelError("no vectors stored in this knowledge base")
        q = self.kb.embedder.embed([query])[0]
        scores = self._matrix @ q
        if groups is not None:
            visible = self.kb.store.visible_documents(groups)
            mask = np.fromiter((d in visible for d in self._doc_ids), bool, len(self._doc_ids))
            scores = np.where(mask, scores, -np.inf)
            k = min(k, int(mask.sum()))
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._chunk_ids[i], float(scores[i])) for i in top]


def search(
    kb: KnowledgeBase,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    groups: Iterable[str] | None = None,
    dense_index: DenseIndex | None = None,
) -> SearchResult:
    """Search `kb` for `query`; `groups=None` is an unrestricted local caller."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not query.strip():
        raise InputError("query is empty")
    if k <= 0:
        raise InputError(f"k must be > 0, got {k}")
    timings: dict[str, float] = {}
    degraded: str | None = None
    rankings: dict[str, list[str]] = {}
    scores: dict[str, float] = {}
    depth = max(k, CANDIDATES) if mode == "hybrid" else k

    if mode in ("bm25", "hybrid"):
        t = time.perf_counter()
        lex = kb.store.lexical_search(query, depth, groups=groups)
        rankings["bm25"] = lex.chunk_ids
        if mode == "bm25":
            scores = dict(zip(lex.chunk_ids, lex.scores, strict=True))
        timings["bm25"] = (time.perf_counter() - t) * 1000
    if mode in ("dense", "hybrid"):
        t = time.perf_counter()
        try:
            index = dense_index or DenseIndex(kb)
            dense = index.search(query, depth, groups)
            rankings["dense"] = [cid for cid, _ in dense]
            if mode == "dense":
                scores = dict(dense)
        except ModelError as exc:
            if mode == "dense":
                raise
            degraded = f"dense search unavailable ({exc}); results are BM25 only"
        timings["dense"] = (time.perf_counter() - t) * 1000

    if mode == "hybrid":
        fused = reciprocal_rank_fusion(rankings)
        ordered = [(cid, score, ranks) for cid, score, ranks in fused[:k]]
    else:
        ids = rankings[mode][:k]
        ordered = [(cid, scores[cid], {mode: i + 1}) for i, cid in enumerate(ids)]
    chunks = {c.id: c for c in kb.store.get_chunks([cid for cid, _, _ in ordered])}
    hits = []
    for cid, score, ranks in ordered:
        chunk = chunks.get(cid)
        if chunk is None:
            continue
        hits.append(
            Hit(
                rank=len(hits) + 1, score=float(score), doc_id=chunk.doc_id, chunk_id=cid,
                text=chunk.text, ranks=ranks,
                metadata={"title": chunk.title, "heading": chunk.heading, "page": chunk.page,
                          "start": chunk.start, "end": chunk.end, "version": chunk.version},
            )
        )
    return SearchResult(mode, hits, degraded, timings)
