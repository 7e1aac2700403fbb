"""Reciprocal rank fusion (Cormack et al. 2009): score(d) = sum_i w_i / (k + rank_i(d))."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

Item = TypeVar("Item", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Item]],
    k: float = 60.0,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[Item, float, dict[str, int]]]:
    """Fuse ranked id lists; returns (id, fused score, {ranker: 1-based rank}) best first.

    Ties are broken by the best single rank, then by id, so the result is deterministic.

    >>> reciprocal_rank_fusion({"bm25": ["a", "b"], "dense": ["b", "c"]})[0][0]
    'b'
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores: dict[Item, float] = {}
    ranks: dict[Item, dict[str, int]] = {}
    for name, ids in rankings.items():
        weight = 1.0 if weights is None else float(weights.get(name, 1.0))
        for position, item in enumerate(ids, start=1):
            if name in ranks.get(item, {}):
                continue  # a ranker listing an id twice counts it once, at its best rank
            scores[item] = scores.get(item, 0.0) + weight / (k + position)
            ranks.setdefault(item, {})[name] = position
    return sorted(
        ((item, score, ranks[item]) for item, score in scores.items()),
        key=lambda t: (-t[1], min(t[2].values()), str(t[0])),
    )
