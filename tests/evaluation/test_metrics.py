"""Answer-level metrics against hand-worked values (and AUROC against scikit-learn)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ragtune.evaluation.metrics import (
    Price,
    answer_relevance,
    auroc,
    citation_precision_recall,
    contains_answer,
    cost_per_1k,
    faithfulness,
    latency_summary,
    mean,
    refusal_correct,
    schema_errors,
    semantic_similarity,
    split_claims,
)


def test_split_claims_by_sentence_without_citations() -> None:
    assert split_claims("Denver won [1]. The score was 24-10 [2].") == [
        "Denver won.", "The score was 24-10."]
    assert split_claims("Paris [2]") == ["Paris"]
    assert split_claims("It costs 2.5 euros, e.g. for one month.") == [
        "It costs 2.5 euros, e.g. for one month."]
    assert split_claims("First line\nSecond line") == ["First line", "Second line"]
    assert split_claims(" [1] ") == []


def test_faithfulness_is_the_share_of_supported_claims() -> None:
    assert faithfulness([True, True, False, True]) == 0.75
    assert faithfulness([False]) == 0.0
    assert faithfulness([]) is None


def test_mean_skips_missing_values() -> None:
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None


def test_semantic_similarity_is_the_best_cosine() -> None:
    answer = np.array([1.0, 0.0])
    refs = np.array([[0.0, 1.0], [0.6, 0.8]])
    assert semantic_similarity(answer, refs) == pytest.approx(0.6)
    assert semantic_similarity(answer, np.zeros((0, 2))) == 0.0


def test_answer_relevance_is_the_cosine() -> None:
    q = np.array([1.0, 0.0, 0.0])
    assert answer_relevance(q, np.array([0.8, 0.6, 0.0])) == pytest.approx(0.8)
    assert answer_relevance(q, np.array([0.0, 1.0, 0.0])) == 0.0


def test_contains_answer_normalizes_and_respects_word_bounds() -> None:
    assert contains_answer("Visit the Eiffel Tower, in Paris!", ["eiffel tower"])
    assert contains_answer("It costs $49 a month.", ["49"])
    assert not contains_answer("The catalogue is long.", ["cat"])
    assert contains_answer("Three members (ADAR1-3) are known.", ["3"])  # punctuation splits
    assert contains_answer("the U.S. Army", ["U.S."])
    assert not contains_answer("anything", [])


def test_citation_precision_and_recall() -> None:
    assert citation_precision_recall(["a", "b"], {"a", "c"}) == (0.5, 0.5)
    assert citation_precision_recall(["a", "a"], {"a"}) == (1.0, 1.0)  # duplicates count once
    assert citation_precision_recall([], {"a"}) == (None, 0.0)
    assert citation_precision_recall(["a"], set()) == (0.0, None)


def test_schema_errors() -> None:
    schema = {"type": "object", "required": ["answer"],
              "properties": {"answer": {"type": "string"},
                             "sources": {"type": "array", "items": {"type": "integer"}}}}
    assert schema_errors('{"answer": "90 days", "sources": [1]}', schema) == []
    assert schema_errors('```json\n{"answer": "x"}\n```', schema) == []
    assert schema_errors("90 days", schema)[0].startswith("not JSON")
    assert schema_errors('Sure: {"answer": "x"}', schema)[0].startswith("not JSON")
    assert schema_errors('{"sources": [1]}', schema) == [
        "(root): 'answer' is a required property"]
    assert schema_errors('{"answer": "x", "sources": ["one"]}', schema) == [
        "sources/0: 'one' is not of type 'integer'"]


def test_refusal_correct_iff_unanswerable() -> None:
    assert refusal_correct(refused=True, answerable=False)
    assert refusal_correct(refused=False, answerable=True)
    assert not refusal_correct(refused=True, answerable=True)
    assert not refusal_correct(refused=False, answerable=False)


def test_latency_summary() -> None:
    summary = latency_summary([100.0, 200.0, 300.0, 400.0, 500.0])
    assert summary == {"p50": 300.0, "p95": pytest.approx(480.0), "mean": 300.0}


def test_cost_per_1k_queries() -> None:
    hosted = Price(input_per_million=0.15, output_per_million=0.60)
    # 1,000 x (900 x 0.15 + 20 x 0.60) / 1e6
    assert cost_per_1k(900, 20, 2.0, hosted) == pytest.approx(0.147)
    machine = Price(per_hour=0.36)  # 1,000 queries x 2 s at $0.36/h = 0.2 h
    assert cost_per_1k(900, 20, 2.0, machine) == pytest.approx(0.2)
    assert cost_per_1k(900, 20, 2.0, Price()) == 0.0


def test_auroc_hand_worked_and_against_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    assert auroc([0.9, 0.8, 0.1], [True, False, False]) == 1.0
    assert auroc([0.1, 0.9], [True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    rng = random.Random(3)
    for _ in range(20):
        labels = [rng.random() < 0.4 for _ in range(60)]
        labels[0], labels[1] = True, False
        scores = [round(rng.random(), 1) for _ in range(60)]  # many ties
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auroc([0.3], [True]))
