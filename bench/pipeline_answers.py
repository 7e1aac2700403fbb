"""The real pipeline's answers on SQuAD 2.0 questions, one JSON line each, with what a verifier
can see: the question, the answer, the prompt's passages, the generator's confidence, and
whether the answer is right (the data `bench/judge.py --fit-pipeline` fits the offline judge on).

    .venv/bin/python bench/pipeline_answers.py --articles calibration|test --out FILE.jsonl
                                               [--adapter DIR] [--answerable N --unanswerable N]

`calibration` = the 4 judge-calibration articles (`ragtune.evaluation.squad.judge_split`),
which neither the reader adapter nor the test of `bench/verify_squad.py` uses; `test` = the 6
held-out articles of `reader_split` (for error analysis only, never for fitting). Every
question is answered with no refusal threshold (every answer reaches the judge) on the same
knowledge base as `bench/verify_squad.py` (646 paragraphs, k=3 hybrid, 32 new tokens).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import REPO, log
from ragtune import KnowledgeBase, Settings
from ragtune.answering import Answer, Answerer, RefusalPolicy
from ragtune.evaluation.squad import SquadQuestion, judge_split, load_squad, reader_split
from ragtune.models.generators import LocalGenerator
from ragtune.text import exact_match, token_f1

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
HOME = REPO / ".bench-home-squad"
K, MAX_NEW_TOKENS, CORRECT_F1, SEED = 3, 32, 0.5, 11


def correct(q: SquadQuestion, answer: Answer) -> bool:
    """Right: an answerable question answered with a gold answer (exact match or token F1 >=
    0.5); any answer to an unanswerable question is wrong."""
    return q.answerable and (exact_match(answer.plain, q.answers) == 1.0
                             or token_f1(answer.plain, q.answers) >= CORRECT_F1)


def answer_row(q: SquadQuestion, a: Answer, right: bool) -> dict[str, Any]:
    """One answer as `bench/judge.py --pipeline` reads it."""
    return {
        "id": q.id, "question": q.question, "answers": q.answers,
        "answerable": q.answerable, "answer": a.text, "plain": a.plain,
        "refused": a.refused, "refusal_reason": a.refusal_reason, "correct": right,
        "passages": [p.text for p in a.prompt.passages],
        "gold_in_passages": q.answerable and any(
            g in p.text for p in a.prompt.passages for g in q.answers),
        "confidence": a.generation.mean_logprob if a.generation else None,
        "verification": a.verification.to_dict() if a.verification else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", choices=("calibration", "test"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--home", type=Path, default=HOME)
    parser.add_argument("--adapter", type=Path, default=None)
    parser.add_argument("--answerable", type=int, default=150)
    parser.add_argument("--unanswerable", type=int, default=150)
    args = parser.parse_args()

    data = load_squad(SQUAD)
    articles = (judge_split(data)[0] if args.articles == "calibration"
                else reader_split(data)[1])
    settings = Settings.load(home=args.home, answer={"k": K},
                             generator={"max_new_tokens": MAX_NEW_TOKENS},
                             eval={"correct_f1": CORRECT_F1})
    kb = KnowledgeBase.open("squad", settings)
    kb.ingest([data.write_corpus(args.home / "corpus" / "squad-paragraphs.jsonl")], sync=True)
    generator = LocalGenerator(cache_dir=settings.cache_dir, dtype="float32",
                               adapter=args.adapter)
    answerer = Answerer(kb, generator, RefusalPolicy(None, None, "none"), on_unverified="mark")
    questions = data.of_articles(articles).sample(args.answerable, args.unanswerable, seed=SEED)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with args.out.open("w", encoding="utf-8") as out:
        for at in range(0, len(questions), 16):
            batch = questions[at:at + 16]
            for q, a in zip(batch, answerer.ask_batch([q.question for q in batch]), strict=True):
                out.write(json.dumps(answer_row(q, a, correct(q, a))) + "\n")
            log(f"answered {min(at + 16, len(questions))}/{len(questions)} in "
                f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
