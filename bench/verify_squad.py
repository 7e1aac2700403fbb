"""Selective answering on held-out SQuAD 2.0 articles: what verification before return buys.

    .venv/bin/python bench/verify_squad.py [--home DIR] [--json OUT] [--svg OUT]
                                           [--plain | --adapter DIR] [--cases OUT.jsonl]
                                           [--answerable N --unanswerable N]

The generator is what `ragtune ask` uses by default: the bundled SmolLM2 with its grounded
reader adapter; `--plain` measures the plain model, `--adapter` another adapter.

On one knowledge base of all 646 paragraphs (k=3 hybrid passages, at most 32 new tokens):
1. calibration (`ragtune.answering.calibrate_answers`, the code of `ragtune calibrate`) on 50
   answerable + 50 unanswerable questions of the 4 judge-calibration articles (where the offline
   judge was fitted; the reader adapter never saw them, so its answers there are as good as on
   unseen articles): the refusal thresholds, then the verification threshold for at most 10%
   wrong answers among those returned;
2. the test: 200 answerable + 200 unanswerable questions (seeded) of the 6 held-out articles
   (`ragtune.evaluation.squad.reader_split`: neither the offline judge nor the reader adapter
   was fitted on them), answered once as `ask` does out of the box (the default refusal
   thresholds) with every answer judged (`on_unverified="mark"`), then scored five ways on the
   same answers: before verification; verified at the judge's own threshold (what `ask`
   returns by default); the calibrated refusal thresholds applied (from each answer's
   similarity and confidence), then unverified, verified at the judge's threshold, or verified
   at the calibrated threshold (what `ask` returns after `ragtune calibrate`). Per way:
   answered-and-correct and answered-and-wrong ("confidently wrong") shares of all questions,
   coverage, refusal precision/recall/balanced accuracy (refusing is the positive class), token
   F1 on answerable questions (a refusal scores 0);
3. the verifier's AUROC for correct vs wrong answers *of this pipeline* (the answers the
   refusal thresholds let through) and its risk–coverage curve (JSON and an SVG plot);
4. cost: 20 test questions asked one at a time with verification off and on (same process,
   same questions, no refusal thresholds so that every answer is judged): ask p50/p95, and
   verification time against generation time.

An answer is correct when its question is answerable and it matches a gold answer exactly or by
token F1 >= 0.5 (`eval.correct_f1`); any answer to an unanswerable question is wrong.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, log, machine, versions, write_json
from pipeline_answers import answer_row, correct
from ragtune import KnowledgeBase, Settings
from ragtune.answering import Answer, Answerer, RefusalPolicy, calibrate_answers, generator_for
from ragtune.answering.ask import default_policy
from ragtune.answering.refusal import refusal_scores
from ragtune.answering.verify import RiskPoint, risk_coverage
from ragtune.cases import EvalCase
from ragtune.evaluation.ir import percentile
from ragtune.evaluation.metrics import auroc
from ragtune.evaluation.squad import SquadQuestion, judge_split, load_squad, reader_split
from ragtune.models.generators import Generator
from ragtune.text import token_f1

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
HOME = REPO / ".bench-home-squad"
K, MAX_NEW_TOKENS, CORRECT_F1 = 3, 32, 0.5
TEST_SEED, CALIB_SEED = 13, 7


def scored(questions: list[SquadQuestion], answers: list[Answer],
           returned: list[bool]) -> dict[str, Any]:
    """The selective-answering figures of one way of deciding which answers are returned."""
    n = len(questions)
    right = [r and correct(q, a) for q, a, r in zip(questions, answers, returned, strict=True)]
    wrong = [r and not ok for r, ok in zip(returned, right, strict=True)]
    refusals = refusal_scores([not r for r in returned], [q.answerable for q in questions])
    f1 = [token_f1(a.plain, q.answers) if r else 0.0
          for q, a, r in zip(questions, answers, returned, strict=True) if q.answerable]
    answered = sum(returned)
    return {
        "coverage": answered / n, "answered_correct": sum(right) / n,
        "confidently_wrong": sum(wrong) / n,
        "risk": sum(wrong) / answered if answered else None,
        "refusal_precision": refusals["precision"], "refusal_recall": refusals["recall"],
        "refusal_balanced_accuracy": refusals["balanced_accuracy"],
        "token_f1_answerable": float(np.mean(f1)) if f1 else 0.0,
        "answered": answered, "questions": n,
    }


def answer_all(answerer: Answerer, questions: list[SquadQuestion], batch: int = 16
               ) -> list[Answer]:
    out: list[Answer] = []
    started = time.perf_counter()
    for start in range(0, len(questions), batch):
        out.extend(answerer.ask_batch([q.question for q in questions[start:start + batch]]))
        log(f"answered {len(out)}/{len(questions)} in {time.perf_counter() - started:.0f} s")
    return out


def cost(kb: KnowledgeBase, generator: Generator, questions: list[SquadQuestion]
         ) -> dict[str, Any]:
    """The same questions one at a time with verification off, then on."""
    out: dict[str, Any] = {"questions": len(questions)}
    for mode in ("off", "mark"):  # no refusal thresholds: every answer reaches the judge
        answerer = Answerer(kb, generator, RefusalPolicy(None, None, "none"),
                            on_unverified=mode)
        totals, generate, verify = [], [], []
        for q in questions:
            a = answerer.ask(q.question)
            totals.append(a.timings_ms["total"])
            if a.generation is not None:
                generate.append(a.timings_ms["generate"])
                verify.append(a.timings_ms["verify"])
        out[mode] = {"ask_ms_p50": percentile(totals, 50), "ask_ms_p95": percentile(totals, 95),
                     "generate_ms_sum": sum(generate), "verify_ms_sum": sum(verify),
                     "verify_ms_p50": percentile(verify, 50) if verify else None,
                     "verify_ms_p95": percentile(verify, 95) if verify else None}
        log(f"cost ({mode}): {out[mode]}")
    on = out["mark"]
    out["verify_share_of_generation"] = (on["verify_ms_sum"] / on["generate_ms_sum"]
                                         if on["generate_ms_sum"] else None)
    return out


def svg(points: list[RiskPoint], marks: dict[str, float], path: Path) -> None:
    """The risk–coverage curve as a small standalone SVG."""
    w, h, pad = 420, 300, 40
    xy = [(p.coverage, p.risk) for p in points if p.risk is not None]

    def at(c: float, r: float) -> str:
        return f"{pad + c * (w - 2 * pad):.1f},{h - pad - r * (h - 2 * pad):.1f}"

    line = " ".join(at(c, r) for c, r in xy)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="11">',
             '<title>Risk-coverage of the offline verifier (held-out SQuAD articles)</title>',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
             f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">coverage (answered / all)'
             '</text>',
             f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
             'text-anchor="middle">risk (wrong / answered)</text>',
             f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y = at(tick, 0).split(",")
        parts.append(f'<text x="{x}" y="{float(y) + 14}" text-anchor="middle">{tick:g}</text>')
        x, y = at(0, tick).split(",")
        parts.append(f'<text x="{float(x) - 4}" y="{y}" text-anchor="end">{tick:g}</text>')
    for label, threshold in marks.items():
        point = next((p for p in points if p.threshold >= threshold and p.risk is not None),
                     None)
        if point is not None and point.risk is not None:
            x, y = at(point.coverage, point.risk).split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="4" fill="#d1242f"/>'
                         f'<text x="{float(x) + 6}" y="{float(y) - 6}">{label}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=HOME)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--svg", type=Path, default=None)
    parser.add_argument("--adapter", type=Path, default=None, help="another adapter to use")
    parser.add_argument("--plain", action="store_true", help="the plain bundled model (no "
                        "reader adapter)")
    parser.add_argument("--answerable", type=int, default=200)
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=50, help="per class")
    parser.add_argument("--max-risk", type=float, default=0.10)
    parser.add_argument("--interactive", type=int, default=20)
    parser.add_argument("--cases", type=Path, default=None, help="every test answer, one JSON "
                        "line each (what bench/judge.py --pipeline-test reads)")
    args = parser.parse_args()

    data = load_squad(SQUAD)
    calibration_articles = judge_split(data)[0]
    test_articles = reader_split(data)[1]
    settings = Settings.load(home=args.home, answer={"k": K},
                             generator={"max_new_tokens": MAX_NEW_TOKENS, "dtype": "float32",
                                        "adapter": str(args.adapter) if args.adapter else None,
                                        "reader": not args.plain},
                             eval={"correct_f1": CORRECT_F1})
    kb = KnowledgeBase.open("squad", settings)
    report = kb.ingest([data.write_corpus(args.home / "corpus" / "squad-paragraphs.jsonl")],
                       sync=True)
    log(f"ingest: {report.added} added, {report.unchanged} unchanged")
    generator = generator_for(settings)

    calib = data.of_articles(calibration_articles).sample(args.calibration, args.calibration,
                                                    seed=CALIB_SEED)
    t0 = time.perf_counter()
    calibration = calibrate_answers(kb, [EvalCase(q.question, q.answers) for q in calib],
                                    generator, max_risk=args.max_risk)
    log(f"calibration ({time.perf_counter() - t0:.0f} s): {calibration.verify}")

    test = data.of_articles(test_articles).sample(args.answerable, args.unanswerable,
                                                  seed=TEST_SEED)
    # what `ask` does out of the box: the default refusal thresholds, not the calibrated ones
    # `calibrate_answers` stored (those are applied to the same answers below)
    answerer = Answerer(kb, generator, default_policy(settings), on_unverified="mark")
    t0 = time.perf_counter()
    answers = answer_all(answerer, test)
    test_seconds = time.perf_counter() - t0
    if args.cases:
        args.cases.parent.mkdir(parents=True, exist_ok=True)
        args.cases.write_text("".join(json.dumps(answer_row(q, a, correct(q, a))) + "\n"
                                      for q, a in zip(test, answers, strict=True)),
                              encoding="utf-8")
    judged = [a.verification is not None for a in answers]
    scores = [a.verification.score if a.verification else None for a in answers]
    default = answerer.verifier.judge.threshold
    chosen = calibration.verify.threshold
    kept = [j and calibration.refusal.policy.decide(
        a.similarity, a.raw_output, a.generation.mean_logprob if a.generation else None) is None
        for a, j in zip(answers, judged, strict=True)]
    ways = {
        "before_verification": judged,
        "verified_judge_threshold": [s is not None and s >= default for s in scores],
        "calibrated_refusal": kept,
        "calibrated_refusal_judge_threshold": [
            k and s is not None and s >= default for k, s in zip(kept, scores, strict=True)],
        "verified_calibrated": [k and s is not None and s >= chosen
                                for k, s in zip(kept, scores, strict=True)],
    }
    labels = [correct(q, a) for q, a in zip(test, answers, strict=True)]
    pairs = [(s, ok) for s, ok in zip(scores, labels, strict=True) if s is not None]
    curve = risk_coverage(scores, [not ok for ok in labels])
    results: dict[str, Any] = {
        "machine": machine(), "versions": versions(), "k": K, "mode": "hybrid",
        "max_new_tokens": MAX_NEW_TOKENS, "generator": generator.name,
        "articles": {"calibration": calibration_articles, "test": test_articles},
        "calibration": calibration.to_dict(),
        "thresholds": {"judge_default": default, "calibrated": chosen},
        "test_seconds": round(test_seconds, 1),
        "ways": {name: scored(test, answers, returned) for name, returned in ways.items()},
        "verifier": {
            "answers_judged": len(pairs), "correct": sum(ok for _, ok in pairs),
            "auroc": auroc([s for s, _ in pairs], [ok for _, ok in pairs])
            if 0 < sum(ok for _, ok in pairs) < len(pairs) else None,
        },
        "risk_coverage": [p.__dict__ for p in curve],
        "cost": cost(kb, generator, test[:args.interactive]),
    }
    for name, figures in results["ways"].items():
        log(f"{name}: {figures}")
    log(f"verifier: {results['verifier']}")
    if args.svg:
        svg(curve, {"judge default": default, "calibrated": chosen}, args.svg)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
