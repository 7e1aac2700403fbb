"""Retrieval: BM25, dense and hybrid (reciprocal rank fusion) search over a knowledge base."""

from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.filters import matches, parse_filter_args
from ragtune.retrieval.fusion import reciprocal_rank_fusion
from ragtune.retrieval.index import Ranking, SearchIndex
from ragtune.retrieval.retrievers import (
    FUSIONS,
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Reranker,
    Retriever,
)
from ragtune.retrieval.search import MODES, Hit, Searcher, SearchResult, search, searcher_for

__all__ = [
    "FUSIONS",
    "MODES",
    "BM25Index",
    "BM25Retriever",
    "DenseRetriever",
    "Hit",
    "HybridRetriever",
    "Ranking",
    "Reranker",
    "Retriever",
    "SearchIndex",
    "SearchResult",
    "Searcher",
    "matches",
    "parse_filter_args",
    "reciprocal_rank_fusion",
    "search",
    "searcher_for",
]
