"""Verification before return: every claim of an answer is judged against the passages it cites
(an answer that cites none: against every passage of its prompt) before the caller sees it.

    >>> verifier = Verifier(OfflineJudge(kb.embedder))
    >>> check = verifier.verify("How fast is a Sev1 page acknowledged?",
    ...                         "Within 5 minutes [1].", [(1, chunk)])
    >>> check.verified, check.claims[0].start, check.claims[0].sentence
    (True, 112, 'The on-call engineer must acknowledge a Sev1 page within 5 minutes.')

A claim is one sentence of the answer (`split_claims`). Each verified claim carries its evidence:
the passage, document, chunk and version it rests on and the character offsets of the supporting
sentence in that version of the document (`document.text[start:end] == sentence`), with the
judge's score. An answer is verified when every claim's score reaches the threshold; which
threshold, in this order: the one `ragtune calibrate` stored for the knowledge base, judge and
generator (`VERIFY_META_KEY`, chosen for a target share of wrong answers), `answer.
verify_threshold`, the judge's own (fitted on SQuAD 2.0, `bench/judge.py`).

The attribution check of `ragtune.answering.citations` (most of the answer's words, and every
figure, found in a passage) lets wrong answers made of passage words through; the judge asks
whether the place those words occur is the place the question is about.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from ragtune.answering.citations import strip_citations
from ragtune.answering.judges import Claim, Judge, LLMJudge, OfflineJudge, sentences
from ragtune.config import Settings
from ragtune.documents.records import Chunk
from ragtune.errors import InputError
from ragtune.models.embedders import Embedder
from ragtune.models.generators import get_generator
from ragtune.text import STOPWORDS_EN, words

VERIFY_META_KEY = "verify_policy"
ON_UNVERIFIED = ("refuse", "mark", "off")
"""What happens to an answer the judge cannot support: refused (`unsupported`), returned with
`verified: false`, or not judged at all (measurement only)."""

REFUSE_ALL = 1.000001
"""A threshold no judge score reaches (scores are in [0, 1]): every answer is refused."""

_CLAIM_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(])|\n+")


def split_claims(answer: str) -> list[str]:
    """An answer's sentence-level claims, citation markers removed. A short phrase is one
    claim; 'e.g.'-style abbreviations stay inside their sentence."""
    text = strip_citations(answer).strip()
    return [c.strip() for c in _CLAIM_END.split(text) if c and c.strip(" .")]


@dataclass(frozen=True)
class ClaimCheck:
    """One claim of an answer, its judge's score, and the sentence it rests on: `start`/`end`
    are offsets in version `version` of document `doc_id` (None when no sentence supports
    it)."""

    text: str
    score: float
    supported: bool
    passage: int | None = None
    doc_id: str | None = None
    chunk_id: str | None = None
    version: int | None = None
    start: int | None = None
    end: int | None = None
    sentence: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["score"] = round(self.score, 4)
        return out


@dataclass(frozen=True)
class Verification:
    """The verdict on a whole answer: verified when it has claims and each reaches
    `threshold`."""

    judge: str
    threshold: float
    threshold_source: str
    claims: tuple[ClaimCheck, ...]
    ms: float = 0.0

    @property
    def verified(self) -> bool:
        return bool(self.claims) and all(c.supported for c in self.claims)

    @property
    def score(self) -> float:
        """The weakest claim's score (0.0 for an answer with no claim): what the threshold is
        applied to, and what `ragtune calibrate` ranks answers by."""
        return min((c.score for c in self.claims), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "score": round(self.score, 4), "judge": self.judge,
                "threshold": round(self.threshold, 4),
                "threshold_source": self.threshold_source,
                "claims": [c.to_dict() for c in self.claims], "ms": round(self.ms, 2)}


@dataclass(frozen=True)
class VerifyPolicy:
    """A verification threshold chosen by `ragtune calibrate` for one judge and generator."""

    threshold: float
    judge: str
    generator: str
    max_risk: float
    risk: float | None
    coverage: float
    cases: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> VerifyPolicy | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    @property
    def label(self) -> str:
        return (f"calibrated on {self.cases} cases for at most {self.max_risk:.0%} wrong "
                f"answers")


class Verifier:
    """Judges answers' claims against their passages with one judge and threshold."""

    def __init__(self, judge: Judge, threshold: float | None = None,
                 threshold_source: str | None = None) -> None:
        self.judge = judge
        self.threshold = judge.threshold if threshold is None else threshold
        self.threshold_source = threshold_source or (
            "judge default" if threshold is None else "settings")

    def verify(self, question: str, answer: str, passages: Sequence[tuple[int, Chunk]]
               ) -> Verification:
        """Judge each claim of `answer` against the chunks of `passages` ((prompt number,
        chunk) pairs) and locate the sentence each rests on."""
        started = time.perf_counter()
        claims = split_claims(answer)
        context = tuple(chunk.text for _, chunk in passages)
        checks: list[ClaimCheck] = []
        if claims and context:
            verdicts = self.judge.judge([Claim(question, c, context) for c in claims])
            for claim, verdict in zip(claims, verdicts, strict=True):
                supported = verdict.score >= self.threshold
                checks.append(_locate(claim, verdict.score, supported, verdict.evidence,
                                      passages))
        else:
            checks = [ClaimCheck(c, 0.0, False) for c in claims]
        return Verification(self.judge.name, self.threshold, self.threshold_source,
                            tuple(checks), (time.perf_counter() - started) * 1000)


