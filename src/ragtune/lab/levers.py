"""Retrieval levers, measured on a knowledge base's own questions (`ragtune tune-retrieval`).

Fix retrieval before training: each lever is tried on the questions' training split and the
winner reported on the held-out split, by the gold documents the questions name.

- **ranking**: BM25, dense, and the hybrid by z-score fusion (BM25 weight 0.1–0.5) or
  reciprocal rank fusion (k = 20, 60), ranked by document (nDCG@10, recall@10);
- **chunking**: other chunk sizes and overlaps, each measured on a trial copy of the knowledge
  base (`<name>.c<max>-<overlap>`; vectors of unchanged chunk texts reused);
- **embedder**: the bundled embedder fine-tuned on the training questions (in-batch and mined
  hard negatives, `ragtune.tuning.embedder`), measured on a trial copy re-embedded with it. The
  embedder learns from part of the training split and its ranking is chosen on the rest, so no
  figure used for a choice comes from a question the embedder saw; once chosen, it is
  fine-tuned again on the whole training split (the held-out split still unseen);
- **prompt**: how many passages the prompt gets (k) and at most how many from one document,
  by the share of questions whose gold document reaches the prompt, each passage charged
  `PASSAGE_COST` (a longer prompt is slower and, for a small model, harder to read).

    >>> train, heldout = split_cases(load_cases(Path("cases.jsonl")), heldout=0.3, seed=0)
    >>> tuning = tune_retrieval(kb, train, heldout, embedder=EmbedderTuning(epochs=1))
    >>> tuning.sections()   # what `--apply` adopts
    >>> apply_tuning(kb, tuning)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.cases import EvalCase
from ragtune.config import ChunkingSettings, RetrievalSettings
from ragtune.errors import InputError
from ragtune.evaluation.ir import evaluate_run
from ragtune.kb import IngestReport, KnowledgeBase
from ragtune.models.embedders import Embedder
from ragtune.retrieval import searcher_for
from ragtune.retrieval.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Retriever,
)
from ragtune.retrieval.search import hybrid_options
from ragtune.tuning.embedder import EmbedderPair, record_metrics, tune_embedder

Progress = Callable[[str], None]
"""Told what each stage is doing (a line for a terminal or a log)."""

DEPTH = 100
PROMPT_KS = (1, 2, 3, 5, 8)
PER_DOCS: tuple[int | None, ...] = (None, 1, 2)
CHUNKINGS = ((128, 16), (384, 48))
MIN_GAIN = 0.005  # a lever must beat the current setting by this much nDCG@10 to be chosen
PASSAGE_COST = 0.02  # prompt recall a passage must add to earn its place in the prompt


@dataclass(frozen=True)
class Ranker:
    """One way to rank: a mode and, for the hybrid, its fusion and weights."""

    mode: str
    fusion: str = "zscore"
    bm25_weight: float | None = None
    rrf_k: float = 60.0

    @property
    def name(self) -> str:
        if self.mode != "hybrid":
            return self.mode
        if self.fusion == "rrf":
            return f"hybrid rrf k={self.rrf_k:g}"
        w = 0.3 if self.bm25_weight is None else self.bm25_weight
        return f"hybrid zscore {w:.1f}/{1 - w:.1f}"

    def retrieval_settings(self) -> dict[str, Any]:
        """The `[retrieval]` keys that rank this way (`[answer] mode` names the mode)."""
        return {"fusion": self.fusion, "bm25_weight": self.bm25_weight, "rrf_k": self.rrf_k}

    def build(self, dense: DenseRetriever) -> Retriever:
        bm25 = BM25Retriever()
        if self.mode == "bm25":
            return bm25
        if self.mode == "dense":
            return dense
        options = hybrid_options(RetrievalSettings(**self.retrieval_settings()))
        return HybridRetriever(bm25, dense, self.fusion, depth=DEPTH, **options)


RANKERS = (
    Ranker("bm25"), Ranker("dense"),
    *(Ranker("hybrid", "zscore", w) for w in (0.1, 0.2, 0.3, 0.4, 0.5)),
    *(Ranker("hybrid", "rrf", None, k) for k in (20.0, 60.0)),
)


@dataclass(frozen=True)
class EmbedderTuning:
    """Options of the embedder lever (None in `tune_retrieval`: not tried)."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    negatives: int = 1
    select_share: float = 0.2  # of the training split: where the tuned ranking is chosen
    refit: bool = True  # once chosen, fine-tune again on the whole training split
    out: Path | None = None  # the final model's folder (default <home>/embedders/<kb>-<hash>)


