"""When to refuse: retrieval evidence, the model's own words, and its confidence.

An answer is replaced by the fixed refusal (`prompt.REFUSAL`, no citations) when

1. **retrieval**: the best passage's cosine similarity to the question is under
   `min_similarity` (nothing relevant was found), or
2. **model**: the model says it cannot answer ("I don't know", "not mentioned", ...), or
3. **confidence**: the mean log-probability of the answer's tokens is under `min_confidence`
   (the model is guessing), when the backend reports log-probabilities.

Both thresholds are calibrated on data with `calibrate()` (`ragtune calibrate CASES.jsonl`):
`min_similarity` lets through a stated share of answerable questions (default 97%); then
`min_confidence` is chosen to maximize balanced accuracy (answerable answered, unanswerable
refused) on the calibration cases. A knowledge base stores its calibrated policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ragtune.errors import InputError

_MODEL_REFUSAL = re.compile(
    r"\b(i don'?t know|i do not know|i'?m not sure|i cannot answer|i can'?t answer|"
    r"unable to answer|(is|are) not (mentioned|stated|provided|given|specified)|"
    r"(do|does)(n'?t| not) (contain|mention|provide|say|specify|state)|no information|"
    r"not enough information|cannot be determined|unanswerable)\b",
    re.IGNORECASE,
)


def model_refused(text: str) -> bool:
    """Whether the model's output says it cannot answer."""
    return bool(_MODEL_REFUSAL.search(text))


@dataclass(frozen=True)
class RefusalPolicy:
    """Thresholds for refusing; None disables a check.

    `min_similarity` depends on the embedder only; `min_confidence` on the generator that was
    calibrated (`generator`): log-probabilities of another model are on another scale, so
    `for_generator` drops the confidence check for any other model.
    """

    min_similarity: float | None = 0.2
    min_confidence: float | None = None
    calibrated_on: str = ""
    generator: str = ""

    def for_generator(self, name: str) -> RefusalPolicy:
        """This policy as it applies to generator `name`."""
        if self.min_confidence is None or not self.generator or self.generator == name:
            return self
        return replace(self, min_confidence=None)

    def decide(self, similarity: float | None, output: str, confidence: float | None
               ) -> str | None:
        """The reason to refuse ('no-passages', 'retrieval', 'model', 'confidence') or None."""
        reason = self.retrieval_reason(similarity)
        if reason is not None:
            return reason
        if model_refused(output) or not output.strip():
            return "model"
        if (self.min_confidence is not None and confidence is not None
                and confidence < self.min_confidence):
            return "confidence"
        return None

    def retrieval_reason(self, similarity: float | None) -> str | None:
        """The refusals known before generating: no passages, or none similar enough."""
        if similarity is None:
            return "no-passages"
        if self.min_similarity is not None and similarity < self.min_similarity:
            return "retrieval"
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RefusalPolicy:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid refusal policy {text!r}: {exc}") from exc


@dataclass(frozen=True)
class Signal:
    """What one calibration case measured."""

    answerable: bool
    similarity: float | None
    output: str
    confidence: float | None


@dataclass(frozen=True)
class Calibration:
    policy: RefusalPolicy
    cases: int
    answerable: int
    balanced_accuracy: float
    refusal_precision: float
    refusal_recall: float

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["policy"] = asdict(self.policy)
        return out


def refusal_scores(refused: Sequence[bool], answerable: Sequence[bool]) -> dict[str, float]:
    """Refusal precision/recall (refusing is the positive class) and balanced accuracy."""
    r = np.asarray(refused, dtype=bool)
    a = np.asarray(answerable, dtype=bool)
    tp = int((r & ~a).sum())
    precision = tp / int(r.sum()) if r.any() else 0.0
    recall = tp / int((~a).sum()) if (~a).any() else 0.0
    answered_ok = int((~r & a).sum()) / int(a.sum()) if a.any() else 0.0
    return {"precision": precision, "recall": recall,
            "balanced_accuracy": (recall + answered_ok) / 2}


def calibrate(signals: Sequence[Signal], keep_answerable: float = 0.97,
              label: str = "", generator: str = "") -> Calibration:
    """Choose thresholds from measured cases (see the module docstring)."""
    if not 0 < keep_answerable <= 1:
        raise InputError(f"keep_answerable must be in (0, 1], got {keep_answerable}")
    positives = [s for s in signals if s.answerable and s.similarity is not None]
    if not positives or all(s.answerable for s in signals):
        raise InputError("calibration needs answerable and unanswerable cases")
    sims = np.array([s.similarity for s in positives], dtype=float)
    min_similarity = float(np.quantile(sims, 1 - keep_answerable))
    base = RefusalPolicy(min_similarity, None, label, generator)

    def score(policy: RefusalPolicy) -> dict[str, float]:
        refused = [policy.decide(s.similarity, s.output, s.confidence) is not None
                   for s in signals]
        return refusal_scores(refused, [s.answerable for s in signals])

    best, best_scores = base, score(base)
    seen = sorted({s.confidence for s in signals if s.confidence is not None})
    # candidate thresholds halfway between neighbouring observed confidences
    for threshold in (round((a + b) / 2, 4) for a, b in zip(seen, seen[1:], strict=False)):
        candidate = RefusalPolicy(min_similarity, threshold, label, generator)
        scores = score(candidate)
        if scores["balanced_accuracy"] > best_scores["balanced_accuracy"] + 1e-9:
            best, best_scores = candidate, scores
    return Calibration(best, len(signals), len(positives), best_scores["balanced_accuracy"],
                       best_scores["precision"], best_scores["recall"])