def _locate(claim: str, score: float, supported: bool, evidence: str,
            passages: Sequence[tuple[int, Chunk]]) -> ClaimCheck:
    """The claim's check with the document offsets of its evidence sentence: the judge's own
    sentence where it names one found in a passage (the offline judge), else the passage
    sentence sharing most content words with the claim (an LLM judge replies yes or no)."""
    found = _find(evidence, passages) if evidence else None
    if found is None:
        found = _closest(claim, passages)
    if found is None:
        return ClaimCheck(claim, score, supported)
    number, chunk, offset, sentence = found
    start = chunk.start + offset
    return ClaimCheck(claim, score, supported, number, chunk.doc_id, chunk.id, chunk.version,
                      start, start + len(sentence), sentence)


def _find(sentence: str, passages: Sequence[tuple[int, Chunk]]
          ) -> tuple[int, Chunk, int, str] | None:
    for number, chunk in passages:
        at = chunk.text.find(sentence)
        if at >= 0:
            return number, chunk, at, sentence
    return None


def _closest(claim: str, passages: Sequence[tuple[int, Chunk]]
             ) -> tuple[int, Chunk, int, str] | None:
    wanted = {w for w in words(claim) if w not in STOPWORDS_EN}
    best, best_overlap = None, 0
    for number, chunk in passages:
        for sentence in sentences(chunk.text):
            overlap = len(wanted & set(words(sentence)))
            if overlap > best_overlap:
                best, best_overlap = (number, chunk, sentence), overlap
    if best is None:
        return None
    number, chunk, sentence = best
    return number, chunk, chunk.text.find(sentence), sentence


@lru_cache(maxsize=8)
def offline_judge(embedder: Embedder) -> OfflineJudge:
    """One offline judge per embedder and process, so that its sentence vectors are reused
    across answers (a service builds an `Answerer` per request)."""
    return OfflineJudge(embedder)


def judge_for(settings: Settings, embedder: Embedder) -> Judge:
    """The judge `[eval] judge` names: the offline judge, or an LLM judge on a generator."""
    s = settings.eval
    if s.judge == "offline":
        return offline_judge(embedder)  # type: ignore[arg-type]  # hashed by identity
    if s.judge.startswith(("openai:", "local:")):
        g = settings.generator
        return LLMJudge(get_generator(s.judge, settings.cache_dir, g.dtype, None, g.batch_size,
                                      s.judge_base_url, s.judge_api_key_env, g.timeout_s,
                                      g.max_retries))
    raise InputError(f"eval.judge must be 'offline', 'openai:MODEL' or 'local:...', "
                     f"got {s.judge!r}")


def verifier_for(settings: Settings, embedder: Embedder, stored: VerifyPolicy | None,
                 generator: str) -> Verifier:
    """The verifier for answers of `generator`: the configured judge with the threshold
    `ragtune calibrate` stored for this judge and generator, else `answer.verify_threshold`,
    else the judge's own."""
    judge = judge_for(settings, embedder)
    if stored is not None and stored.judge == judge.name and stored.generator == generator:
        return Verifier(judge, stored.threshold, stored.label)
    return Verifier(judge, settings.answer.verify_threshold)


@dataclass(frozen=True)
class RiskPoint:
    """One threshold of a risk–coverage curve: `coverage` = answered / all cases, `risk` =
    wrong / answered (None when nothing is answered)."""

    threshold: float
    coverage: float
    risk: float | None
    answered: int
    wrong: int


def risk_coverage(scores: Sequence[float | None], wrong: Sequence[bool]) -> list[RiskPoint]:
    """The risk–coverage curve of a verifier: one point per distinct score, from the lowest
    threshold (every answer the verifier saw is returned) up to one that returns none. A case
    with score None was refused before verification (never answered)."""
    total = len(scores)
    judged = sorted((s, w) for s, w in zip(scores, wrong, strict=True) if s is not None)
    points = []
    for t in sorted({s for s, _ in judged}):
        kept = [w for s, w in judged if s >= t]
        points.append(RiskPoint(t, len(kept) / total if total else 0.0,
                                sum(kept) / len(kept), len(kept), sum(kept)))
    points.append(RiskPoint(REFUSE_ALL, 0.0, None, 0, 0))
    return points


def choose_threshold(points: Sequence[RiskPoint], max_risk: float) -> RiskPoint:
    """The lowest threshold whose risk is at most `max_risk` (the most coverage that risk
    allows); the point that answers nothing when none does."""
    if not 0 <= max_risk < 1:
        raise InputError(f"max_risk must be in [0, 1), got {max_risk}")
    for point in points:
        if point.risk is not None and point.risk <= max_risk + 1e-12:
            return point
    return points[-1]
