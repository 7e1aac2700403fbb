"""`ragtune eval`: answer every case with an architecture, score it, attribute its failures.

    >>> run = Evaluator(kb, arch="rag").run(load_cases(Path("cases.jsonl")))
    >>> run.summary["metrics"]["refusal_correct"], run.summary["failure_causes"]
    >>> run.save(Path("runs/rag"))          # config.json, cases.jsonl, summary.json
    >>> compare_runs(load_run(Path("runs/base")), load_run(Path("runs/rag")))

Architectures (`ragtune.architectures`, those that run as themselves): `base` (the generator
alone, closed-book), `rag` (retrieve + grounded answer, as
`ragtune ask`), `tuned` (closed-book with a LoRA adapter) and `hybrid` (retrieve + answer with
an adapter, typically trained RAFT-style by `ragtune tune --raft`). The adapter comes from
`generator.adapter` (`--adapter`); its manifest and staleness go into the run's config. Like
`ask`, `rag` with the bundled model answers with the bundled grounded reader unless
`generator.reader` is off; `base` always runs the plain model (the reader only answers from
passages). The run's config names the generator either way.

Every case keeps its trace: the answer, the refusal reason, the citations, the prompt passages,
where the first gold passage ranked in a deep (top-50) search, each claim's verdict, the metrics
and the failure attribution with its evidence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune import architectures
from ragtune.access import OPERATOR, Access
from ragtune.answering.ask import Answer, Answerer, generator_for
from ragtune.answering.judges import Judge
from ragtune.answering.prompt import PromptStyle, unescape_output
from ragtune.answering.refusal import RefusalPolicy
from ragtune.answering.verify import judge_for
from ragtune.cases import EvalCase
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.evaluation.attribution import (
    CAUSES,
    DEEP_K,
    Attribution,
    CaseEvidence,
    attribute,
    summarize,
)
from ragtune.evaluation.metrics import (
    Price,
    answer_relevance,
    citation_precision_recall,
    contains_answer,
    cost_per_1k,
    exact_match,
    latency_summary,
    mean,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    refusal_correct,
    schema_errors,
    semantic_similarity,
    token_f1,
)
from ragtune.evaluation.online import judge_answer
from ragtune.kb import KnowledgeBase
from ragtune.models.generators import Generator
from ragtune.retrieval import searcher_for

ADAPTED = architectures.adapted()  # the architectures that answer with `generator.adapter`
RUN_FILES = ("config.json", "cases.jsonl", "summary.json")
# Metrics averaged over the cases where they apply (None elsewhere), in report order.
METRICS = (
    "exact_match", "token_f1", "semantic_similarity", "correct", "faithfulness",
    "answer_relevance", "citation_precision", "citation_recall", "schema_valid",
    "refusal_correct", "recall@k", "recall@50", "mrr@10", "ndcg@10",
)
Progress = Callable[[int, int | None], None]


@dataclass
class CaseResult:
    """One evaluated case: what was asked, what came back, its scores and its diagnosis."""

    id: str
    question: str
    answers: list[str]
    answer: str
    refused: bool
    refusal_reason: str | None
    metrics: dict[str, float | None]
    attribution: Attribution | None
    claims: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    passages: list[dict[str, Any]] = field(default_factory=list)
    gold_rank: int | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    generate_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    raw_output: str = ""  # what the model wrote, before citation parsing and refusal

    @property
    def passed(self) -> bool:
        return self.attribution is None

    def to_dict(self, drafts: bool = True) -> dict[str, Any]:
        """The case as saved in `cases.jsonl`; `drafts=False` (what a service client gets)
        leaves a refused case's `raw_output` null: the draft the checks refused may hold what
        a hostile passage asked the model to leak."""
        out = asdict(self)
        if not drafts and self.refused:
            out["raw_output"] = None
        out["passed"] = self.passed
        out["attribution"] = self.attribution.to_dict() if self.attribution else None
        return out

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> CaseResult:
        row = dict(row)
        row.pop("passed", None)
        attribution = row.pop("attribution", None)
        return cls(**row, attribution=Attribution(**attribution) if attribution else None)


@dataclass
class EvalRun:
    """A whole evaluation: its configuration, every case, and the summary."""

    config: dict[str, Any]
    results: list[CaseResult]
    summary: dict[str, Any]

    def save(self, out: Path) -> Path:
        """Write `config.json`, `cases.jsonl` (one trace per case) and `summary.json`."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config, indent=2) + "\n",
                                         encoding="utf-8")
        with (out / "cases.jsonl").open("w", encoding="utf-8") as fh:
            for r in self.results:
                fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n",
                                          encoding="utf-8")
        return out


