"""IR metrics: hand-worked values, and parity with pytrec_eval on random runs with ties."""

from __future__ import annotations

import math
import random

import pytest

from ragtune.evaluation import evaluate_run, mrr_at_k, ndcg_at_k, percentile, recall_at_k


def test_hand_worked_values() -> None:
    rels = {"a": 2, "b": 1, "c": 0}
    scores = {"x": 3.0, "b": 2.0, "a": 1.0}
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(rels, scores, 10) == pytest.approx(dcg / ideal)
    assert recall_at_k(rels, scores, 2) == 0.5
    assert mrr_at_k(rels, scores, 10) == 0.5
    assert mrr_at_k(rels, scores, 1) == 0.0
    assert ndcg_at_k({"a": 0}, scores, 10) == 0.0


def test_ties_break_by_doc_id_descending_like_trec_eval() -> None:
    assert mrr_at_k({"a": 1}, {"a": 1.0, "b": 1.0}, 10) == 0.5


def test_missing_query_in_run_counts_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    result = evaluate_run(qrels, {"q1": {"a": 1.0}})
    assert result["ndcg@10"] == 0.5  # q3 has no relevant document and is not counted


def test_percentile_matches_numpy() -> None:
    import numpy as np

    values = [random.random() for _ in range(101)]
    for p in (0, 50, 95, 100):
        assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)))


@pytest.mark.parametrize("seed", range(5))
def test_parity_with_pytrec_eval(seed: int) -> None:
    import pytrec_eval

    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels = {f"q{q}": {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 8))}
             for q in range(30)}
    # coarse scores make many ties, which is where implementations drift apart
    run = {q: {d: float(rng.randint(0, 20)) for d in rng.sample(docs, 40)} for q in qrels}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"})
    reference = evaluator.evaluate(run)
    top10 = {q: {d: s for d, s in sorted(r.items(), key=lambda t: (t[1], t[0]),
                                          reverse=True)[:10]} for q, r in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    judged = [q for q, r in qrels.items() if any(g > 0 for g in r.values())]
    for q in judged:
        assert ndcg_at_k(qrels[q], run[q], 10) == pytest.approx(reference[q]["ndcg_cut_10"])
        assert recall_at_k(qrels[q], run[q], 100) == pytest.approx(reference[q]["recall_100"])
        assert mrr_at_k(qrels[q], run[q], 10) == pytest.approx(rr[q]["recip_rank"])
    ours = evaluate_run(qrels, run)
    assert ours["ndcg@10"] == pytest.approx(
        sum(reference[q]["ndcg_cut_10"] for q in judged) / len(judged))
