"""An in-memory BM25 index over the store's per-chunk term frequencies.

Scores are Lucene's BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 * (1 - b +
b * dl / avgdl)) without the constant (k1 + 1) factor, as Lucene 8+ and bm25s compute it;
k1 = 1.5, b = 0.75 by default). Term frequencies are kept as a sparse term × chunk matrix
(CSR), so a query gathers its terms' rows and sums them with one `np.bincount`: no Python loop
over chunks.

The collection statistics (N, each term's df, avgdl) are those of the caller's view: an index
`restricted` to the chunks a caller may read scores as if the others did not exist, so no
tenant learns from a score which words another tenant's documents hold. A restricted index
shares the matrix; it costs one boolean per chunk and two numbers.
The index is rebuilt from the store's stored terms (no re-tokenization) whenever the store changes.

    >>> index = BM25Index.build([{"cat": 1}, {"dog": 2, "cat": 1}])
    >>> index.scores(["dog"]).round(3)
    array([0.   , 0.341], dtype=float32)
    >>> index.restricted(np.array([False, True])).scores(["dog"]).round(3)
    array([0.   , 0.118], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse


class BM25Index:
    """Term frequencies and chunk lengths; `scores(terms)` gives one score per chunk, with
    the statistics of the chunks in `visible` (all of them when None)."""

    def __init__(self, vocabulary: dict[str, int], tf: sparse.csr_matrix, lengths: np.ndarray,
                 k1: float = 1.5, b: float = 0.75, visible: np.ndarray | None = None) -> None:
        self.vocabulary = vocabulary
        self.tf = tf  # (n_terms, n_chunks), float32
        self.lengths = lengths  # tokens per chunk, float32
        self.k1, self.b = k1, b
        self.visible = visible
        self.n_docs = len(lengths)  # scores have one entry per chunk, visible or not
        seen = lengths if visible is None else lengths[visible]
        self.n_visible = len(seen)
        self.avg_len = float(seen.mean()) if len(seen) else 1.0
        self.avg_len = self.avg_len or 1.0

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
        tf_matrix = sparse.csr_matrix(
            (np.asarray(tfs, dtype=np.float32),
             (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(len(vocabulary), n))
        tf_matrix.sort_indices()
        return cls(vocabulary, tf_matrix, lengths, k1, b)

    def restricted(self, visible: np.ndarray) -> BM25Index:
        """The same index with the statistics of the chunks in `visible` only (the others
        still get a score entry, computed with those statistics; callers mask them out)."""
        return BM25Index(self.vocabulary, self.tf, self.lengths, self.k1, self.b,
                         np.asarray(visible, dtype=bool))

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for the query terms (a repeated term counts once per use)."""
        ids = [self.vocabulary[t] for t in query_terms if t in self.vocabulary]
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        w = self.tf
        n = np.float32(self.n_visible)
        all_cols, all_vals = [], []
        for i in ids:
            span = slice(w.indptr[i], w.indptr[i + 1])
            cols, tf = w.indices[span], w.data[span]
            df = np.float32(len(cols) if self.visible is None else
                            np.count_nonzero(self.visible[cols]))
            if df == 0:
                continue  # in no visible chunk: the term does not exist for this caller
            idf = np.log1p((n - df + np.float32(0.5)) / (df + np.float32(0.5)))
            norm = self.k1 * (1.0 - self.b + self.b * self.lengths[cols] / self.avg_len)
            all_cols.append(cols)
            all_vals.append(idf * tf / (tf + norm))
        if not all_cols:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.bincount(np.concatenate(all_cols), weights=np.concatenate(all_vals),
                           minlength=self.n_docs).astype(np.float32)
