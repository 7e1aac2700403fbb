"""SearchIndex selection logic against naive implementations (property tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune.retrieval import SearchIndex
from ragtune.store import IndexSnapshot


def make_index(doc_of_chunk: list[int]) -> SearchIndex:
    n = len(doc_of_chunk)
    docs = sorted({f"d{d}" for d in doc_of_chunk})
    return SearchIndex(IndexSnapshot(
        chunk_ids=[f"c{i}" for i in range(n)],
        doc_ids=[f"d{d}" for d in doc_of_chunk],
        matrix=np.zeros((n, 2), dtype=np.float32),
        has_vector=np.ones(n, dtype=bool),
        terms=[{"t": 1}] * n,
        untermed_texts=[None] * n,
        documents={d: ((), {}) for d in docs},
        generation=1,
        document_terms={d: {"t": 1} for d in docs},
    ))


chunks_and_scores = st.lists(
    st.tuples(st.integers(0, 6), st.one_of(st.floats(-5, 5, width=32), st.just(-np.inf))),
    min_size=1, max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(chunks_and_scores, st.integers(1, 10))
def test_top_documents_matches_naive(pairs: list[tuple[int, float]], k: int) -> None:
    index = make_index([d for d, _ in pairs])
    # rows are reordered by document inside the index: map scores through chunk ids
    by_id = {f"c{i}": s for i, (_, s) in enumerate(pairs)}
    chunk_scores = np.array([by_id[c] for c in index.chunk_ids], dtype=np.float32)
    doc_scores = index.segment_max(chunk_scores)
    ranking = index.top_documents(doc_scores, chunk_scores, k)
    finite = [s for s in doc_scores.tolist() if np.isfinite(s)]
    assert len(ranking.rows) == min(k, len(finite))
    assert ranking.scores.tolist() == sorted(ranking.scores.tolist(), reverse=True)
    docs = [index.chunk_doc[r] for r in ranking.rows]
    assert len(set(docs)) == len(docs)  # one hit per document
    for row, score in zip(ranking.rows, ranking.scores, strict=True):
        seg = [r for r in range(len(index)) if index.chunk_doc[r] == index.chunk_doc[row]]
        best = max(chunk_scores[r] for r in seg)
        assert chunk_scores[row] == best and score == best
        assert row == min(r for r in seg if chunk_scores[r] == best)  # first on ties


@settings(max_examples=100, deadline=None)
@given(chunks_and_scores, st.integers(1, 8), st.integers(1, 3))
def test_top_with_per_doc_cap_matches_naive(pairs: list[tuple[int, float]], k: int,
                                            cap: int) -> None:
    index = make_index([d for d, _ in pairs])
    by_id = {f"c{i}": s for i, (_, s) in enumerate(pairs)}
    scores = np.array([by_id[c] for c in index.chunk_ids], dtype=np.float32)
    ranking = index.top(scores, k, per_doc=cap)
    expected, per = [], {}
    for row in sorted(range(len(index)), key=lambda r: (-scores[r], r)):
        doc = index.chunk_doc[row]
        if np.isfinite(scores[row]) and per.get(doc, 0) < cap and len(expected) < k:
            expected.append(float(scores[row]))
            per[doc] = per.get(doc, 0) + 1
    assert ranking.scores.tolist() == expected
