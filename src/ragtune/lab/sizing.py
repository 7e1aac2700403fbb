"""How long a `compare` run will take on this machine, before any work; `--budget` to fit.

    >>> plan = estimate(counts, exp, load_rates(settings.home))
    >>> print("\\n".join(plan.lines()))
    >>> exp = fit_budget(exp, counts_for, minutes=20, rates=rates)

A run's time is mostly generation (each architecture answers every evaluation question, its
paraphrases and the freshness questions, `eval_batch_size` at a time) and training (per example
and epoch). Passages make prompts long: an architecture that reads them takes longer per
question in proportion to the passage tokens in its prompt (`passage_scale`; the reference run
had k = 3 passages of 128 tokens). `REFERENCE_RATES` were measured by `ragtune demo` and
`bench/lab_docs.py` on 2-core VMs (bench/results/, BENCHMARKS.md); every finished run records
this machine's own rates in `<home>/labs/rates.json`, and the next estimate uses them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune import architectures
from ragtune.lab.experiment import Budgets, Experiment

RATES_FILE = "rates.json"
REFERENCE_BATCH, REFERENCE_TOKENS = 8, 48  # the batch and answer length the rates were timed at
REFERENCE_PASSAGE_TOKENS = 3 * 128  # k x chunk tokens of the reference run's prompts
# seconds; measured by `ragtune demo` (bench/results/lab_demo.json, lab_demo_levers.json)
REFERENCE_RATES: dict[str, float] = {
    "ingest_per_kilobyte": 0.05,
    "generate_per_question": 0.1,
    "train_tuned_per_example_epoch": 0.33,
    "train_hybrid_per_example_epoch": 1.46,
    "tune_retrieval_per_question": 0.02,
    "evaluate_per_question:base": 0.60,
    "evaluate_per_question:rag": 0.99,
    "evaluate_per_question:rag+schema": 1.13,
    "evaluate_per_question:rag-tuned-retrieval": 0.99,
    "evaluate_per_question:tuned": 0.35,
    "evaluate_per_question:hybrid": 0.76,
    "model_load": 6.0,
}
REFERENCE_SOURCE = ("reference rates measured by `ragtune demo` and `bench/lab_docs.py` on "
                    "2-core VMs")


@dataclass(frozen=True)
class Counts:
    """What a run will process: documents, generated questions, the split's sizes, the
    freshness questions."""

    documents: int
    kilobytes: float  # of the documents' files
    chunk_tokens: int  # the knowledge base's chunk size
    generated: int  # questions to generate (with a question file: the training top-up)
    eval: int
    paraphrases: int
    tuned_training: int
    hybrid_training: int
    fresh: int
    by: str  # the split: "phrasings" or "questions"


@dataclass
class StagePlan:
    stage: str
    seconds: float
    what: str


@dataclass
class Plan:
    """The stages a run will go through, each with its estimated seconds."""

    counts: Counts
    stages: list[StagePlan]
    source: str  # where the rates came from
    budget_minutes: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def stage_seconds(self, stage: str) -> float | None:
        return next((s.seconds for s in self.stages if s.stage == stage), None)

    def lines(self) -> list[str]:
        c = self.counts
        head = (f"plan: {c.documents} documents; "
                + (f"{c.generated} questions generated from them; " if c.generated else "")
                + f"split by {c.by}: {c.eval} evaluation questions, {c.paraphrases} "
                f"paraphrases, {c.fresh} freshness questions; training {c.tuned_training} "
                f"closed-book and {c.hybrid_training} RAFT examples")
        rows = [f"  {s.stage:32} ~{duration(s.seconds):>7}  {s.what}" for s in self.stages]
        tail = f"estimate: about {duration(self.seconds)} on this machine ({self.source})"
        if self.budget_minutes is not None:
            tail += f"; budget {self.budget_minutes:g} min"
        return [head, *rows, tail, *self.notes]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": asdict(self.counts), "stages": [asdict(s) for s in self.stages],
                "seconds": round(self.seconds, 1), "source": self.source,
                "budget_minutes": self.budget_minutes, "notes": self.notes}


def duration(seconds: float) -> str:
    """`40 s`, `6.5 min`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def asked(questions: int, batch: int) -> int:
    """Questions rounded up to whole batches: a batch takes as long however full it is."""
    return math.ceil(questions / batch) * batch if questions else 0


