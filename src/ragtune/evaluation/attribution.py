"""Failure attribution: one primary cause per failed case, from a fixed list, with its evidence.

The causes, in the order they are tested (the first that holds is the primary cause):

- missed refusal: the question is unanswerable and an answer was given → add refusal training
- format violation: the case has a JSON schema the answer does not satisfy → fine-tune behaviour
- knowledge gap: (architectures without retrieval) an answerable question answered wrong or
  refused → add retrieval
- chunking split: the answer occurs in a gold document only across a chunk boundary → fix
  chunking
- retrieval miss: no gold passage in the top 50 retrieved → fix retrieval
- ranking miss: a gold passage in the top 50, but none in the prompt → rerank
- false refusal: a gold passage in the prompt, and the answer was refused → add refusal training
  (but a draft refused as *unsupported* by the passages is unfaithful: the model answered)
- unfaithful: the answer's claims are not supported by the context → fine-tune behaviour
- context ignored: a gold passage in the prompt, the answer supported by the context but wrong
  → fine-tune behaviour

A correct answer can still fail as *unfaithful* (faithfulness below the threshold: it may be
right, but the context does not show it). A gold passage is a chunk of a gold document that
contains a reference answer (any chunk of a gold document when none contains one verbatim);
without gold documents, a retrieved chunk that contains a reference answer.

    >>> attribute(CaseEvidence(answerable=False, refused=False)).cause
    'missed refusal'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

CAUSES: tuple[str, ...] = (
    "missed refusal", "format violation", "knowledge gap", "chunking split", "retrieval miss",
    "ranking miss", "false refusal", "unfaithful", "context ignored",
)
REMEDIES: dict[str, str] = {
    "missed refusal": "add refusal training",
    "format violation": "fine-tune behaviour",
    "knowledge gap": "add retrieval",
    "chunking split": "fix chunking",
    "retrieval miss": "fix retrieval",
    "ranking miss": "rerank",
    "false refusal": "add refusal training",
    "unfaithful": "fine-tune behaviour",
    "context ignored": "fine-tune behaviour",
}
ADVICE: dict[str, str] = {
    "add refusal training": "calibrate the refusal thresholds (`ragtune calibrate`) and train "
                            "refusals on unanswerable examples (RAFT with withheld oracles)",
    "fine-tune behaviour": "train the behaviour (a RAFT-style adapter that answers from and "
                           "cites the passages; constrained decoding for output formats)",
    "add retrieval": "the model lacks the knowledge: give it the documents (RAG or hybrid)",
    "fix chunking": "larger chunks or more overlap, so an answer is not cut in two",
    "fix retrieval": "hybrid search, a better embedder, query rewriting, or missing documents",
    "rerank": "a reranker or a larger k, so the gold passage reaches the prompt",
}
DEEP_K = 50  # "retrieval miss" looks this deep


@dataclass(frozen=True)
class CaseEvidence:
    """What was measured about one answered case (what attribution decides on)."""

    answerable: bool
    refused: bool
    correct: bool | None = None  # answerable and answered: right? (None otherwise)
    retrieves: bool = True  # the architecture puts retrieved passages in the prompt
    gold_rank: int | None = None  # 1-based rank of the first gold passage in the top 50
    gold_in_prompt: bool = False
    split_answer: bool = False  # the answer is in a gold document only across a chunk boundary
    faithfulness: float | None = None
    schema_error: str | None = None  # the first JSON-schema violation, when there is one
    refusal_reason: str | None = None  # why it was refused ("unsupported": the draft's claims)


@dataclass(frozen=True)
class Attribution:
    cause: str
    remedy: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def attribute(ev: CaseEvidence, min_faithfulness: float = 0.5) -> Attribution | None:
    """The primary cause of a failed case, or None when the case passed."""
    unfaithful = (not ev.refused and ev.faithfulness is not None
                  and ev.faithfulness < min_faithfulness)
    if not ev.answerable:
        if not ev.refused:
            return _cause("missed refusal", "the question is unanswerable, but it was answered")
        return None
    if ev.schema_error is not None and not ev.refused:
        return _cause("format violation", ev.schema_error)
    if ev.refused or not ev.correct:
        return _wrong_answer(ev, unfaithful)
    if unfaithful:
        return _cause("unfaithful", f"correct, but faithfulness {ev.faithfulness:.2f}: the "
                      "passages do not support the answer's claims")
    return None


def _cause(name: str, evidence: str) -> Attribution:
    return Attribution(name, REMEDIES[name], evidence)


def _wrong_answer(ev: CaseEvidence, unfaithful: bool) -> Attribution:
    """Why an answerable question was answered wrong or refused: the first stage that failed,
    from the knowledge the architecture has to the answer it wrote."""
    if not ev.retrieves:
        return _cause("knowledge gap", "no retrieved passages in the prompt; the answer was "
                      + ("refused" if ev.refused else "wrong"))
    if ev.split_answer:
        return _cause("chunking split", "the answer occurs in a gold document only across "
                      "a chunk boundary")
    if ev.gold_rank is None:
        return _cause("retrieval miss", f"no gold passage in the top {DEEP_K}")
    if not ev.gold_in_prompt:
        return _cause("ranking miss", f"first gold passage at rank {ev.gold_rank}, "
                      "not in the prompt")
    if ev.refused and ev.refusal_reason == "unsupported":
        # the model did answer, unfaithfully; the support check refused the draft: the
        # remedy is the model's behaviour, not refusal training
        return _cause("unfaithful", f"gold passage in the prompt (rank {ev.gold_rank}); "
                      "the draft's claims are not supported by the passages, so it was "
                      "refused (unsupported)")
    if ev.refused:
        return _cause("false refusal", f"gold passage in the prompt (rank {ev.gold_rank}), "
                      "answer refused")
    if unfaithful:
        return _cause("unfaithful", f"faithfulness {ev.faithfulness:.2f}: the answer's "
                      "claims are not supported by the passages")
    return _cause("context ignored", f"gold passage in the prompt (rank {ev.gold_rank}), "
                  "answer wrong")


def summarize(attributions: Iterable[Attribution | None]) -> dict[str, Any]:
    """Counts per cause (every cause listed, zeros included) and per remedy, most frequent
    first, with the advice for each remedy that occurred."""
    found = [a for a in attributions if a is not None]
    causes = Counter(a.cause for a in found)
    remedies = Counter(a.remedy for a in found)
    return {
        "failure_causes": {c: causes.get(c, 0) for c in CAUSES},
        "remedies": [{"remedy": r, "cases": n, "advice": ADVICE[r]}
                     for r, n in remedies.most_common()],
    }
