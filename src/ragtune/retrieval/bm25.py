"""An in-memory BM25 index over the store's per-chunk term frequencies.

Scores are Lucene's BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 * (1 - b +
b * dl / avgdl)) without the constant (k1 + 1) factor, as Lucene 8+ and bm25s compute it;
k1 = 1.5, b = 0.75 by default). Term frequencies are kept as a sparse term × chunk matrix
(CSR), so a query gathers its terms' rows and sums them with one `np.bincount`: no Python loop
over chunks.

The collection statistics (N, each term's df, avgdl) are those of the caller's view: an index
`restricted` to the chunks a caller may read scores as if the others did not exist, so no
tenant learns from a score which words another tenant's documents hold. The unrestricted
index scores from weights precomputed per (term, chunk); a restricted one shares the matrices
and computes its terms' weights per query with its own statistics (a few vector operations over
the query terms' postings); it costs one boolean per chunk and two numbers.
The index is rebuilt from the store's stored terms (no re-tokenization) whenever the store changes.

    >>> index = BM25Index.build([{"cat": 1}, {"dog": 2, "cat": 1}])
    >>> index.scores(["dog"]).round(3)
    array([0.   , 0.341], dtype=float32)
    >>> index.restricted(np.array([False, True])).scores(["dog"]).round(3)
    array([0.   , 0.164], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse


class BM25Index:
    """Term frequencies and chunk lengths; `scores(terms)` gives one score per chunk, with
    the statistics of the chunks in `visible` (all of them when None)."""

    def __init__(self, vocabulary: dict[str, int], tf: sparse.csr_matrix, lengths: np.ndarray,
                 k1: float = 1.5, b: float = 0.75, visible: np.ndarray | None = None,
                 weights: np.ndarray | None = None) -> None:
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
        # the unrestricted weights of every (term, chunk), aligned with tf.data
        self.weights = weights if weights is not None or visible is not None else (
            self._weights(np.arange(tf.shape[0]).repeat(np.diff(tf.indptr)), tf.indices,
                          tf.data, np.diff(tf.indptr).astype(np.float32)))

    def _weights(self, term_of: np.ndarray, cols: np.ndarray, tf: np.ndarray, df: np.ndarray
                 ) -> np.ndarray:
        """BM25 weights of postings (`term_of[i]`'s entry in chunk `cols[i]`), with the
        document frequencies `df` (per term) and this index's N and avgdl (float32 throughout,
        so a restricted index scores exactly as one built over its visible chunks)."""
        n = np.float32(self.n_visible)
        idf = np.log1p((n - df + np.float32(0.5)) / (df + np.float32(0.5)))
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths[cols] / self.avg_len)
        return idf[term_of] * tf / (tf + norm)

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
                         np.asarray(visible, dtype=bool), weights=self.weights)

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for the query terms (a repeated term counts once per use)."""
        ids = [self.vocabulary[t] for t in query_terms if t in self.vocabulary]
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        w = self.tf
        spans = [slice(w.indptr[i], w.indptr[i + 1]) for i in ids]
        cols = np.concatenate([w.indices[s] for s in spans])
        if self.visible is None:
            assert self.weights is not None
            vals = np.concatenate([self.weights[s] for s in spans])
        else:  # this view's own statistics for these terms
            sizes = np.fromiter((s.stop - s.start for s in spans), np.int64, len(spans))
            term_of = np.repeat(np.arange(len(spans)), sizes)
            seen = self.visible[cols]
            df = np.bincount(term_of, weights=seen, minlength=len(spans)).astype(np.float32)
            tf = np.concatenate([w.data[s] for s in spans])
            vals = self._weights(term_of, cols, tf, df)
            cols, vals = cols[seen], vals[seen]  # unseen chunks are masked by the caller anyway
        return np.bincount(cols, weights=vals, minlength=self.n_docs).astype(np.float32)