def load_rates(home: Path) -> tuple[dict[str, float], str]:
    """(rates, where they came from): this machine's recorded ones over the reference."""
    path = home / "labs" / RATES_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        mine = {k: float(v) for k, v in recorded.get("rates", {}).items()
                if k in REFERENCE_RATES and isinstance(v, int | float) and v > 0}
    except (OSError, ValueError, AttributeError):
        mine = {}
    if not mine:
        return dict(REFERENCE_RATES), REFERENCE_SOURCE
    return REFERENCE_RATES | mine, (f"rates measured on this machine by the lab run of "
                                    f"{recorded.get('recorded_at', '?')}")


def estimate(counts: Counts, exp: Experiment, rates: dict[str, float],
             source: str = REFERENCE_SOURCE) -> Plan:
    """The plan of a run of `exp` processing `counts` (see the module docstring)."""
    b = exp.budgets
    scale = b.max_new_tokens / REFERENCE_TOKENS

    def answering(n: int) -> int:
        return asked(n, b.eval_batch_size)

    archs = [architectures.get(a) for a in exp.architectures]
    stages = [StagePlan("ingest", rates["model_load"] + rates["ingest_per_kilobyte"]
                        * counts.kilobytes, f"{counts.documents} documents, "
                        f"{counts.kilobytes:,.0f} KB")]
    if counts.generated:
        stages.append(StagePlan("generate questions",
                                rates["generate_per_question"] * counts.generated,
                                f"{counts.generated} questions"))
    if any(a.adapter == "tuned" for a in archs):
        stages.append(StagePlan("train tuned", rates["model_load"] + rates[
            "train_tuned_per_example_epoch"] * counts.tuned_training * b.tuned_epochs,
            f"{counts.tuned_training} examples x {b.tuned_epochs} epoch(s)"))
    if any(a.adapter == "hybrid" for a in archs):
        stages.append(StagePlan("train hybrid", rates["model_load"] + passage_scale(
            architectures.get("hybrid"), counts, exp) * rates[
            "train_hybrid_per_example_epoch"] * counts.hybrid_training * b.hybrid_epochs,
            f"{counts.hybrid_training} examples x {b.hybrid_epochs} epoch(s)"))
    if any(a.tuned_retrieval for a in archs):
        n = counts.tuned_training + counts.eval
        stages.append(StagePlan("tune retrieval", rates["tune_retrieval_per_question"] * n,
                                f"{n} questions searched per ranking"))
    n_asked = answering(counts.eval + counts.paraphrases)
    for a in archs:
        stages.append(StagePlan(f"evaluate {a.name}", rates["model_load"] + scale
                                * passage_scale(a, counts, exp) * rates[
            f"evaluate_per_question:{a.name}"] * n_asked, f"{n_asked} questions"))
    if counts.fresh:
        stages.append(StagePlan("apply change set + re-sync", 1.0,
                                f"{counts.fresh} changed facts"))
        for a in archs:
            stages.append(StagePlan(f"freshness {a.name}", scale * passage_scale(a, counts, exp)
                                    * rates[f"evaluate_per_question:{a.name}"]
                                    * answering(counts.fresh),
                f"{counts.fresh} questions"))
    stages.append(StagePlan("report", 2.0, "report.html, report.md, lab.json"))
    return Plan(counts, stages, source)


def passage_scale(arch: architectures.Architecture, counts: Counts, exp: Experiment) -> float:
    """How much longer than the reference an architecture takes per question or example for
    the passages in its prompt (k passages of the chunk size, or of a whole document when
    documents are shorter): in proportion for a prompted reader of passages, the square
    root of that for the RAFT-trained hybrid (its short trained prompt), 1 without retrieval."""
    if not arch.retrieves:
        return 1.0
    per_document = counts.kilobytes * 1024 / 4 / max(1, counts.documents)  # ~4 chars a token
    passage = min(counts.chunk_tokens, per_document)  # short documents make short passages
    ratio = exp.budgets.k * passage / REFERENCE_PASSAGE_TOKENS
    return math.sqrt(ratio) if arch.adapter is not None else ratio