@dataclass
class LeverRow:
    """One setting of one lever, measured on both splits."""

    lever: str
    setting: str
    train: dict[str, float]
    heldout: dict[str, float]
    chosen: bool = False
    cost: dict[str, Any] = field(default_factory=dict)
    train_queries: int = 0
    heldout_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"lever": self.lever, "setting": self.setting,
                "train": {k: round(v, 4) for k, v in self.train.items()},
                "heldout": {k: round(v, 4) for k, v in self.heldout.items()},
                "train_queries": self.train_queries, "heldout_queries": self.heldout_queries,
                "chosen": self.chosen, "cost": self.cost}


@dataclass
class RetrievalTuning:
    """What `tune_retrieval` tried, chose, and what the choice gives on held-out questions."""

    kb: str
    seed: int
    train_queries: int
    heldout_queries: int
    rows: list[LeverRow]
    ranker: Ranker
    k: int
    per_doc: int | None
    chunking: ChunkingSettings
    embedder: str
    before: dict[str, float]
    after: dict[str, float]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def sections(self) -> dict[str, dict[str, Any]]:
        """The settings sections the knowledge base adopts with `--apply`."""
        return {
            "retrieval": {**self.ranker.retrieval_settings(), "per_doc": self.per_doc},
            "answer": {"mode": self.ranker.mode, "k": self.k},
            "chunking": self.chunking.model_dump(),
            "embedder": {"name": self.embedder},
        }

    def toml(self) -> str:
        """The chosen settings as a `config.toml` fragment."""
        lines = [f"# ragtune tune-retrieval on knowledge base {self.kb!r}: chosen on "
                 f"{self.train_queries} training questions, measured on {self.heldout_queries} "
                 f"held-out (seed {self.seed})"]
        for section, values in self.sections().items():
            lines.append(f"\n[{section}]")
            for key, value in values.items():
                if value is not None:
                    lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kb": self.kb, "seed": self.seed, "train_queries": self.train_queries,
            "heldout_queries": self.heldout_queries,
            "chosen": {"ranking": self.ranker.name, **self.sections()},
            "before": {k: round(v, 4) for k, v in self.before.items()},
            "after": {k: round(v, 4) for k, v in self.after.items()},
            "levers": [r.to_dict() for r in self.rows],
            "notes": self.notes, "seconds": round(self.seconds, 1),
        }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def split_cases(cases: Sequence[EvalCase], heldout: float = 0.3, seed: int = 0
                ) -> tuple[list[EvalCase], list[EvalCase]]:
    """A seeded split of the cases that name gold documents: (training, held-out).

    The order of the file does not matter: each case's place is a hash of the seed and its
    question, so the same cases and seed always split the same way."""
    usable = [c for c in cases if c.gold_doc_ids]
    if not 0 < heldout < 1:
        raise InputError(f"the held-out share must be in (0, 1), got {heldout}")
    if len(usable) < 4:
        raise InputError(f"tuning retrieval needs at least 4 questions with gold_doc_ids, got "
                         f"{len(usable)} (of {len(cases)})")

    def place(case: EvalCase) -> str:
        return hashlib.sha256(f"{seed}\0{case.id}\0{case.question}".encode()).hexdigest()

    ordered = sorted(usable, key=place)
    cut = max(1, min(len(ordered) - 1, round(len(ordered) * heldout)))
    return ordered[cut:], ordered[:cut]


