"""BM25 scores against a reference implementation (bm25s, Lucene variant) and hand-worked values."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune.documents.terms import analyze, term_frequencies
from ragtune.retrieval import BM25Index


def test_hand_worked_example() -> None:
    index = BM25Index.build([{"cat": 1}, {"dog": 2, "cat": 1}], k1=1.5, b=0.75)
    # dog: N=2, df=1 -> idf = ln(1 + 1.5/1.5) = ln 2; doc 2 has length 3, avg length 2
    norm = 1.5 * (1 - 0.75 + 0.75 * 3 / 2)
    expected = math.log(2) * 2 / (2 + norm)
    assert index.scores(["dog"]).tolist() == pytest.approx([0.0, expected], rel=1e-6)
    assert index.scores(["unknown"]).tolist() == [0.0, 0.0]
    both = index.scores(["dog", "cat"])
    assert both[1] > both[0] > 0


def test_analyzer_stems_and_drops_stopwords() -> None:
    assert analyze("The running dogs ran to the parks") == ["run", "dog", "ran", "park"]
    assert term_frequencies("Dogs, dog; DOG!") == {"dog": 3}
    assert analyze("a I x") == []  # one-letter words and stopwords are not terms


words = st.sampled_from([f"w{i}" for i in range(25)])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(words, min_size=1, max_size=30), min_size=2, max_size=30),
    st.lists(words, min_size=1, max_size=6),
)
def test_scores_match_bm25s_lucene(corpus: list[list[str]], query: list[str]) -> None:
    import bm25s

    reference = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    reference.index(corpus, show_progress=False)
    ours = BM25Index.build([dict(_count(doc)) for doc in corpus], k1=1.5, b=0.75)
    expected = reference.get_scores(query)
    np.testing.assert_allclose(ours.scores(query), expected, rtol=1e-4, atol=1e-5)


def _count(doc: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in doc:
        out[w] = out.get(w, 0) + 1
    return out


def test_ranking_matches_bm25s_on_real_text() -> None:
    import bm25s

    rng = random.Random(3)
    vocab = "protein cell gene cancer mouse brain immune virus drug trial dose risk".split()
    docs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 40))) for _ in range(200)]
    tokens = [analyze(d) for d in docs]
    reference = bm25s.BM25(method="lucene")
    reference.index(tokens, show_progress=False)
    ours = BM25Index.build([term_frequencies(d) for d in docs])
    query = analyze("immune cell virus")
    np.testing.assert_allclose(ours.scores(query), reference.get_scores(query), rtol=1e-4)
