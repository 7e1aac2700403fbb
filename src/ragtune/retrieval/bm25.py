"""An in-memory BM25 index over the store's per-chunk term frequencies.

Scores are Lucene's BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 * (1 - b +
b * dl / avgdl)) without the constant (k1 + 1) factor, as Lucene 8+ and bm25s compute it;
k1 = 1.5, b = 0.75 by default). The per-term weights of every chunk are precomputed into a
sparse term × chunk matrix (CSR), so a query gathers a few rows and sums them with one
`np.bincount`: no Python loop over chunks.
The index is rebuilt from the store's stored terms (no re-tokenization) whenever the store changes.

    >>> index = BM25Index.build([{"cat": 1}, {"dog": 2, "cat": 1}])
    >>> index.scores(["dog"]).round(3)
    array([0.   , 0.341], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse


class BM25Index:
    """Precomputed BM25 weights; `scores(terms)` gives one score per chunk."""

    def __init__(self, vocabulary: dict[str, int], weights: sparse.csr_matrix, n_docs: int
                 ) -> None:
        self.vocabulary = vocabulary
        self.weights = weights  # (n_terms, n_chunks), float32
        self.n_docs = n_docs

    @classmethod
    def build(
        cls, term_frequencies: Sequence[Mapping[str, int]], k1: float = 1.5, b: float = 0.75
    ) -> BM25Index:
        """Index chunks given as term → frequency maps (row i = chunk i)."""
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        lengths = np.zeros(len(term_frequencies), dtype=np.float32)
        for col, freqs in enumerate(term_frequencies):
            lengths[col] = sum(freqs.values())
            for term, tf in freqs.items():
                rows.append(vocabulary.setdefault(term, len(vocabulary)))
                cols.append(col)
                tfs.append(tf)
        n = len(term_frequencies)
        if not rows:
            return cls(vocabulary, sparse.csr_matrix((0, n), dtype=np.float32), n)
        row_idx = np.asarray(rows, dtype=np.int64)
        col_idx = np.asarray(cols, dtype=np.int64)
        tf_values = np.asarray(tfs, dtype=np.float32)
        df = np.bincount(row_idx, minlength=len(vocabulary)).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        avg_len = float(lengths.mean()) or 1.0
        norm = k1 * (1.0 - b + b * lengths[col_idx] / avg_len)
        values = idf[row_idx] * tf_values / (tf_values + norm)
        weights = sparse.csr_matrix(
            (values.astype(np.float32), (row_idx, col_idx)), shape=(len(vocabulary), n)
        )
        return cls(vocabulary, weights, n)

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for the query terms (a repeated term counts once per use)."""
        ids = [self.vocabulary[t] for t in query_terms if t in self.vocabulary]
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        w = self.weights
        if len(ids) == 1:
            spans = [slice(w.indptr[ids[0]], w.indptr[ids[0] + 1])]
        else:
            spans = [slice(w.indptr[i], w.indptr[i + 1]) for i in ids]
        cols = np.concatenate([w.indices[s] for s in spans])
        vals = np.concatenate([w.data[s] for s in spans])
        return np.bincount(cols, weights=vals, minlength=self.n_docs).astype(np.float32)