class _QueryCache:
    """An embedder that remembers query vectors: every ranker asks for the same queries."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner, self.name = embedder, embedder.name
        self._queries: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.inner.dim

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self._queries:
            self._queries[text] = self.inner.embed_query(text)
        return self._queries[text]


class Bench:
    """Measures rankers on one knowledge base (its index and query vectors built once)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.index = searcher_for(kb).index()
        self.dense = DenseRetriever(_QueryCache(kb.embedder))

    def document_run(self, cases: Sequence[EvalCase], ranker: Ranker
                     ) -> dict[str, dict[str, float]]:
        """Each case's documents ranked (one per document, best first), by case key."""
        retriever = ranker.build(self.dense)
        run: dict[str, dict[str, float]] = {}
        for i, case in enumerate(cases):
            ranking = retriever.retrieve(case.question, self.index, DEPTH, None, per_doc=1)
            docs = self.index.chunk_doc[ranking.rows]
            run[_key(case, i)] = {self.index.doc_ids[d]: float(s)
                                  for d, s in zip(docs.tolist(), ranking.scores.tolist(),
                                                  strict=True) if np.isfinite(s)}
        return run

    def measure(self, cases: Sequence[EvalCase], ranker: Ranker) -> dict[str, float]:
        """nDCG@10, recall@10 and recall@100 of the documents, averaged over the cases."""
        run = self.document_run(cases, ranker)
        return evaluate_run(_qrels(cases), run, ndcg_ks=(10,), recall_ks=(10, 100),
                            mrr_ks=())

    def prompt_recall(self, cases: Sequence[EvalCase], ranker: Ranker, k: int,
                      per_doc: int | None) -> float:
        """The share of cases with a gold document among the k passages a prompt gets."""
        retriever = ranker.build(self.dense)
        found = 0
        for case in cases:
            ranking = retriever.retrieve(case.question, self.index, k, None, per_doc)
            docs = {self.index.doc_ids[d] for d in self.index.chunk_doc[ranking.rows].tolist()}
            found += bool(docs & set(case.gold_doc_ids))
        return found / max(1, len(cases))

    def mine_pairs(self, cases: Sequence[EvalCase], ranker: Ranker, negatives: int = 1
                   ) -> list[EmbedderPair]:
        """Training pairs for the embedder: each (question, gold document) with the gold
        document's best-ranked passage as the positive and the best-ranked passages of other
        documents as hard negatives."""
        retriever = ranker.build(self.dense)
        texts = self._chunk_texts()
        pairs: list[EmbedderPair] = []
        for case in cases:
            ranking = retriever.retrieve(case.question, self.index, 30, None, per_doc=1)
            best: dict[str, str] = {}
            for row in ranking.rows.tolist():
                best.setdefault(self.index.doc_ids[self.index.chunk_doc[row]], texts[row])
            gold = [d for d in case.gold_doc_ids if d in self.index.doc_ids]
            golds = frozenset(best.get(d) or self._first_text(d, texts) for d in gold)
            hard = tuple(t for d, t in best.items() if d not in case.gold_doc_ids)[:negatives]
            # sorted: a set's order changes with every process (string hashing is salted),
            # and the pairs' order is the training order and part of their hash
            pairs.extend(EmbedderPair(case.question, text, hard, golds)
                         for text in sorted(golds))
        return pairs

    def _chunk_texts(self) -> list[str]:
        chunks = {c.id: c for c in self.kb.store.get_chunks(self.index.chunk_ids)}
        return [chunks[cid].embedding_text if cid in chunks else ""
                for cid in self.index.chunk_ids]

    def _first_text(self, doc_id: str, texts: list[str]) -> str:
        d = self.index.doc_ids.index(doc_id)
        return texts[int(self.index.segment_starts[d])]


def _key(case: EvalCase, i: int) -> str:
    return case.id or f"#{i}"


def _qrels(cases: Sequence[EvalCase]) -> dict[str, dict[str, int]]:
    return {_key(c, i): dict.fromkeys(c.gold_doc_ids, 1) for i, c in enumerate(cases)}


def current_ranker(kb: KnowledgeBase) -> Ranker:
    """How the knowledge base ranks today (its `[answer] mode` and `[retrieval]` settings)."""
    r = kb.settings.retrieval
    return Ranker(kb.settings.answer.mode, r.fusion, r.bm25_weight, r.rrf_k)