def fit_budget(exp: Experiment, counts_for: Callable[[Experiment], Counts], minutes: float,
               rates: dict[str, float], source: str = REFERENCE_SOURCE
               ) -> tuple[Experiment, Plan]:
    """`exp` with its samples shrunk (evaluation questions, paraphrases, RAFT examples,
    generated questions, synthetic changes) until the estimate fits `minutes`; the largest
    such run, or the smallest one with a note when even that does not fit."""
    full = estimate(counts_for(exp), exp, rates, source)
    full.budget_minutes = minutes
    if full.seconds <= minutes * 60:
        return exp, full
    c = full.counts
    best: tuple[Experiment, Plan] | None = None
    low, high = 0.0, 1.0
    for _ in range(12):  # bisect the share of the full run's samples that fits
        share = (low + high) / 2
        trial = shrunk(exp, c, share)
        plan = estimate(counts_for(trial), trial, rates, source)
        if plan.seconds <= minutes * 60:
            best, low = (trial, plan), share
        else:
            high = share
    if best is None:
        trial = shrunk(exp, c, 0.0)
        plan = estimate(counts_for(trial), trial, rates, source)
        plan.notes.append(f"even the smallest run (about {duration(plan.seconds)}) does not "
                          f"fit {minutes:g} min: running it anyway")
        best = (trial, plan)
    best[1].budget_minutes = minutes
    best[1].notes.append(f"--budget {minutes:g}: samples shrunk to fit (the full run: about "
                         f"{duration(full.seconds)})")
    return best


def shrunk(exp: Experiment, counts: Counts, share: float) -> Experiment:
    """`exp` keeping `share` of its samples, never below a floor that still measures (8
    evaluation questions, 2 paraphrases, 8 RAFT examples, 16 generated questions, 2
    changes)."""
    def part(n: int, floor: int) -> int:
        return max(min(n, floor), round(n * share))

    b: Budgets = exp.budgets.model_copy(update={
        "eval_cases": part(counts.eval, 8),
        "consistency_cases": part(counts.paraphrases, 2),
        "hybrid_examples": part(counts.hybrid_training, 8)})
    update: dict[str, Any] = {"budgets": b,
                              "synthetic_changes": part(exp.synthetic_changes, 2)}
    if counts.generated:
        update["generated_questions"] = part(counts.generated, 16)
    return exp.model_copy(update=update)


def record_rates(home: Path, plan_counts: Counts, stages: dict[str, float], exp: Experiment,
                 recorded_at: str) -> dict[str, float]:
    """This machine's rates from a finished run's stage timings, saved for the next estimate
    (a rate the run did not measure keeps the recorded or reference value)."""
    b = exp.budgets
    c = plan_counts
    scale = b.max_new_tokens / REFERENCE_TOKENS
    rates: dict[str, float] = {}

    def rate(key: str, stage: str, units: float, minus: float = 0.0) -> None:
        if stage in stages and units > 0:
            rates[key] = round(max(0.001, (stages[stage] - minus) / units), 4)

    rate("ingest_per_kilobyte", "ingest", c.kilobytes, REFERENCE_RATES["model_load"])
    rate("generate_per_question", "generate questions", c.generated)
    rate("train_tuned_per_example_epoch", "train tuned", c.tuned_training * b.tuned_epochs,
         REFERENCE_RATES["model_load"])
    rate("train_hybrid_per_example_epoch", "train hybrid", c.hybrid_training * b.hybrid_epochs
         * passage_scale(architectures.get("hybrid"), c, exp), REFERENCE_RATES["model_load"])
    rate("tune_retrieval_per_question", "tune retrieval", c.tuned_training + c.eval)
    questions = asked(c.eval + c.paraphrases, b.eval_batch_size)
    for a in exp.architectures:
        rate(f"evaluate_per_question:{a}", f"evaluate {a}", questions * scale
             * passage_scale(architectures.get(a), c, exp), REFERENCE_RATES["model_load"])
    path = home / "labs" / RATES_FILE
    previous, _ = load_rates(home)
    merged = {k: v for k, v in previous.items() if v != REFERENCE_RATES.get(k)} | rates
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"recorded_at": recorded_at, "rates": merged}, indent=2) + "\n",
                    encoding="utf-8")
    return merged
