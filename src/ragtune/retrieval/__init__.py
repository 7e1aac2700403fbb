"""Retrieval: BM25, dense and hybrid (reciprocal rank fusion) search over a knowledge base."""

from ragtune.retrieval.fusion import reciprocal_rank_fusion
from ragtune.retrieval.search import MODES, DenseIndex, Hit, SearchResult, search

__all__ = ["MODES", "DenseIndex", "Hit", "SearchResult", "reciprocal_rank_fusion", "search"]
