"""Answer-level metrics: small pure functions, each tested against hand-worked examples.

Retrieval metrics (recall@k, MRR@10, nDCG@10) live in `ragtune.evaluation.ir` (shared with
`ragtune bench beir`), exact match / token F1 in `ragtune.text` and
`contains_answer` in `ragtune.text`; all are re-exported here so that one import gives every
metric.

    >>> faithfulness([True, True, False])
    0.6666...
    >>> citation_precision_recall(["a", "b"], {"a", "c"})
    (0.5, 0.5)
    >>> cost_per_1k(prompt_tokens=900, output_tokens=20, seconds=2.0,
    ...             price=Price(input_per_million=0.15, output_per_million=0.6))
    0.147
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.answering.schema import schema_errors
from ragtune.answering.verify import split_claims
from ragtune.evaluation.ir import mrr_at_k, ndcg_at_k, percentile, recall_at_k
from ragtune.text import contains_answer, exact_match, token_f1

__all__ = [
    "Price",
    "answer_relevance",
    "auroc",
    "citation_precision_recall",
    "contains_answer",
    "cost_per_1k",
    "exact_match",
    "faithfulness",
    "latency_summary",
    "mean",
    "mrr_at_k",
    "ndcg_at_k",
    "percentile",
    "recall_at_k",
    "refusal_correct",
    "schema_errors",
    "semantic_similarity",
    "split_claims",
    "token_f1",
]

def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def faithfulness(supported: Sequence[bool]) -> float | None:
    """Share of an answer's claims that the context supports (None for an answer with none)."""
    return sum(supported) / len(supported) if supported else None


def semantic_similarity(answer: np.ndarray, references: np.ndarray) -> float:
    """Best cosine similarity of a (unit-normalized) answer vector to any reference vector."""
    if references.size == 0:
        return 0.0
    return float(np.max(np.atleast_2d(references) @ answer))


def answer_relevance(question: np.ndarray, answer: np.ndarray) -> float:
    """Cosine similarity of (unit-normalized) question and answer vectors: does the answer
    address the question? (RAGAS compares the question with questions an LLM writes back from
    the answer; offline, the bundled embedder compares them directly.)"""
    return float(np.dot(question, answer))


def citation_precision_recall(cited: Sequence[str], relevant: set[str]
                              ) -> tuple[float | None, float | None]:
    """Precision = share of cited ids that are relevant; recall = share of relevant ids cited.
    None where the denominator is empty (nothing cited; nothing relevant)."""
    unique = list(dict.fromkeys(cited))
    hit = sum(1 for c in unique if c in relevant)
    precision = hit / len(unique) if unique else None
    recall = len(relevant & set(unique)) / len(relevant) if relevant else None
    return precision, recall


def refusal_correct(refused: bool, answerable: bool) -> bool:
    """Refused if and only if the question is unanswerable."""
    return refused != answerable


def latency_summary(milliseconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean of per-query latencies."""
    return {"p50": percentile(milliseconds, 50), "p95": percentile(milliseconds, 95),
            "mean": sum(milliseconds) / len(milliseconds) if milliseconds else 0.0}


@dataclass(frozen=True)
class Price:
    """What a model costs: per million input (prompt) and output tokens, and per hour of
    wall-clock compute (for a self-hosted model: the machine's price)."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    per_hour: float = 0.0


def cost_per_1k(prompt_tokens: float, output_tokens: float, seconds: float, price: Price
                ) -> float:
    """Cost of 1,000 queries with these mean tokens and seconds per query."""
    one = (prompt_tokens * price.input_per_million / 1e6
           + output_tokens * price.output_per_million / 1e6
           + seconds * price.per_hour / 3600)
    return round(1000 * one, 6)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half (the Mann–Whitney statistic)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    order = np.argsort(np.array(list(pos) + list(neg)), kind="mergesort")
    values = np.array(list(pos) + list(neg))[order]
    ranks = np.empty(len(values))
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    rank_of = np.empty(len(values))
    rank_of[order] = ranks
    pos_ranks = rank_of[:len(pos)].sum()
    return float((pos_ranks - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
