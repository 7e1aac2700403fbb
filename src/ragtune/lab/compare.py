"""`ragtune compare`: the architectures on the same cases, the freshness probe, the verdict.

    >>> lab = Lab(load_experiment(Path("experiment.yaml")), Settings.load(), Path("lab-out"))
    >>> result = lab.run()               # also writes lab-out/report.html, report.md, lab.json
    >>> result.recommendation.recommendation
    'hybrid'

The architectures come from `ragtune.architectures`, all behind one interface: an `Evaluator`
over the same knowledge base and cases, running each as its `runs_as` (`rag+schema` is `rag` with
constrained decoding); the `tuned` adapter learns closed-book pairs, the `hybrid` one RAFT
examples. `run()` returns a `LabResult` (`ragtune.lab.result`), the lab.json document typed.

Only the documents are required: without a question file the questions are generated from
them after the ingest (`ragtune.lab.prepare`), without a change set a synthetic one rewrites
facts the evaluation asks about (`ragtune.lab.freshness`), without a checklist the measurements
alone decide; the report says what was made and how. `plan()` estimates the run before any
work (`ragtune.lab.sizing`), and each stage's log line says how long it and the rest should
take.

The stages: ingest a working copy of the documents; train the adapters (a folder whose manifest
matches the examples and settings is reused, not retrained); evaluate every architecture on the
evaluation questions and on their paraphrases (consistency); apply the change set to the
working copy and re-sync (timed); re-ask the changed facts' questions with every architecture,
nothing retrained (freshness); then the metrics, the failure causes, the checklist combined
with the evidence, and the report. Every evaluation is also saved as an `ragtune eval` run
(`runs/<arch>`, `runs/<arch>-paraphrases`, `runs/<arch>-fresh`).
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from ragtune import architectures
from ragtune.answering.ask import generator_for
from ragtune.answering.citations import strip_citations
from ragtune.answering.prompt import PromptStyle, doc_label
from ragtune.architectures import Architecture
from ragtune.cases import EvalCase
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.evaluation.metrics import schema_errors, token_f1
from ragtune.evaluation.runner import CaseResult, EvalRun, Evaluator
from ragtune.kb import KnowledgeBase
from ragtune.lab.checklist import ChecklistAnswers, assess, lab_evidence, load_answers
from ragtune.lab.experiment import (
    Change,
    Experiment,
    LabQuestion,
    Split,
    split_questions,
)
from ragtune.lab.freshness import Edit, synthetic_changes
from ragtune.lab.levers import RetrievalTuning, tune_retrieval
from ragtune.lab.prepare import (
    UNANSWERABLE_SHARE,
    askable,
    default_question_count,
    document_files,
    generated_questions,
    generation_request,
    infer_gold,
    paraphraser,
    top_up_training,
    training_shortfall,
)
from ragtune.lab.report import write_report
from ragtune.lab.result import (
    ArchMetrics,
    ArchResult,
    CaseAnswer,
    CasePassage,
    Freshness,
    LabCase,
    LabExperiment,
    LabRecommendation,
    LabResult,
    Stage,
)
from ragtune.lab.sizing import (
    Counts,
    Plan,
    duration,
    estimate,
    fit_budget,
    load_rates,
    record_rates,
)
from ragtune.retrieval import searcher_for
from ragtune.text import contains_answer, figures, normalize_words
from ragtune.tuning.data import TrainingExample, load_training_data
from ragtune.tuning.manifest import check_staleness, read_manifest
from ragtune.tuning.raft import build_closed_book_examples, knowledge_base_info, train_raft_adapter
from ragtune.tuning.trainer import train_adapter

ProgressFn = Callable[[int, int | None], None]
StageFn = Callable[[str, int | None], ProgressFn]  # (label, total) -> advance(done, total)
PASSAGE_CHARS = 700  # passage text kept per drill-down entry
FRESH_NEIGHBOURS = 10  # passages searched for another statement of an edited fact
PACE_PRIOR = 60.0  # seconds of the plan taken as on time before the run says otherwise


LAB_META_KEY = "lab"  # the experiment whose documents a lab's knowledge base holds
CASE_KINDS = {"eval": "eval", "paraphrases": "paraphrase", "fresh": "fresh"}


class Lab:
    """One `compare` run: `run()` does every stage and writes the report into `out`."""

    def __init__(self, experiment: Experiment, settings: Settings, out: Path,
                 stage: StageFn | None = None, log: Callable[[str], None] | None = None,
                 checklist: ChecklistAnswers | None = None) -> None:
        self.exp = experiment
        self.answers = checklist  # answers given here (an interview) over the experiment's file
        self.out = Path(out)
        self.stage_fn = stage or (lambda label, total: lambda done, t: None)
        self.log = log or (lambda message: None)
        b = experiment.budgets
        chunking = settings.chunking
        if experiment.knowledge_base.chunk_tokens:
            chunking = chunking.model_copy(update={
                "max_tokens": experiment.knowledge_base.chunk_tokens,
                "overlap_tokens": min(chunking.overlap_tokens,
                                      experiment.knowledge_base.chunk_tokens // 4)})
        self.settings = settings.model_copy(update={
            "chunking": chunking,
            "generator": settings.generator.model_copy(update={
                "adapter": None, "reader": False, "max_new_tokens": b.max_new_tokens,
                "batch_size": b.eval_batch_size}),
            "answer": settings.answer.model_copy(update={"k": b.k}),
            "eval": settings.eval.model_copy(update={"batch_size": b.eval_batch_size}),
            "tune": settings.tune.model_copy(update={
                "batch_size": b.train_batch_size, "learning_rate": b.learning_rate,
                "lora_r": b.lora_r, "lora_alpha": 2 * b.lora_r,
                "raft_distractors": b.raft_distractors, "seed": experiment.split.seed}),
        })
        self.schema = experiment.answer_schema()
        self.stages: list[Stage] = []
        self.passages: dict[str, tuple[str, str]] = {}  # chunk id -> (title, text)
        self.tuned_count = 0
        self.doc_ids: dict[str, str] = {}  # file name -> document id (after the ingest)
        self.levers: RetrievalTuning | None = None
        self.plan_: Plan | None = None
        self.edits: list[Edit] = []  # the synthetic change set, when the lab made one
        self.prepared: list[str] = []  # what the lab made because the experiment did not give it
        self.rewrite, self.paraphrase_method = paraphraser(self.settings)

    # --- sizing ------------------------------------------------------------------------------

    def counts(self, exp: Experiment | None = None) -> Counts:
        """What a run of `exp` (default: this lab's) will process, read before any work: the
        question file split as the run splits it, or the questions it will generate."""
        exp = exp or self.exp
        files = document_files(exp.resolve(exp.knowledge_base.documents))
        docs = len(files)
        questions = exp.load_questions()
        generated = 0
        if questions is None:
            generated = min(exp.generated_questions or default_question_count(docs),
                            askable(files))
            n_unans = round(generated * UNANSWERABLE_SHARE)
            questions = [LabQuestion(f"q{i}", (f"question {i}",),
                                     () if i < n_unans else ("answer",), ())
                         for i in range(generated)]
        changes = exp.load_changes()
        split = split_questions(questions, exp.split, exp.budgets,
                                keep={c.question_id for c in changes}, paraphrase=str)
        answerable_eval = sum(c.answerable for c in split.eval)
        fresh = len(changes) if exp.changes is not None else min(exp.synthetic_changes,
                                                                 answerable_eval)
        tuned, hybrid = len(split.tuned_training), len(split.hybrid_training)
        missing = training_shortfall(split)
        if missing and exp.training_data is None and not generated:  # topped up by `_top_up`
            generated = min(generation_request(missing), askable(files))
            tuned, hybrid = tuned + missing, hybrid + missing
        if exp.training_data is not None:
            tuned = sum(1 for line in exp.resolve(exp.training_data).open(encoding="utf-8")
                        if line.strip())
        return Counts(documents=docs, kilobytes=sum(f.stat().st_size for f in files) / 1024,
                      chunk_tokens=_chunk_tokens(exp, self.settings), generated=generated,
                      eval=len(split.eval),
                      paraphrases=len(split.paraphrases), tuned_training=tuned,
                      hybrid_training=hybrid, fresh=fresh, by=split.by)

    def plan(self, budget_minutes: float | None = None) -> Plan:
        """How long the run will take on this machine (`ragtune.lab.sizing`); with a budget,
        this lab's experiment is shrunk to fit it first."""
        rates, source = load_rates(self.settings.home)
        if budget_minutes is None:
            self.plan_ = estimate(self.counts(), self.exp, rates, source)
        else:
            self.exp, self.plan_ = fit_budget(self.exp, self.counts, budget_minutes, rates,
                                              source)
        return self.plan_

    # --- the whole run -----------------------------------------------------------------------

    def run(self) -> LabResult:
        started = time.perf_counter()
        exp = self.exp
        if self.plan_ is None:
            self.plan()
        archs = [architectures.get(a) for a in exp.architectures]
        changes = exp.load_changes()
        questions = exp.load_questions()  # None: generated from the documents after the ingest
        split = None if questions is None else self._split(questions, changes)
        checklist = self._checklist()
        if split is not None:  # a bad or leaking training file fails right away
            self.tuned_count = len(self._tuned_examples(split))
        self.out.mkdir(parents=True, exist_ok=True)
        kb = self._timed("ingest", self._ingest)
        if questions is None or split is None:
            questions = self._timed("generate questions", partial(self._generate, kb))
            split = self._split(questions, changes)
        else:
            questions, split = self._complete(kb, questions, split, changes)
        tuned_examples = self._tuned_examples(split)
        self.tuned_count = len(tuned_examples)
        known = {q.id: q for q in questions}
        split = self._resolve_gold(kb, split)
        if exp.changes is None and exp.synthetic_changes:
            changes = self._timed("make synthetic changes", partial(self._synthetic, kb, split))
        adapters: dict[str, Path] = {}
        if any(a.adapter == "tuned" for a in archs):
            adapters["tuned"] = self._timed("train tuned", partial(
                self._train_tuned, kb, split, tuned_examples))
        if any(a.adapter == "hybrid" for a in archs):
            adapters["hybrid"] = self._timed("train hybrid",
                                             partial(self._train_hybrid, kb, split))
        if any(a.tuned_retrieval for a in archs):
            self.levers = self._timed("tune retrieval", partial(self._tune_retrieval, kb, split))
        evaluators = {a.name: self._evaluator(kb, a, adapters) for a in archs}
        runs = {a.name: self._evaluate_arch(evaluators[a.name], a, split) for a in archs}
        fresh_cases = [self._gold_ids(known[c.question_id].case(
            split.eval_phrasing.get(c.question_id) or _eval_phrasing(known[c.question_id], split),
            "fresh", c.new_answers)) for c in changes]
        freshness = self._probe(kb, archs, evaluators, runs, changes, fresh_cases)
        metrics = {a.name: self._metrics(a, runs[a.name], changes, adapters, kb, freshness)
                   for a in archs}
        recommendation = self._recommend(checklist, metrics)
        if self.levers is not None:
            recommendation.reasons.append(self._levers_reason(metrics))
        lab = LabResult(
            ragtune=_version(), created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            experiment=LabExperiment(
                name=exp.name, file=str(exp.path) if exp.path else None,
                kb=kb.name, documents=len(kb.store.document_hashes()),
                groups=sorted(self.exp.knowledge_base.groups),
                eval_cases=len(split.eval), paraphrases=len(split.paraphrases),
                seed=exp.split.seed, split=split.to_dict(), split_by=split.by,
                task="answer as JSON valid for the task schema, or refuse",
                answer_schema=self.schema,
                train_examples={"tuned": self.tuned_count, "hybrid": len(split.hybrid_training)},
                budgets=exp.budgets.model_dump(),
                generator=evaluators[archs[0].name].answerer.generator.name,
                notes=self._notes(split, len(changes)),
                prepared=self.prepared,
                plan=self.plan_.to_dict() if self.plan_ else None,
            ),
            recommendation=recommendation,
            checklist=checklist.model_dump() if checklist is not None else {},
            order=[a.name for a in archs],
            architectures={a.name: ArchResult(
                description=a.description, metrics=metrics[a.name],
                failure_causes=runs[a.name]["eval"].summary["failure_causes"]) for a in archs},
            freshness=freshness,
            retrieval_levers=None if self.levers is None else self.levers.to_dict(),
            stages=list(self.stages),
            cases=self._cases(archs, runs),
            seconds=round(time.perf_counter() - started, 1),  # the report's writing aside
        )
        self._timed("report", partial(self._write, lab))
        self._record_rates(split, len(changes), lab)
        return lab

    def _split(self, questions: list[LabQuestion], changes: list[Change]) -> Split:
        known = {q.id for q in questions}
        missing = [c.question_id for c in changes if c.question_id not in known]
        if missing:
            raise InputError(f"change set names unknown question id(s): {', '.join(missing)}")
        split = split_questions(questions, self.exp.split, self.exp.budgets,
                                keep={c.question_id for c in changes}, paraphrase=self.rewrite)
        self.prepared = [p for p in self.prepared if not p.startswith(("Split", "Paraphrases"))]
        self.prepared.append(split.describe())
        if split.rewritten:
            self.prepared.append(self.paraphrase_method())
        return split

    def _generate(self, kb: KnowledgeBase) -> list[LabQuestion]:
        """The question set made from the documents (no question file given)."""
        count = self.exp.generated_questions or default_question_count(
            len(kb.store.document_hashes()))
        questions = generated_questions(kb, count, seed=self.exp.split.seed,
                                        progress=self._bar("generate questions"))
        unanswerable = sum(not q.answerable for q in questions)
        self.prepared.append(
            f"Questions: none given, so {len(questions)} were generated from the documents "
            f"({unanswerable} unanswerable; `ragtune testset`, seed {self.exp.split.seed}): "
            "fill-in-the-blank questions whose answer is a figure, a name or an uncommon word "
            "of one passage, and questions about a term no document states.")
        self.log(f"generated {len(questions)} questions ({unanswerable} unanswerable)")
        return questions

    def _complete(self, kb: KnowledgeBase, questions: list[LabQuestion], split: Split,
                  changes: list[Change]) -> tuple[list[LabQuestion], Split]:
        """A question file's gaps filled from the documents: gold documents it does not name,
        and training questions when it leaves too few to train on."""
        if any(q.answerable and not q.gold_doc_ids for q in questions):
            searcher = searcher_for(kb)

            def rank(question: str) -> list[str]:
                hits = searcher.search(question, k=FRESH_NEIGHBOURS, mode="hybrid").hits
                return list(dict.fromkeys(doc_label(h.doc_id) for h in hits))

            questions, inferred, unfound = infer_gold(questions, _corpus(kb), rank)
            split = self._split(questions, changes)
            self.prepared.append(
                f"Gold documents: {inferred + unfound} answerable questions named none, so the "
                "documents stating their most specific answer were taken, the one retrieval "
                f"ranks first cited in training ({inferred} found"
                + (f"; {unfound} stated by no document, scored on the answer alone)"
                   if unfound else ")") + ".")
        missing = training_shortfall(split)
        if self.exp.training_data is None and missing:
            split = self._timed("generate questions", partial(self._top_up, kb, split, missing))
        return questions, split

    def _top_up(self, kb: KnowledgeBase, split: Split, missing: int) -> Split:
        trained = len({c.id for c in split.tuned_training})
        generated = generated_questions(kb, generation_request(missing),
                                        seed=self.exp.split.seed,
                                        progress=self._bar("generate questions"))
        split, added = top_up_training(split, generated)
        self.prepared.append(
            f"Training questions: the question file left {trained} to train on, so {added} "
            f"generated from the documents (`ragtune testset`, seed {self.exp.split.seed}) "
            "were added to both adapters' training; none states a fact the evaluation asks "
            "about.")
        self.log(f"training topped up with {added} generated questions")
        return split

    def _synthetic(self, kb: KnowledgeBase, split: Split) -> list[Change]:
        """A change set made from the facts the evaluation asks about (`ragtune.lab.freshness`):
        edited copies of their documents, every new fact verified absent from the corpus."""
        out = self.out / "changes"
        if out.exists():
            shutil.rmtree(out)
        corpus = _corpus(kb)
        cases = [replace(c, gold_doc_ids=tuple(doc_label(g) for g in c.gold_doc_ids))
                 for c in split.eval]
        searcher = searcher_for(kb)

        def retrieve(question: str) -> list[tuple[str, str]]:
            hits = searcher.search(question, k=FRESH_NEIGHBOURS, mode="hybrid").hits
            return [(doc_label(h.doc_id), h.text) for h in hits]

        self.edits = synthetic_changes(self.out / "documents", cases, corpus, out,
                                       limit=self.exp.synthetic_changes,
                                       seed=self.exp.split.seed, retrieve=retrieve)
        self.prepared.append(
            f"Freshness probe: no change set given, so {len(self.edits)} facts the evaluation "
            "asks about were rewritten in copies of their documents (a figure given other "
            "digits, a name another made-up name; each new fact verified absent from every "
            f"document first; seed {self.exp.split.seed}): who answers with the new fact after "
            "the re-sync, and who still says the old one." if self.edits else
            "Freshness probe: no change set given, and no evaluated fact could be rewritten "
            "(none is a figure or a name stated in one text document only), so freshness was "
            "not measured.")
        self.log(f"synthetic change set: {len(self.edits)} facts in "
                 f"{len({e.doc_id for e in self.edits})} documents")
        return [Change(e.question_id, e.doc_id, (e.old,), (e.new,)) for e in self.edits]

    def _record_rates(self, split: Split, changes: int, lab: LabResult) -> None:
        if self.plan_ is None:
            return
        counts = replace(self.plan_.counts, eval=len(split.eval),
                         paraphrases=len(split.paraphrases), tuned_training=self.tuned_count,
                         hybrid_training=len(split.hybrid_training), fresh=changes)
        record_rates(self.settings.home, counts, {s.stage: s.seconds or 0.0 for s in
                                                  self.stages}, self.exp, lab.created_at or "")

    def _notes(self, split: Split, changed: int) -> list[str]:
        b = self.exp.budgets
        unanswerable = sum(not c.answerable for c in split.eval)
        return [
            f"Evaluation sample: {len(split.eval)} held-out questions ({unanswerable} "
            f"unanswerable; the {changed} whose facts the change set replaces are always in it), "
            f"{len(split.paraphrases)} of them asked again in other words (consistency).",
            f"Training: tuned on {self.tuned_count} examples for {b.tuned_epochs} "
            f"epoch(s); hybrid on {len(split.hybrid_training)} RAFT examples for "
            f"{b.hybrid_epochs} epoch(s); LoRA r={b.lora_r}, learning rate {b.learning_rate}.",
            f"Model: base, rag and rag+schema run the plain {self.settings.generator.name}; "
            "tuned and hybrid add the adapters trained here. (`ragtune ask` answers with the "
            "bundled grounded reader by default; the lab leaves it off, so that what training "
            "buys is measured against the untrained model.)",
            "Correct = the answer states a reference fact: it contains one, or is a shorter form "
            "keeping every figure (EUR 12 for EUR 12 per month; never EUR 25 for EUR 27).",
            f"Latency: retrieval to answer per question, generation batched {b.eval_batch_size} "
            "at a time on this machine, so p50 is about one batch's time.",
        ]

    # --- stages ------------------------------------------------------------------------------

    def _timed(self, name: str, work: Callable[[], Any]) -> Any:
        self.log(f"{name} ...{self._eta(name)}")
        t0 = time.perf_counter()
        result = work()
        seconds = round(time.perf_counter() - t0, 1)
        self.stages = [s for s in self.stages if s.stage != name]
        self.stages.append(Stage(stage=name, seconds=seconds))
        self.log(f"{name}: {seconds:.1f} s")
        return result

    def _eta(self, name: str) -> str:
        """` (about 40 s; about 6.5 min left)`: the plan's estimate for this stage and for the
        rest, scaled by how the finished stages compared with their estimates."""
        if self.plan_ is None or self.plan_.stage_seconds(name) is None:
            return ""
        done = {s.stage: s.seconds or 0.0 for s in self.stages}
        planned = {s.stage: s.seconds for s in self.plan_.stages}
        spent = sum(done[n] for n in done if n in planned)
        expected = sum(planned[n] for n in done if n in planned)
        pace = (spent + PACE_PRIOR) / (expected + PACE_PRIOR)  # steadier than a first stage
        left = sum(v for n, v in planned.items() if n not in done) * pace
        return (f" (about {duration(planned[name] * pace)}; about {duration(left)} left in "
                "all)")

    def _checklist(self) -> ChecklistAnswers | None:
        if self.answers is not None:
            return self.answers
        if self.exp.checklist is None:
            self.prepared.append(
                "Checklist: not given, so the recommendation is decided from the measurements "
                "alone (every architecture compared on correctness, freshness, format and "
                "refusal); answer it (`ragtune assess`, or --checklist) to weigh your "
                "workload's needs too.")
            return None
        return load_answers(self.exp.resolve(self.exp.checklist))

    def _ingest(self) -> KnowledgeBase:
        src = self.exp.resolve(self.exp.knowledge_base.documents)
        docs = self.out / "documents"
        if docs.exists():
            shutil.rmtree(docs)
        shutil.copytree(src, docs)
        kb = KnowledgeBase(self.exp.kb_name, self.settings)
        owner = kb.store.get_meta().get(LAB_META_KEY) if kb.exists() else self.exp.name
        if owner != self.exp.name:
            built = f"by the lab {owner!r}" if owner else "outside the lab"
            raise InputError(
                f"knowledge base {kb.name!r} already exists, built {built}: compare syncs its "
                "knowledge base to the experiment's documents (deleting any others), so name "
                "one of its own in knowledge_base.name")
        kb.ingest([docs], sync=True, groups=self.exp.knowledge_base.groups,
                   progress=self._bar("ingest"))
        kb.store.set_meta({LAB_META_KEY: self.exp.name})
        return kb

    def _resolve_gold(self, kb: KnowledgeBase, split: Split) -> Split:
        """Gold documents are named by file name in the question file; the knowledge base's
        document ids are absolute paths of the working copy (`self.doc_ids` maps them)."""
        self.doc_ids = {doc_label(d): d for d in kb.store.document_hashes()}
        unknown = sorted({g for c in split.eval + split.tuned_training + split.hybrid_training
                          for g in c.gold_doc_ids if g not in self.doc_ids})
        if unknown:
            where = self.exp.resolve(self.exp.questions) if self.exp.questions else "questions"
            raise InputError(f"{where}: gold document(s) not in the documents: "
                             f"{', '.join(unknown[:5])}")

        def fix(cases: list[EvalCase]) -> list[EvalCase]:
            return [self._gold_ids(c) for c in cases]

        return replace(split, eval=fix(split.eval), paraphrases=fix(split.paraphrases),
                       tuned_training=split.tuned_training,  # targets name documents by label
                       hybrid_training=fix(split.hybrid_training))

    def _gold_ids(self, case: EvalCase) -> EvalCase:
        return replace(case, gold_doc_ids=tuple(self.doc_ids.get(g, g)
                                                for g in case.gold_doc_ids))

    def _apply_changes(self, kb: KnowledgeBase) -> dict[str, Any]:
        docs = self.out / "documents"
        changed = (self.exp.resolve(self.exp.changes.documents) if self.exp.changes is not None
                   else self.out / "changes" / "documents")
        for path in sorted(changed.rglob("*")):
            if path.is_file():
                target = docs / path.relative_to(changed)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        t0 = time.perf_counter()
        report = kb.ingest([docs], sync=True, groups=self.exp.knowledge_base.groups,
                           progress=self._bar("re-sync"))
        seconds = round(time.perf_counter() - t0, 2)
        return {"seconds": seconds, "report": {k: v for k, v in report.to_dict().items()
                                               if isinstance(v, int | float)}}

    def _tune(self, epochs: int) -> Any:
        return self.settings.tune.model_copy(update={"epochs": epochs, "val_split": 0.05,
                                                     "save_every": 0})

    def _tuned_examples(self, split: Split) -> list[TrainingExample]:
        """The experiment's own training file (checked for evaluation questions), or the
        closed-book pairs made from the training phrasings."""
        if self.exp.training_data is None:
            return build_closed_book_examples(split.tuned_training, self.trained_style)
        path = self.exp.resolve(self.exp.training_data)
        examples = load_training_data(path, self.settings.tune.min_examples)
        check_no_leak(examples, split, path)
        return examples

    def _train_tuned(self, kb: KnowledgeBase, split: Split, examples: list[TrainingExample]
                     ) -> Path:
        out = self.out / "adapters" / "tuned"
        data_file = out / "closed-book-data.jsonl"
        if self.exp.training_data is not None:
            data_file = self.exp.resolve(self.exp.training_data)
        docs = {self.doc_ids[g] for c in split.tuned_training for g in c.gold_doc_ids
                if g in self.doc_ids}
        result = train_adapter(examples, out, self.settings,
                               tune=self._tune(self.exp.budgets.tuned_epochs),
                               data_file=data_file,
                               shape=None if self.exp.training_data else "closed-book",
                               knowledge_base=knowledge_base_info(kb, docs),
                               progress=self._train_bar("train tuned"),
                               save_examples=self.exp.training_data is None)
        self.log("tuned adapter: " + ("reused (manifest matches)" if result.already_trained
                                      else f"trained on {len(examples)} examples"))
        return out

    def _train_hybrid(self, kb: KnowledgeBase, split: Split) -> Path:
        out = self.out / "adapters" / "hybrid"
        report, result = train_raft_adapter(
            kb, split.hybrid_training, out, self.settings, style=self.trained_style,
            tune=self._tune(self.exp.budgets.hybrid_epochs),
            progress=self._train_bar("train hybrid"))
        self.log("hybrid adapter: " + ("reused (manifest matches)" if result.already_trained
                                       else f"trained on {len(report.examples)} RAFT examples"))
        return out

    @property
    def trained_style(self) -> PromptStyle:
        return PromptStyle(system=self.exp.task.system, examples=False, schema=self.schema,
                           tell_schema=False)

    def _tune_retrieval(self, kb: KnowledgeBase, split: Split) -> RetrievalTuning:
        """The retrieval levers (ranking, fusion weights, the prompt's k and per-document
        limit), chosen on every training phrasing that names gold documents, reported on the
        evaluation questions. Chunking and embedder tuning are `ragtune tune-retrieval`'s
        (they rebuild the knowledge base)."""
        train = [self._gold_ids(c) for c in split.tuned_training if c.gold_doc_ids]
        heldout = [c for c in split.eval if c.gold_doc_ids]
        if not train or not heldout:
            raise InputError("rag-tuned-retrieval needs training and evaluation questions with "
                             "gold_doc_ids")
        tuning = tune_retrieval(kb, train, heldout, chunkings=(), embedder=None,
                                ks=tuple(sorted({1, 2, 3, 5, self.exp.budgets.k})),
                                seed=self.exp.split.seed, progress=self.log)
        self.log(f"retrieval levers: {tuning.ranker.name}, k={tuning.k}, per document "
                 f"{tuning.per_doc or 'any'} (held-out nDCG@10 {tuning.before['ndcg@10']:.3f} "
                 f"-> {tuning.after['ndcg@10']:.3f})")
        return tuning

    def _levers_reason(self, metrics: dict[str, ArchMetrics]) -> str:
        """What fixing retrieval bought, and what training bought on top of it."""
        assert self.levers is not None
        b, a = self.levers.before, self.levers.after
        line = (f"Retrieval levers ({self.levers.ranker.name}, k={self.levers.k}) changed "
                f"recall@10 by {a['recall@10'] - b['recall@10']:+.3f} and the gold document "
                f"reaching the prompt by {a['prompt_recall'] - b['prompt_recall']:+.3f} on "
                f"{self.levers.heldout_queries} evaluation questions (chosen on "
                f"{self.levers.train_queries} training phrasings)")
        if b["recall@10"] >= 0.95:
            line += (f"; retrieval was not the gap here (recall@10 {b['recall@10']:.2f} "
                     f"before tuning)")
        tuned = metrics.get("rag-tuned-retrieval")
        hybrid = metrics.get("hybrid")
        if tuned is not None and tuned.correct is not None:
            line += f"; rag-tuned-retrieval answered {tuned.correct:.2f} correctly"
            if hybrid is not None and hybrid.correct is not None:
                line += (f", and training (hybrid) then changed correctness by "
                         f"{hybrid.correct - tuned.correct:+.2f}")
        return line + "."

    def _evaluator(self, kb: KnowledgeBase, arch: Architecture, adapters: dict[str, Path]
                   ) -> Evaluator:
        settings = self.settings
        if arch.tuned_retrieval:
            assert self.levers is not None
            sections = self.levers.sections()
            settings = settings.adopting({"retrieval": sections["retrieval"],
                                          "answer": sections["answer"]})
            kb = KnowledgeBase(kb.name, settings, store=kb.store, embedder=kb.embedder,
                               counter=kb.counter)  # the same documents, searched as tuned
        if arch.adapter is not None:
            settings = settings.model_copy(update={"generator": settings.generator.model_copy(
                update={"adapter": str(adapters[arch.adapter])})})
        style = self.trained_style if arch.trained_prompt else PromptStyle(schema=self.schema)
        return Evaluator(kb, arch.runs_as, settings, generator=generator_for(settings),
                         schema=self.schema, style=style, enforce_schema=arch.constrained,
                         correct=states)

    def _evaluate(self, evaluator: Evaluator, cases: list[EvalCase], arch: str, kind: str
                  ) -> EvalRun:
        run = evaluator.run(cases, progress=self._bar(f"{kind} {arch}"),
                            batch=self.exp.budgets.eval_batch_size)
        self._keep_passages(evaluator.kb, run.results)
        return run

    def _subrun(self, evaluator: Evaluator, run: EvalRun, start: int, stop: int | None
                ) -> EvalRun:
        results = run.results[start:stop]
        config = dict(run.config) | {"cases": len(results)}
        return EvalRun(config, results, evaluator.summarize(results) if results else {
            "cases": 0, "metrics": {}, "failure_causes": {}})

    def _evaluate_arch(self, evaluator: Evaluator, arch: Architecture, split: Split
                       ) -> dict[str, EvalRun]:
        """The evaluation questions and their paraphrases in one pass (full batches), kept as
        two saved runs."""
        combined = self._timed(f"evaluate {arch.name}", partial(
            self._evaluate, evaluator, split.eval + split.paraphrases, arch.name, "eval"))
        n = len(split.eval)
        runs = {"eval": self._subrun(evaluator, combined, 0, n),
                "paraphrases": self._subrun(evaluator, combined, n, None)}
        runs["eval"].save(self.out / "runs" / _slug(arch.name))
        runs["paraphrases"].save(self.out / "runs" / f"{_slug(arch.name)}-paraphrases")
        return runs

    def _probe(self, kb: KnowledgeBase, archs: list[Architecture],
               evaluators: dict[str, Evaluator], runs: dict[str, dict[str, EvalRun]],
               changes: list[Any], fresh_cases: list[EvalCase]) -> Freshness:
        """The freshness probe: apply the change set, re-sync (timed), re-ask the changed
        facts' questions with every architecture, nothing retrained."""
        if not changes:
            return Freshness(changed_documents=[], questions=0, resync_seconds=None)
        resync = self._timed("apply change set + re-sync", partial(self._apply_changes, kb))
        for a in archs:
            run = self._timed(f"freshness {a.name}", partial(
                self._evaluate, evaluators[a.name], fresh_cases, a.name, "fresh"))
            run.save(self.out / "runs" / f"{_slug(a.name)}-fresh")
            runs[a.name]["fresh"] = run
        return Freshness(changed_documents=sorted({c.doc_id for c in changes}),
                         questions=len(fresh_cases), resync_seconds=resync["seconds"],
                         resync=resync["report"], synthetic=bool(self.edits),
                         edits=[e.to_dict() for e in self.edits])

    def _keep_passages(self, kb: KnowledgeBase, results: list[CaseResult]) -> None:
        wanted = {p["chunk_id"] for r in results for p in r.passages} - set(self.passages)
        for chunk in kb.store.get_chunks(wanted):
            self.passages[chunk.id] = (chunk.title, chunk.text[:PASSAGE_CHARS])

    def _bar(self, label: str) -> ProgressFn:
        return self.stage_fn(label, None)

    def _train_bar(self, label: str) -> Callable[[Any], None]:
        advance = self.stage_fn(label, None)
        seen = {"step": 0}

        def update(p: Any) -> None:  # a TrainProgress
            advance(max(0, p.step - seen["step"]), p.total_steps)
            seen["step"] = max(seen["step"], p.step)
        return update

    # --- measurements ------------------------------------------------------------------------

    def _metrics(self, arch: Architecture, runs: dict[str, EvalRun], changes: list[Any],
                 adapters: dict[str, Path], kb: KnowledgeBase, freshness: Freshness
                 ) -> ArchMetrics:
        main = runs["eval"]
        m = main.summary["metrics"]
        old = {c.question_id: c for c in changes}
        fresh = runs.get("fresh")
        return ArchMetrics(
            correct=_mean(_correct(r) for r in main.results),
            faithfulness=m.get("faithfulness"),
            citation_accuracy=_mean(_citation_accuracy(r) for r in main.results),
            format_valid=_mean(self._format_valid(r) for r in main.results),
            refusal_correct=m.get("refusal_correct"),
            false_refusal_rate=m.get("false_refusal_rate"),
            recall_at_k=m.get("recall@k"),
            freshness_before=_mean(_correct(r) for r in main.results if r.id in old),
            freshness_after=_mean(_correct(r) for r in fresh.results) if fresh else None,
            stale_after=_mean(_correct(r, old[r.id].old_answers)
                              for r in fresh.results) if fresh else None,
            consistency=_consistency(main.results, runs["paraphrases"].results),
            latency_ms_p50=m.get("latency_ms_p50"),
            latency_ms_p95=m.get("latency_ms_p95"),
            prompt_tokens=m.get("prompt_tokens"),
            output_tokens=m.get("output_tokens"),
            **self._costs(arch, adapters, kb, freshness),
        )

    def _costs(self, arch: Architecture, adapters: dict[str, Path], kb: KnowledgeBase,
               freshness: Freshness) -> dict[str, Any]:
        """What the architecture took to train, and what absorbing the change set costs it:
        a re-sync where it retrieves, else a retraining where it has an adapter."""
        costs: dict[str, Any] = {
            "training_seconds": 0.0, "adapter_stale": None,
            "change_cost_seconds": freshness.resync_seconds if arch.retrieves else None,
            "change_cost": (f"re-sync {len(freshness.changed_documents)} documents"
                            if arch.retrieves else "cannot absorb it (no retrieval, no "
                            "training)"),
        }
        if arch.adapter is None:
            return costs
        manifest = read_manifest(adapters[arch.adapter])
        staleness = check_staleness(manifest, kb)
        costs["training_seconds"] = round(manifest.training.seconds, 1)
        costs["adapter_stale"] = bool(staleness.changed or staleness.removed)
        costs["adapter_stale_documents"] = [doc_label(d) for d in staleness.changed
                                            + staleness.removed]
        if not arch.retrieves:
            costs["change_cost_seconds"] = costs["training_seconds"]
            costs["change_cost"] = (f"retrain to learn the new facts (training took "
                                    f"{costs['training_seconds']:.0f} s)")
        return costs

    def _format_valid(self, result: CaseResult) -> float | None:
        """Whether the model's own output was valid for the schema (None when nothing was
        generated: a refusal before generation is the system's, not the model's)."""
        if not result.raw_output.strip():
            return None
        return float(not schema_errors(result.raw_output, self.schema))

    def _recommend(self, checklist: ChecklistAnswers | None, metrics: dict[str, ArchMetrics]
                   ) -> LabRecommendation:
        """The checklist decided by the measurements, as `ragtune assess --evidence` decides
        from the lab.json."""
        assessment = assess(checklist, lab_evidence(metrics, str(self.out)))
        return LabRecommendation.model_validate(assessment.to_dict())

    # --- the report --------------------------------------------------------------------------

    def _cases(self, archs: list[Architecture], runs: dict[str, dict[str, EvalRun]]
               ) -> list[LabCase]:
        rows: dict[tuple[str, str], LabCase] = {}
        for a in archs:
            for kind, run in runs[a.name].items():
                for r in run.results:
                    row = rows.setdefault((kind, r.id), LabCase(
                        id=r.id, kind=CASE_KINDS[kind], question=r.question,
                        answers=r.answers, gold_doc_ids=r.metadata.get("gold_doc_ids", []),
                        by_arch={}))
                    row.by_arch[a.name] = self._case_entry(r)
        return list(rows.values())

    def _case_entry(self, r: CaseResult) -> CaseAnswer:
        correct = _correct(r)
        valid = self._format_valid(r)
        return CaseAnswer(
            answer=r.answer, raw_output=r.raw_output, refused=r.refused,
            refusal_reason=r.refusal_reason,
            correct=None if correct is None else bool(correct),
            format_valid=None if valid is None else bool(valid),
            cited_docs=_cited_docs(r),
            cause=r.attribution.cause if r.attribution else None,
            latency_ms=r.latency_ms,
            passages=[CasePassage(n=p["n"], doc_id=p["doc_id"],
                                  title=self.passages.get(p["chunk_id"], ("", ""))[0],
                                  text=self.passages.get(p["chunk_id"], ("", ""))[1])
                      for p in r.passages],
        )

    def _write(self, lab: LabResult) -> dict[str, Path]:
        return write_report(lab, self.out)


# --- per-case measures ---------------------------------------------------------------------------


def states(answer: str, references: Any) -> bool:
    """Whether `answer` states one of the reference facts: it contains a reference as whole
    words, or it is a shorter form of one that keeps every number (`EUR 12` for `EUR 12 per
    month`, token F1 >= 0.5; figures as `ragtune.text.figures` reads them, so `EUR 1,234,567`
    keeps `1234567`). Token F1 alone would credit `EUR 25` for `EUR 27`: a fact lab's answers
    are mostly figures, where one wrong digit is a wrong answer."""
    refs = [r for r in references if r.strip()]
    if not answer.strip() or not refs:
        return False
    if contains_answer(answer, refs):
        return True
    stated = figures(answer)
    return any(figures(ref) <= stated and token_f1(answer, [ref]) >= 0.5 for ref in refs)


def _correct(r: CaseResult, references: Any | None = None) -> float | None:
    """1.0 when the (not refused) answer states a reference fact; None for unanswerable cases.
    (The evaluator scored `r.answers` with `states` already; other references are scored
    here, e.g. the old facts of a freshness question.)"""
    refs = r.answers if references is None else references
    if not refs:
        return None
    return float(not r.refused and states(_answer_text(r), refs))


def _answer_text(r: CaseResult) -> str:
    """The answer itself: a JSON answer's `answer` field, else the text without markers."""
    try:
        data = json.loads(r.answer)
    except ValueError:
        return strip_citations(r.answer)
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return strip_citations(data["answer"])
    return strip_citations(r.answer)


def _cited_docs(r: CaseResult) -> list[str]:
    """Documents the answer cites: its resolved citations, else (closed-book) the document ids
    its JSON `sources` names."""
    if r.citations:
        return list(dict.fromkeys(doc_label(c["doc_id"]) for c in r.citations))
    try:
        data = json.loads(r.raw_output)
    except ValueError:
        return []
    sources = data.get("sources") if isinstance(data, dict) else None
    return [s for s in sources if isinstance(s, str)] if isinstance(sources, list) else []


def _citation_accuracy(r: CaseResult) -> float | None:
    """Share of the cited documents that are gold (answered answerable cases; 0 when the
    answer cites nothing)."""
    gold = set(r.metadata.get("gold_doc_ids", []))
    if not r.answers or r.refused or not gold:
        return None
    cited = _cited_docs(r)
    return sum(d in gold for d in cited) / len(cited) if cited else 0.0


def _consistency(main: list[CaseResult], paraphrases: list[CaseResult]) -> float | None:
    """Share of paraphrase pairs answered alike: both refused, or both answered with the same
    answer (token F1 >= 0.5 between them)."""
    by_id = {r.id: r for r in main}
    agree = []
    for p in paraphrases:
        r = by_id.get(p.id)
        if r is None:
            continue
        if r.refused or p.refused:
            agree.append(float(r.refused == p.refused))
            continue
        a, b = _answer_text(r), _answer_text(p)
        same = normalize_words(a) == normalize_words(b) or token_f1(a, [b]) >= 0.5
        agree.append(float(same))
    return _mean(agree)


def check_no_leak(examples: list[TrainingExample], split: Split, path: Path) -> None:
    """No evaluation question (or paraphrase) may appear in the user turns of training data."""
    asked = {normalize_words(c.question): c.id for c in split.eval + split.paraphrases}
    for example in examples:
        for m in example.messages:
            if m["role"] != "user":
                continue
            text = normalize_words(m["content"])
            hit = next((q for q in asked if q and f" {q} " in f" {text} "), None)
            if hit is not None:
                raise InputError(f"{path}:{example.line}: contains the evaluation question "
                                 f"{asked[hit]!r} ({hit!r}); evaluation questions must not be "
                                 "trained on")


def _eval_phrasing(q: Any, split: Split) -> str:
    """A phrasing of `q` that no training example uses (for change-set questions outside the
    evaluation sample)."""
    trained = {normalize_words(c.question) for c in split.tuned_training
               + split.hybrid_training}
    return next((p for p in q.phrasings if normalize_words(p) not in trained),
                q.phrasings[-1])


def _corpus(kb: KnowledgeBase) -> dict[str, str]:
    """File name -> the document's text, as the knowledge base holds it."""
    return {doc_label(d): "\n".join(c.text for c in kb.store.chunks_of(d))
            for d in kb.store.document_hashes()}


def _chunk_tokens(exp: Experiment, settings: Settings) -> int:
    return exp.knowledge_base.chunk_tokens or settings.chunking.max_tokens


def _mean(values: Any) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), 4) if kept else None


def _slug(name: str) -> str:
    return name.replace("+", "-")


def _version() -> str:
    from ragtune.version import __version__

    return __version__