def tune_retrieval(
    kb: KnowledgeBase,
    train: Sequence[EvalCase],
    heldout: Sequence[EvalCase],
    *,
    rankers: Sequence[Ranker] = RANKERS,
    chunkings: Sequence[tuple[int, int]] = CHUNKINGS,
    embedder: EmbedderTuning | None = None,
    ks: Sequence[int] = PROMPT_KS,
    per_docs: Sequence[int | None] = PER_DOCS,
    seed: int = 0,
    progress: Progress | None = None,
) -> RetrievalTuning:
    """Try every lever on `train`, choose on `train`, report on `heldout` (see the module)."""
    say = progress or (lambda line: None)
    started = time.perf_counter()
    base = Bench(kb)
    before_ranker = current_ranker(kb)
    rows: list[LeverRow] = []
    notes: list[str] = []

    def row(lever: str, setting: str, bench: Bench, ranker: Ranker, **cost: Any) -> LeverRow:
        trained = bench.measure(train, ranker)
        t = time.perf_counter()
        held = bench.measure(heldout, ranker)
        cost["ms_per_query"] = round((time.perf_counter() - t) * 1000 / max(1, len(heldout)), 2)
        made = LeverRow(lever, setting, trained, held, cost=cost,
                        train_queries=len(train), heldout_queries=len(heldout))
        rows.append(made)
        return made

    say(f"ranking: {len(rankers)} ways on {len(train)} training questions")
    ranking_rows = [row("ranking", r.name, base, r) for r in rankers]
    names = [r.name for r in rankers]
    best_i = _best(ranking_rows, prefer=names.index(before_ranker.name)
                   if before_ranker.name in names else None)
    ranking_rows[best_i].chosen = True
    ranker = rankers[best_i]
    chunk_rows = [row("chunking", _chunking_name(kb.settings.chunking), base, ranker,
                      reembedded_chunks=0, seconds=0.0)]
    trials: list[tuple[ChunkingSettings, KnowledgeBase, Bench]] = [
        (kb.settings.chunking, kb, base)]
    for max_tokens, overlap in chunkings:
        chunking = ChunkingSettings(max_tokens=max_tokens, overlap_tokens=overlap)
        if chunking == kb.settings.chunking:
            continue
        say(f"chunking: trial copy at {max_tokens} tokens, overlap {overlap}")
        trial, report = _trial_copy(kb, f"c{max_tokens}-{overlap}", say, chunking=chunking)
        trials.append((chunking, trial, Bench(trial)))
        chunk_rows.append(row("chunking", _chunking_name(chunking), trials[-1][2], ranker,
                              reembedded_chunks=report.chunks_embedded,
                              seconds=round(report.seconds, 1)))
    best_c = _best(chunk_rows, prefer=0)
    chunk_rows[best_c].chosen = True
    chosen_chunking, chosen_kb, bench = trials[best_c]

    chosen_embedder = chosen_kb.settings.embedder.name
    if embedder is not None:
        tuned = _embedder_lever(chosen_kb, bench, ranker, train, heldout, rankers, embedder,
                                seed, say, rows)
        if tuned is not None:
            ranker, chosen_kb, bench, chosen_embedder = tuned
        else:
            notes.append("the tuned embedder did not beat the current one on the questions it "
                         "was not trained on; it is not chosen")

    say("prompt: passages per prompt and per document")
    k, per_doc = _prompt_lever(bench, ranker, train, heldout, ks, per_docs, rows)
    if k != kb.settings.answer.k:
        notes.append(f"answer.k changes from {kb.settings.answer.k} to {k}: the refusal "
                     f"thresholds were calibrated with k={kb.settings.answer.k}; run "
                     f"`ragtune calibrate` after adopting")
    before = {**base.measure(heldout, before_ranker),
              "prompt_recall": base.prompt_recall(heldout, before_ranker, kb.settings.answer.k,
                                                  kb.settings.retrieval.per_doc)}
    after = {**bench.measure(heldout, ranker),
             "prompt_recall": bench.prompt_recall(heldout, ranker, k, per_doc)}
    return RetrievalTuning(kb.name, seed, len(train), len(heldout), rows, ranker, k, per_doc,
                           chosen_chunking, chosen_embedder, before, after, notes,
                           time.perf_counter() - started)


def _best(rows: Sequence[LeverRow], prefer: int | None) -> int:
    """The row with the best training nDCG@10; the `prefer`red (current) one unless another
    beats it by `MIN_GAIN`."""
    scores = [r.train["ndcg@10"] for r in rows]
    best = int(np.argmax(scores))
    if prefer is not None and scores[best] - scores[prefer] < MIN_GAIN:
        return prefer
    return best


def _chunking_name(c: ChunkingSettings) -> str:
    return f"{c.max_tokens} tokens, overlap {c.overlap_tokens}"


