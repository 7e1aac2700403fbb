"""Information-retrieval metrics, computed as trec_eval / pytrec_eval compute them.

A run maps query id → {doc id: score}; qrels map query id → {doc id: graded relevance}. Documents
are ranked by score, descending, ties broken by doc id descending (trec_eval's order). A document
is relevant when its grade is > 0; nDCG uses the grade as the gain and log2(rank + 1) as the
discount. Tested against pytrec_eval.

    >>> ndcg_at_k({"d1": 1, "d2": 0}, {"d2": 2.0, "d1": 1.0}, 10)
    0.6309...
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Doc ids best first, in trec_eval's order (score desc, then doc id desc)."""
    return [d for d, _ in sorted(scores.items(), key=lambda t: (t[1], t[0]), reverse=True)]


def ndcg_at_k(rels: Mapping[str, int], scores: Mapping[str, float], k: int) -> float:
    """Normalized discounted cumulative gain of the top k."""
    gains = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal == 0:
        return 0.0
    dcg = sum(max(rels.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranked(scores)[:k]))
    return dcg / ideal


def recall_at_k(rels: Mapping[str, int], scores: Mapping[str, float], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    relevant = {d for d, g in rels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked(scores)[:k])) / len(relevant)


def mrr_at_k(rels: Mapping[str, int], scores: Mapping[str, float], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k (0 if none)."""
    for i, d in enumerate(ranked(scores)[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate_run(
    qrels: Qrels,
    run: Run,
    ndcg_ks: Sequence[int] = (10,),
    recall_ks: Sequence[int] = (100,),
    mrr_ks: Sequence[int] = (10,),
) -> dict[str, float]:
    """Mean metrics over every judged query with at least one relevant document.

    A judged query missing from the run scores 0 (pytrec_eval would silently drop it).
    """
    queries = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    totals: dict[str, float] = {}
    for q in queries:
        rels, scores = qrels[q], run.get(q, {})
        for k in ndcg_ks:
            totals[f"ndcg@{k}"] = totals.get(f"ndcg@{k}", 0.0) + ndcg_at_k(rels, scores, k)
        for k in recall_ks:
            totals[f"recall@{k}"] = totals.get(f"recall@{k}", 0.0) + recall_at_k(rels, scores, k)
        for k in mrr_ks:
            totals[f"mrr@{k}"] = totals.get(f"mrr@{k}", 0.0) + mrr_at_k(rels, scores, k)
    n = len(queries) or 1
    return {name: total / n for name, total in totals.items()}


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100) with linear interpolation, as numpy's default."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
