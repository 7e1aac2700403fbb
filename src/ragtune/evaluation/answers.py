"""Answer correctness as SQuAD scores it: normalized exact match and token F1.

Normalization (the official SQuAD script's, `ragtune.text.normalize_answer`): lower case, drop
punctuation, drop the articles a/an/the, collapse whitespace. With several references the best
score counts.

    >>> exact_match("The Eiffel Tower!", ["eiffel tower"])
    1.0
    >>> round(token_f1("in Paris, France", ["Paris"]), 3)
    0.5
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ragtune.text import normalize_answer

__all__ = ["exact_match", "normalize_answer", "token_f1"]


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals a normalized reference."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """The best token-overlap F1 against any reference (0.0 with no references)."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for ref in references:
        gold = normalize_answer(ref).split()
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