def _trial_copy(kb: KnowledgeBase, suffix: str, say: Progress, *,
                chunking: ChunkingSettings | None = None,
                embedder: str | None = None) -> tuple[KnowledgeBase, IngestReport]:
    """A copy of `kb` under `<name>.<suffix>` with other chunking or another embedder (kept:
    a second run reuses it, copying only what changed since)."""
    sections: dict[str, Any] = {}
    if chunking is not None:
        sections["chunking"] = chunking.model_dump()
    if embedder is not None:
        sections["embedder"] = {"name": embedder}
    name = f"{kb.name}.{suffix}"[:64]
    trial = KnowledgeBase(name, kb.settings.adopting(sections))
    report = trial.copy_documents(kb, progress=_every_tenth(say, f"{name}: documents copied"))
    return trial, report


def _every_tenth(say: Progress, label: str) -> Callable[[int, int | None], None]:
    """A (done, total) progress callback that says how far it got at every tenth."""
    seen = {"done": 0, "total": 0, "said": 0}

    def update(done: int, total: int | None) -> None:
        if total is not None:
            seen["total"] = total
        seen["done"] += done
        step = max(1, seen["total"] // 10)
        if done and (seen["done"] - seen["said"] >= step or seen["done"] == seen["total"]):
            seen["said"] = seen["done"]
            say(f"{label}: {seen['done']}/{seen['total']}")

    return update


@dataclass
class _Tuned:
    """An embedder fine-tuned on some questions, and a trial copy re-embedded with it."""

    name: str
    folder: Path
    pairs: int
    epochs: int
    train_seconds: float
    copy: KnowledgeBase
    report: IngestReport

    def cost(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "reembed_seconds": round(
            self.report.seconds, 1), "reembedded_chunks": self.report.chunks_embedded,
            "folder": str(self.folder)}


def _tuned_copy(kb: KnowledgeBase, bench: Bench, ranker: Ranker, cases: Sequence[EvalCase],
                options: EmbedderTuning, seed: int, say: Progress, out: Path | None = None
                ) -> _Tuned:
    """Fine-tune the embedder on `cases` (pairs mined with `ranker`) and re-embed a copy of
    `kb` with it; a folder and copy made before from the same pairs are reused."""
    from ragtune.tuning.embedder import pairs_sha256

    pairs = bench.mine_pairs(cases, ranker, options.negatives)
    digest = pairs_sha256(pairs)[:12]
    out = out or kb.settings.home / "embedders" / f"{kb.name}-{digest}"
    say(f"embedder: fine-tuning on {len(pairs)} pairs from {len(cases)} questions "
        f"({options.epochs} epoch(s)) into {out}")

    def step_done(step: int, steps: int, loss: float) -> None:
        if step % 10 == 0 or step == steps:
            say(f"embedder: step {step}/{steps}, loss {loss:.3f}")

    manifest = tune_embedder(
        pairs, out, epochs=options.epochs, batch_size=options.batch_size,
        learning_rate=options.learning_rate, seed=seed,
        command=f"ragtune tune-retrieval --kb {kb.name} --embedder", progress=step_done)
    name = f"local:{out.resolve()}"
    say(f"embedder: re-embedding a copy of {kb.name!r} with it")
    trial, report = _trial_copy(kb, f"e{digest}", say, embedder=name)
    return _Tuned(name, out, len(pairs), manifest.training.epochs, manifest.training.seconds,
                  trial, report)


def _embedder_lever(kb: KnowledgeBase, bench: Bench, ranker: Ranker, train: Sequence[EvalCase],
                    heldout: Sequence[EvalCase], rankers: Sequence[Ranker],
                    options: EmbedderTuning, seed: int, say: Progress, rows: list[LeverRow]
                    ) -> tuple[Ranker, KnowledgeBase, Bench, str] | None:
    """Fine-tune the embedder on part of `train` and choose its ranking on the rest; if it
    beats the current embedder there, fine-tune it again on the whole of `train` (with
    `options.refit`). The tuned ranker, copy, bench and embedder name, or None."""
    fit, select = split_cases(train, heldout=options.select_share, seed=seed + 1)
    first = _tuned_copy(kb, bench, ranker, fit, options, seed, say,
                        None if options.refit else options.out)
    tuned_bench = Bench(first.copy)
    base_select = max((bench.measure(select, r)["ndcg@10"], i) for i, r in enumerate(rankers))
    tuned_select = max((tuned_bench.measure(select, r)["ndcg@10"], i)
                       for i, r in enumerate(rankers))
    tuned_ranker = rankers[tuned_select[1]]
    select_key = f"select_ndcg@10 ({len(select)} q)"
    made = LeverRow(
        "embedder", f"tuned on {len(fit)} of the training questions ({first.pairs} pairs, "
        f"{first.epochs} epoch(s)), {tuned_ranker.name}", tuned_bench.measure(fit, tuned_ranker),
        tuned_bench.measure(heldout, tuned_ranker), cost=first.cost(),
        train_queries=len(fit), heldout_queries=len(heldout))
    made.train[select_key] = tuned_select[0]
    base_row = LeverRow("embedder", f"current ({kb.settings.embedder.name}), "
                        f"{rankers[base_select[1]].name}",
                        bench.measure(fit, rankers[base_select[1]]),
                        bench.measure(heldout, rankers[base_select[1]]),
                        train_queries=len(fit), heldout_queries=len(heldout))
    base_row.train[select_key] = base_select[0]
    rows.extend([base_row, made])
    _record(first.folder, made, tuned_select[0], base_select[0])
    if tuned_select[0] - base_select[0] < MIN_GAIN:
        base_row.chosen = True
        return None
    if not options.refit:
        made.chosen = True
        return tuned_ranker, first.copy, tuned_bench, first.name
    say("embedder: it beat the current one; fine-tuning it again on the whole training split")
    final = _tuned_copy(kb, bench, ranker, train, options, seed, say, options.out)
    final_bench = Bench(final.copy)
    refit = LeverRow(
        "embedder", f"tuned on all {len(train)} training questions ({final.pairs} pairs, "
        f"{final.epochs} epoch(s)), {tuned_ranker.name}", final_bench.measure(train, tuned_ranker),
        final_bench.measure(heldout, tuned_ranker), chosen=True, cost=final.cost(),
        train_queries=len(train), heldout_queries=len(heldout))
    rows.append(refit)
    _record(final.folder, refit, tuned_select[0], base_select[0])
    return tuned_ranker, final.copy, final_bench, final.name


def _record(folder: Path, row: LeverRow, select: float, base_select: float) -> None:
    """The figures a tuned embedder was chosen and reported with, into its manifest."""
    record_metrics(folder, {"heldout": {k: round(v, 4) for k, v in row.heldout.items()},
                            "heldout_queries": row.heldout_queries,
                            "select_ndcg@10": round(select, 4),
                            "base_select_ndcg@10": round(base_select, 4)})


def _prompt_lever(bench: Bench, ranker: Ranker, train: Sequence[EvalCase],
                  heldout: Sequence[EvalCase], ks: Sequence[int],
                  per_docs: Sequence[int | None], rows: list[LeverRow]) -> tuple[int, int | None]:
    """The passages per prompt and per-document limit that maximise, on `train`, the share of
    questions whose gold document reaches the prompt less `PASSAGE_COST` per passage (more
    passages always find more; each must buy its place). Ties go to fewer passages."""
    measured = []
    for per_doc in per_docs:
        for k in sorted(ks):
            made = LeverRow("prompt", f"k={k}, per document {per_doc or 'any'}",
                            {"prompt_recall": bench.prompt_recall(train, ranker, k, per_doc)},
                            {"prompt_recall": bench.prompt_recall(heldout, ranker, k, per_doc)},
                            train_queries=len(train), heldout_queries=len(heldout))
            made.cost["passages"] = k
            rows.append(made)
            measured.append((made, k, per_doc))
    made, k, per_doc = max(measured, key=lambda m: (
        round(m[0].train["prompt_recall"] - PASSAGE_COST * m[1], 9), -m[1]))
    made.chosen = True
    return k, per_doc


def apply_tuning(kb: KnowledgeBase, tuning: RetrievalTuning,
                 progress: Callable[[int, int | None], None] | None = None) -> IngestReport:
    """Adopt a tuning's choice in `kb`: re-chunk and re-embed in place where chunking or the
    embedder changed (only what changed is written), then record the ranking and prompt
    settings."""
    report = kb.rebuild(tuning.chunking, tuning.embedder, progress)
    sections = tuning.sections()
    kb.adopt_settings({"retrieval": sections["retrieval"], "answer": sections["answer"]})
    return report


__all__ = ["CHUNKINGS", "RANKERS", "Bench", "EmbedderTuning", "LeverRow", "Ranker",
           "RetrievalTuning", "apply_tuning", "current_ranker", "split_cases",
           "tune_retrieval"]