def load_run(path: Path) -> EvalRun:
    """A saved run (the folder `EvalRun.save` wrote)."""
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if missing:
        raise InputError(f"{path}: not an evaluation run (missing {', '.join(missing)})")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        results = [CaseResult.from_dict(json.loads(line)) for line in
                   (path / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: cannot read evaluation run ({exc})") from exc
    return EvalRun(config, results, summary)


def _with_adapter(arch: architectures.Architecture) -> str:
    """The evaluated architecture that answers as `arch` does, with an adapter."""
    return next(a.name for a in map(architectures.get, architectures.evaluated())
                if a.retrieves == arch.retrieves and a.uses_adapter)


def _sha256(path: Path | None) -> str | None:
    from ragtune.tuning.manifest import file_sha256

    return file_sha256(path) if path is not None and path.is_file() else None


class Evaluator:
    """Evaluates one architecture on one knowledge base. Reuse it for several case files."""

    def __init__(
        self,
        kb: KnowledgeBase,
        arch: str = "rag",
        settings: Settings | None = None,
        generator: Generator | None = None,
        judge: Judge | None = None,
        k: int | None = None,
        mode: str | None = None,
        policy: RefusalPolicy | None = None,
        schema: dict[str, Any] | None = None,
        *,
        style: PromptStyle | None = None,
        enforce_schema: bool = True,
        correct: Callable[[str, Sequence[str]], bool] | None = None,
        groups: Sequence[str] | None = None,
    ) -> None:
        """`correct(answer, references)` replaces the default correctness test (exact match or
        token F1 >= `eval.correct_f1`), e.g. a stricter one for figures. `groups` limits what
        retrieval may see to documents of those access groups (and public ones), as for a
        caller of the service; None = everything (a trusted local run)."""
        if arch not in architectures.evaluated():
            raise InputError(f"arch must be one of {', '.join(architectures.evaluated())}, "
                             f"got {arch!r}")
        if not kb.exists():
            raise InputError(f"knowledge base {kb.name!r} does not exist; ingest first")
        self.kb = kb
        self.arch = arch
        self.architecture = architectures.get(arch)
        self.groups = list(groups) if groups is not None else None
        self.settings = settings or kb.settings
        if not self.architecture.retrieves:  # the reader is trained to answer from passages
            self.settings = self.settings.model_copy(update={
                "generator": self.settings.generator.model_copy(update={"reader": False})})
        adapter = self.settings.generator.adapter
        if generator is None and self.architecture.uses_adapter != (adapter is not None):
            raise InputError(
                f"arch {arch!r} needs an adapter: pass --adapter DIR (generator.adapter)"
                if self.architecture.uses_adapter else
                f"arch {arch!r} runs the model without an adapter, but generator.adapter is "
                f"{adapter}; use --arch {_with_adapter(self.architecture)} with it")
        self.k = k or self.settings.answer.k
        self.mode = mode or self.settings.answer.mode
        self.schema = schema
        self.correct = correct
        self.answerer = Answerer(kb, generator or generator_for(self.settings), policy,
                                 settings=self.settings,
                                 retrieve=self.architecture.retrieves,
                                 schema=schema, style=style, enforce_schema=enforce_schema)
        self.judge = judge or judge_for(self.settings, kb.embedder)
        self.searcher = searcher_for(kb)

    def config(self, cases_file: Path | None, cases: int) -> dict[str, Any]:
        """Everything needed to reproduce (or diff) the run."""
        from ragtune.version import __version__

        store = self.kb.store
        return {
            "ragtune": __version__, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "arch": self.arch, "kb": self.kb.name, "kb_generation": store.generation(),
            "kb_documents": len(store.document_hashes()),
            "cases_file": str(cases_file) if cases_file else None,
            "cases_sha256": _sha256(cases_file), "cases": cases,
            "generator": self.answerer.generator.name, "judge": self.judge.name,
            "judge_threshold": self.judge.threshold, "k": self.k, "mode": self.mode,
            "refusal_policy": asdict(self.answerer.policy),
            "verification": self.verification_info(),
            "schema": self.schema,
            "enforce_schema": self.answerer.enforce_schema,
            "prompt_style": asdict(self.answerer.style) | {"schema": None},
            "adapter": self.adapter_info(),
            "settings": json.loads(self.settings.model_dump_json()),
        }

    def verification_info(self) -> dict[str, Any] | None:
        """How answers were verified before they were scored (None: closed-book or off)."""
        answerer = self.answerer
        if not answerer.retrieve or answerer.on_unverified == "off":
            return None
        verifier = answerer.verifier
        return {"on_unverified": answerer.on_unverified, "judge": verifier.judge.name,
                "threshold": verifier.threshold, "threshold_source": verifier.threshold_source}

    def adapter_info(self) -> dict[str, Any] | None:
        """The adapter's manifest summary and staleness against this knowledge base."""
        from ragtune.tuning.manifest import describe_adapter

        adapter = self.settings.generator.adapter
        if adapter is None or self.arch not in ADAPTED:
            return None
        entry = describe_adapter(Path(adapter), self.settings)
        return entry.to_dict() | {"fingerprint": entry.manifest.fingerprint
                                  if entry.manifest else None}

    def run(self, cases: Sequence[EvalCase], cases_file: Path | None = None,
            progress: Progress | None = None, batch: int | None = None) -> EvalRun:
        """Answer and score every case (in batches of `batch` questions)."""
        if not cases:
            raise InputError("no cases to evaluate")
        notify = progress or (lambda done, total: None)
        size = batch or self.settings.eval.batch_size
        notify(0, len(cases))
        started = time.perf_counter()
        results: list[CaseResult] = []
        for first in range(0, len(cases), size):
            part = cases[first:first + size]
            answers = self.answerer.ask_batch([c.question for c in part], k=self.k,
                                              mode=self.mode, groups=self.groups)
            results.extend(self.score(c, a) for c, a in zip(part, answers, strict=True))
            notify(len(part), None)
        config = self.config(cases_file, len(cases))
        config["seconds"] = round(time.perf_counter() - started, 3)
        return EvalRun(config, results, self.summarize(results))

    # --- one case ---------------------------------------------------------------------------

    def score(self, case: EvalCase, answer: Answer) -> CaseResult:
        s = self.settings.eval
        retrieves = self.architecture.retrieves
        plain = answer.plain.strip()
        m: dict[str, float | None] = dict.fromkeys(METRICS)
        m["refusal_correct"] = float(refusal_correct(answer.refused, case.answerable))
        correct: bool | None = None
        answered = not answer.refused and bool(plain)
        # one embedding call per case: the question, the answer, the references
        vectors = self.kb.embedder.embed([case.question, plain, *case.answers]) if answered \
            else None
        if case.answerable:
            m["exact_match"] = 0.0 if answer.refused else exact_match(plain, case.answers)
            m["token_f1"] = 0.0 if answer.refused else token_f1(plain, case.answers)
            m["semantic_similarity"] = 0.0 if vectors is None else semantic_similarity(
                vectors[1], vectors[2:])
            if self.correct is not None:
                correct = not answer.refused and self.correct(plain, case.answers)
            else:
                correct = not answer.refused and (m["exact_match"] == 1.0
                                                  or (m["token_f1"] or 0.0) >= s.correct_f1)
            m["correct"] = float(correct)
        claims: list[dict[str, Any]] = []
        if vectors is not None:
            m["answer_relevance"] = answer_relevance(vectors[0], vectors[1])
            if retrieves and answer.prompt.passages:
                m["faithfulness"], claims = judge_answer(self.judge, case.question, answer)
        schema_error = None
        schema = case.schema if case.schema is not None else self.schema
        if schema is not None and not answer.refused:
            errors = schema_errors(answer.text, schema)
            schema_error = errors[0] if errors else None
            m["schema_valid"] = float(not errors)
        gold = _Gold(self.kb, case, self.groups) if retrieves and case.answerable else None
        gold_rank, in_prompt = None, False
        if gold is not None:
            deep = self.searcher.search(case.question, k=DEEP_K, mode=self.mode,
                                        groups=self.groups)
            ranked = [(h.chunk_id, h.doc_id, h.text) for h in deep.hits]
            gold_rank = next((i for i, h in enumerate(ranked, 1) if gold.is_gold(*h)), None)
            in_prompt = any(gold.is_gold(p.chunk_id, p.doc_id, unescape_output(p.text))
                            for p in answer.prompt.passages)
            m.update(gold.retrieval_metrics(ranked, self.k))
            if not answer.refused:
                cited = [c.doc_id if gold.doc_level else c.chunk_id for c in answer.citations]
                relevant = gold.relevant_ids(ranked, answer)
                precision, recall = citation_precision_recall(cited, relevant)
                m["citation_precision"] = precision
                m["citation_recall"] = recall if gold.doc_level else None
        evidence = CaseEvidence(
            answerable=case.answerable, refused=answer.refused, correct=correct,
            retrieves=retrieves, gold_rank=gold_rank, gold_in_prompt=in_prompt,
            split_answer=gold.split if gold is not None else False,
            faithfulness=m["faithfulness"], schema_error=schema_error,
            refusal_reason=answer.refusal_reason)
        gen = answer.generation
        return CaseResult(
            id=case.id, question=case.question, answers=list(case.answers), answer=answer.text,
            refused=answer.refused, refusal_reason=answer.refusal_reason, metrics=m,
            attribution=attribute(evidence, s.min_faithfulness), claims=claims,
            citations=[{"n": c.number, "doc_id": c.doc_id, "chunk_id": c.chunk_id,
                        "quote": c.snippet} for c in answer.citations],
            passages=[{"n": p.number, "doc_id": p.doc_id, "chunk_id": p.chunk_id,
                       "score": round(p.score, 4)} for p in answer.prompt.passages],
            gold_rank=gold_rank,
            prompt_tokens=gen.prompt_tokens if gen else 0,
            output_tokens=gen.output_tokens if gen else 0,
            latency_ms=round(answer.timings_ms.get("total", 0.0), 2),
            generate_seconds=round(gen.seconds, 4) if gen else 0.0,
            metadata=dict(case.metadata),
            raw_output=unescape_output(answer.raw_output),
        )

    # --- the whole run ----------------------------------------------------------------------

    def summarize(self, results: Sequence[CaseResult]) -> dict[str, Any]:
        return summarize_results(results, self.answerer.generator.name, self.settings)


def summarize_results(results: Sequence[CaseResult], generator: str, settings: Settings
                      ) -> dict[str, Any]:
    """The `ragtune eval --json` shape: `cases`, `metrics`, `failure_causes` (+ more)."""
    metrics: dict[str, Any] = {name: mean(r.metrics.get(name) for r in results)
                               for name in METRICS}
    metrics["pass_rate"] = sum(r.passed for r in results) / len(results)
    answerable = [r for r in results if r.answers]
    unanswerable = [r for r in results if not r.answers]
    refused_right = sum(r.refused for r in unanswerable)
    refused_all = sum(r.refused for r in results)
    metrics["refusal_precision"] = refused_right / refused_all if refused_all else None
    metrics["refusal_recall"] = refused_right / len(unanswerable) if unanswerable else None
    metrics["false_refusal_rate"] = (sum(r.refused for r in answerable) / len(answerable)
                                     if answerable else None)
    latency = latency_summary([r.latency_ms for r in results])
    metrics["latency_ms_p50"] = latency["p50"]
    metrics["latency_ms_p95"] = latency["p95"]
    prompt_tokens = sum(r.prompt_tokens for r in results) / len(results)
    output_tokens = sum(r.output_tokens for r in results) / len(results)
    seconds = sum(r.generate_seconds for r in results) / len(results)
    metrics["prompt_tokens"] = prompt_tokens
    metrics["output_tokens"] = output_tokens
    price = settings.eval.prices.get(generator)
    metrics["cost_per_1k_queries"] = None if price is None else cost_per_1k(
        prompt_tokens, output_tokens, seconds, Price(**price.model_dump()))
    causes = summarize(r.attribution for r in results)
    return {
        "cases": len(results), "answerable": len(answerable),
        "unanswerable": len(unanswerable), "metrics": metrics,
        "failure_causes": causes["failure_causes"], "remedies": causes["remedies"],
        "generator": generator,
        "price": None if price is None else price.model_dump(),
    }


class _Gold:
    """Where a case's gold evidence is: which chunks hold a reference answer."""

    def __init__(self, kb: KnowledgeBase, case: EvalCase,
                 groups: Sequence[str] | None = None) -> None:
        self.case = case
        self.doc_level = bool(case.gold_doc_ids)
        self.chunks: set[str] = set()  # chunk ids of gold passages (doc-level cases)
        self.split = False
        holding: set[str] = set()
        every: set[str] = set()
        reader = OPERATOR if groups is None else Access.of(groups)
        for doc_id in case.gold_doc_ids:
            doc = kb.store.get_document(doc_id)
            if doc is None or not reader.may_read(doc.groups):
                continue  # a document the caller may not read is one that does not exist
            chunks = kb.store.chunks_of(doc_id)
            every |= {c.id for c in chunks}
            found = {c.id for c in chunks if contains_answer(c.text, case.answers)}
            holding |= found
            if not found and contains_answer(kb.store.document_text(doc_id) or "",
                                             case.answers):
                self.split = True  # in the document, in no single chunk
        if holding:  # a chunk holds an answer whole: those are the gold passages
            self.chunks, self.split = holding, False
        else:  # abstractive answers (or a split one): any chunk of a gold document
            self.chunks = every

    def is_gold(self, chunk_id: str, doc_id: str, text: str) -> bool:
        if self.doc_level:
            return chunk_id in self.chunks
        return contains_answer(text, self.case.answers)

    def relevant_ids(self, ranked: Sequence[tuple[str, str, str]], answer: Answer) -> set[str]:
        """Gold document ids (doc-level), else ids of cited chunks holding an answer."""
        if self.doc_level:
            return set(self.case.gold_doc_ids)
        texts = {h[0]: h[2] for h in ranked}
        texts.update({p.chunk_id: unescape_output(p.text) for p in answer.prompt.passages})
        return {cid for cid, text in texts.items() if contains_answer(text, self.case.answers)}

    def retrieval_metrics(self, ranked: Sequence[tuple[str, str, str]], k: int
                          ) -> dict[str, float]:
        """recall@k (k = the prompt's), recall@50, MRR@10 and nDCG@10 of the deep search:
        over gold documents when the case names them, else over chunks holding an answer."""
        scores: dict[str, float] = {}
        rels: dict[str, int] = {}
        for rank, (chunk_id, doc_id, text) in enumerate(ranked):
            key = doc_id if self.doc_level else chunk_id
            scores.setdefault(key, float(len(ranked) - rank))
            if not self.doc_level and contains_answer(text, self.case.answers):
                rels[key] = 1
        if self.doc_level:
            rels = dict.fromkeys(self.case.gold_doc_ids, 1)
        elif not rels:
            rels = {"(no passage holds an answer)": 1}
        return {"recall@k": recall_at_k(rels, scores, k),
                "recall@50": recall_at_k(rels, scores, DEEP_K),
                "mrr@10": mrr_at_k(rels, scores, 10), "ndcg@10": ndcg_at_k(rels, scores, 10)}


def compare_runs(a: EvalRun, b: EvalRun) -> dict[str, Any]:
    """What changed from run A to run B: metric deltas, cause counts, configuration
    differences, and the cases that flipped (matched by id, then by question)."""
    ma, mb = a.summary["metrics"], b.summary["metrics"]
    metrics = {}
    for name in dict.fromkeys([*ma, *mb]):
        va, vb = ma.get(name), mb.get(name)
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        metrics[name] = {"a": va, "b": vb, "delta": delta}
    ca, cb = a.summary["failure_causes"], b.summary["failure_causes"]
    causes = {c: {"a": ca.get(c, 0), "b": cb.get(c, 0), "delta": cb.get(c, 0) - ca.get(c, 0)}
              for c in CAUSES}
    config = {}
    for key in sorted(set(a.config) | set(b.config)):
        if key in ("created_at", "seconds"):
            continue
        if a.config.get(key) != b.config.get(key):
            config[key] = {"a": a.config.get(key), "b": b.config.get(key)}
    by_id = {r.id or r.question: r for r in a.results}
    fixed, broken, shared = [], [], 0
    for r in b.results:
        other = by_id.get(r.id or r.question)
        if other is None:
            continue
        shared += 1
        if r.passed and not other.passed:
            fixed.append({"id": r.id, "question": r.question,
                          "was": other.attribution.cause if other.attribution else None})
        elif other.passed and not r.passed:
            broken.append({"id": r.id, "question": r.question,
                           "now": r.attribution.cause if r.attribution else None})
    return {"a": a.config.get("arch"), "b": b.config.get("arch"), "shared_cases": shared,
            "metrics": metrics, "failure_causes": causes, "config": config,
            "fixed": fixed, "broken": broken}
