"""The offline judge on a labelled SQuAD 2.0 support set: AUROC and accuracy at its threshold.

    .venv/bin/python bench/judge.py [--json OUT] [--fit [--pipeline CALIB.jsonl]]
                                    [--pipeline-test TEST.jsonl]
                                    [--judge llm --base-url URL --model M]

The labelled set (`ragtune.evaluation.squad.support_set`): for each sampled answerable question,
its gold answer in its own paragraph (supported) and one unsupported claim judged against the
same paragraph — alternately a wrong answer taken from another question (of the same paragraph
when it has one: the words are in the context, but not as the answer to this question) and a
plausible entity swap (the answer's figure or name replaced by another figure or name from the
same paragraph). Every unsupported claim is thus made of words the context contains: support has
to be decided by where they occur, which is what a faithfulness judge must do.

The 16 articles are split once (seeded): 4 calibration articles, on which `--fit` fits the
judge's logistic weights and picks its threshold (printed, to be pasted into
`ragtune/answering/judges.py`), and 12 test articles on which the judge is measured (AUROC,
accuracy at the threshold, per kind of negative, claims/s). The test never sees a calibration
article. `--pipeline` adds to the fit the real pipeline's right and wrong answers on the
calibration articles (`bench/pipeline_answers.py --articles calibration`: the bundled model with
its grounded reader); `--pipeline-test` measures the judge on the pipeline's answers on the
held-out articles too. Two baselines are measured on the same test claims: token overlap (the
share of the claim's words found in the context) and an embedding-only score (the bundled
embedder's best cosine between "question claim" and a context sentence).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, log, machine, versions, write_json
from ragtune.answering.judges import (
    FEATURES,
    Claim,
    Judge,
    LLMJudge,
    OfflineJudge,
    Verdict,
    sentences,
)
from ragtune.answering.verify import split_claims
from ragtune.evaluation.metrics import auroc
from ragtune.evaluation.squad import SupportExample, article_of, load_squad, support_set
from ragtune.models.embedders import get_embedder
from ragtune.text import normalize_answer

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
SPLIT_SEED, CALIB_SEED, TEST_SEED = 5, 7, 13
CALIB_QUESTIONS, TEST_QUESTIONS = 300, 500


class TokenOverlapJudge:
    """Baseline: share of the claim's words found anywhere in the context (what simple
    "is the answer in the context" checks do)."""

    name, threshold = "baseline:token-overlap", 1.0

    def judge(self, claims: list[Claim]) -> list[Verdict]:
        out = []
        for c in claims:
            words = set(normalize_answer(c.text).split())
            found = set(normalize_answer(" ".join(c.context)).split())
            score = len(words & found) / len(words) if words else 0.0
            out.append(Verdict(score, score >= self.threshold, ""))
        return out


class EmbeddingJudge:
    """Baseline: the bundled embedder's best cosine between "question claim" and a context
    sentence (an embedding-only groundedness score)."""

    name, threshold = "baseline:embedding", 0.5

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def judge(self, claims: list[Claim]) -> list[Verdict]:
        out = []
        for c in claims:
            parts = [s for passage in c.context for s in sentences(passage)]
            sims = self.embedder.embed(parts) @ self.embedder.embed_query(
                f"{c.question} {c.text}")
            score = float(sims.max()) if len(parts) else 0.0
            out.append(Verdict(score, score >= self.threshold, ""))
        return out


def split_articles(paragraph_ids: list[str]) -> tuple[set[str], set[str]]:
    articles = sorted({article_of(p) for p in paragraph_ids})
    calib = set(random.Random(SPLIT_SEED).sample(articles, 4))
    return calib, set(articles) - calib


def claims_of(examples: list[SupportExample]) -> list[Claim]:
    return [Claim(e.question, e.claim, (e.context,)) for e in examples]


def pipeline_claims(path: Path) -> tuple[list[Claim], list[bool]]:
    """The answered questions of a `bench/pipeline_answers.py` file as claims (each answer's
    claims judged against its prompt's passages), labelled by whether the answer was right."""
    claims, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["refused"] or not row["passages"]:
            continue
        for text in split_claims(row["answer"]):
            claims.append(Claim(row["question"], text, tuple(row["passages"])))
            labels.append(bool(row["correct"]))
    return claims, labels


def fit(judge: OfflineJudge, examples: list[SupportExample],
        pipeline: tuple[list[Claim], list[bool]] | None = None) -> dict[str, Any]:
    """Logistic weights over FEATURES on the calibration support set plus, when given, the
    real pipeline's answers on the calibration articles (`--pipeline`): gold and swapped claims
    teach where an answer's words must sit; the pipeline's own right and wrong answers, what
    its mistakes look like."""
    from sklearn.linear_model import LogisticRegression

    claims, labels = claims_of(examples), [e.supported for e in examples]
    if pipeline is not None:
        claims, labels = claims + pipeline[0], labels + pipeline[1]
    evidence = [judge.evidence(c) for c in claims]
    x = np.array([e.features for e in evidence])
    y = np.array(labels)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    coverage = np.array([e.coverage for e in evidence])
    scores = coverage * model.predict_proba(x)[:, 1]
    threshold, best = 0.5, 0.0
    for t in np.unique(np.round(scores, 3)):
        pred = scores >= t
        balanced = (pred[y].mean() + (~pred[~y]).mean()) / 2
        if balanced > best:
            threshold, best = float(t), float(balanced)
    return {"features": list(FEATURES), "weights": [round(float(w), 3) for w in model.coef_[0]],
            "bias": round(float(model.intercept_[0]), 3), "threshold": threshold,
            "balanced_accuracy": round(best, 4), "examples": len(examples),
            "pipeline_answers": len(pipeline[0]) if pipeline else 0}


def measure(judge: Judge, examples: list[SupportExample]) -> dict[str, Any]:
    started = time.perf_counter()
    verdicts = judge.judge(claims_of(examples))
    seconds = time.perf_counter() - started
    y = np.array([e.supported for e in examples])
    scores = np.array([v.score for v in verdicts])
    pred = np.array([v.supported for v in verdicts])
    kinds = np.array([e.kind for e in examples])
    out: dict[str, Any] = {
        "examples": len(examples), "supported": int(y.sum()),
        "auroc": round(auroc(scores.tolist(), y.tolist()), 4),
        "accuracy": round(float((pred == y).mean()), 4),
        "threshold": judge.threshold,
        "true_positive_rate": round(float(pred[y].mean()), 4),
        "true_negative_rate": round(float((~pred[~y]).mean()), 4),
        "claims_per_second": round(len(examples) / seconds, 2),
        "by_negative_kind": {},
    }
    for kind in ("other-answer", "entity-swap"):
        keep = y | (kinds == kind)
        out["by_negative_kind"][kind] = {
            "negatives": int((kinds == kind).sum()),
            "auroc": round(auroc(scores[keep].tolist(), y[keep].tolist()), 4),
            "true_negative_rate": round(float((~pred[kinds == kind]).mean()), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "judge.json")
    parser.add_argument("--fit", action="store_true", help="fit weights on calibration articles")
    parser.add_argument("--judge", choices=("offline", "llm"), default="offline")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--test-questions", type=int, default=TEST_QUESTIONS)
    parser.add_argument("--pipeline", type=Path, default=None, help="with --fit: also fit on "
                        "the pipeline's answers on the calibration articles (a file of "
                        "bench/pipeline_answers.py --articles calibration)")
    parser.add_argument("--pipeline-test", type=Path, default=None, help="also measure the "
                        "judge on the pipeline's answers on held-out articles (a file of "
                        "bench/pipeline_answers.py --articles test)")
    args = parser.parse_args()

    data = load_squad(SQUAD)
    calib_articles, test_articles = split_articles([p.id for p in data.paragraphs])
    cache = REPO / ".bench-home-squad" / "cache"
    embedder = get_embedder("local:minilm", 32, cache)
    result: dict[str, Any] = {
        "machine": machine(), "versions": versions(),
        "calibration_articles": sorted(calib_articles), "test_articles": sorted(test_articles),
    }
    if args.fit:
        calib = support_set(data, CALIB_QUESTIONS, CALIB_SEED, calib_articles)
        log(f"fitting on {len(calib)} claims from {len(calib_articles)} calibration articles")
        result["fit"] = fit(OfflineJudge(embedder), calib,
                            pipeline_claims(args.pipeline) if args.pipeline else None)
        log(f"fit: {result['fit']}")
    judge: Judge
    if args.judge == "llm":
        from ragtune.models.openai import OpenAIGenerator

        if not args.base_url:
            parser.error("--judge llm needs --base-url")
        judge = LLMJudge(OpenAIGenerator(args.model, args.base_url))
    else:
        judge = OfflineJudge(embedder)
    test = support_set(data, args.test_questions, TEST_SEED, test_articles)
    log(f"judging {len(test)} claims from {len(test_articles)} test articles with {judge.name}")
    result["judge"] = judge.name
    result["test"] = measure(judge, test)
    log(f"test: {result['test']}")
    if args.pipeline_test:
        claims, labels = pipeline_claims(args.pipeline_test)
        scores = [v.score for v in judge.judge(claims)]
        result["pipeline_test"] = {"file": args.pipeline_test.name, "claims": len(claims),
                                   "right": sum(labels),
                                   "auroc": round(auroc(scores, labels), 4)}
        log(f"pipeline test: {result['pipeline_test']}")
    result["baselines"] = {}
    for baseline in (TokenOverlapJudge(), EmbeddingJudge(embedder)):
        result["baselines"][baseline.name] = measure(baseline, test)
        log(f"{baseline.name}: AUROC {result['baselines'][baseline.name]['auroc']}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
