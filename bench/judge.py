"""The offline judge on a labelled SQuAD 2.0 support set: AUROC and accuracy at its threshold.

    .venv/bin/python bench/judge.py [--json OUT] [--fit] [--judge llm --base-url URL --model M]

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
article. Two baselines are measured on the same test claims: token overlap (the share of the
claim's words found in the context) and an embedding-only score (the bundled embedder's best
cosine between "question claim" and a context sentence).
"""

from __future__ import annotations

import argparse
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


def fit(judge: OfflineJudge, examples: list[SupportExample]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    evidence = [judge.evidence(c) for c in claims_of(examples)]
    x = np.array([e.features for e in evidence])
    y = np.array([e.supported for e in examples])
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
            "balanced_accuracy": round(best, 4), "examples": len(examples)}


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
        result["fit"] = fit(OfflineJudge(embedder), calib)
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
    result["baselines"] = {}
    for baseline in (TokenOverlapJudge(), EmbeddingJudge(embedder)):
        result["baselines"][baseline.name] = measure(baseline, test)
        log(f"{baseline.name}: AUROC {result['baselines'][baseline.name]['auroc']}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
