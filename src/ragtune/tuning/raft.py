"""RAFT-style training examples: questions answered from retrieved context, with citations.

Retrieval-augmented fine-tuning (Zhang et al. 2024, "RAFT") trains the model on the prompts it
will see at answer time: the oracle passage (one holding a reference answer) among distractor
passages, with a target that answers from the oracle and cites it. Some examples withhold the
oracle, and unanswerable questions have none: their target is the refusal, so the model learns
to say so instead of inventing.

Prompts are built by `ragtune.answering.prompt.build_prompt`, the very function `ask` uses:
same system message, worked examples, numbered and escaped passages, token budget. Distractors
are drawn from the question's own retrieved passages (hard negatives, as at answer time) that hold
no reference answer. The worked examples' answers carry `weight: 0` (context, not learned).

    >>> report = build_raft_examples(kb, load_cases(Path("cases.jsonl")), count_tokens)
    >>> report.examples[0].messages[-1]["content"]
    '1886 [2]'
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.answering.prompt import (
    PromptStyle,
    build_closed_book_prompt,
    build_prompt,
    doc_label,
)
from ragtune.cases import EvalCase
from ragtune.config import Settings, TuneSettings
from ragtune.errors import InputError
from ragtune.kb import KnowledgeBase
from ragtune.retrieval import Hit, searcher_for
from ragtune.text import contains_answer
from ragtune.tuning.data import TrainingExample
from ragtune.tuning.manifest import KnowledgeBaseInfo, resolve_base
from ragtune.tuning.trainer import ProgressFn, TrainResult, load_tokenizer, train_adapter

RAFT_DATA = "raft-data.jsonl"
RAFT_REFUSAL = "I don't know."
"""The refusal target: what the answer prompt tells the model to reply (`SYSTEM_PROMPT`)."""


@dataclass
class RaftReport:
    """The examples and how they were made."""

    examples: list[TrainingExample]
    answered: int = 0  # oracle in the prompt, target = cited answer
    withheld: int = 0  # answerable, oracle withheld, target = refusal
    unanswerable: int = 0  # no answer exists, target = refusal
    skipped: list[dict[str, str]] = field(default_factory=list)  # case id, reason
    documents: set[str] = field(default_factory=set)  # documents quoted in the prompts

    def to_dict(self) -> dict[str, Any]:
        return {"examples": len(self.examples), "answered": self.answered,
                "withheld": self.withheld, "unanswerable": self.unanswerable,
                "skipped": self.skipped, "documents": len(self.documents)}


def _choose_passages(case: EvalCase, hits: Sequence[Hit], oracle: Hit | None,
                     keep_oracle: bool, distractors: int, rng: random.Random) -> list[Hit]:
    """`distractors` passages that do not hold the answer (one more when the oracle is
    withheld), in random order, with the oracle (when kept) at a random place among them."""
    others = [h for h in hits if not (case.answerable and contains_answer(h.text, case.answers))
              and (oracle is None or h.chunk_id != oracle.chunk_id)]
    wanted = distractors + (0 if keep_oracle else 1)
    chosen = rng.sample(others, min(wanted, len(others)))
    if keep_oracle:
        assert oracle is not None
        chosen.insert(rng.randrange(len(chosen) + 1), oracle)
    return chosen


def build_raft_examples(
    kb: KnowledgeBase,
    cases: Sequence[EvalCase],
    count_tokens: Callable[[str], int],
    *,
    distractors: int = 3,
    withhold: float = 0.2,
    pool: int = 20,
    seed: int = 0,
    mode: str | None = None,
    budget: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    style: PromptStyle | None = None,
) -> RaftReport:
    """One training example per usable case (see the module docstring). `kb` is a
    `KnowledgeBase`; `count_tokens` the generator's tokenizer (for the prompt budget). `style`:
    the prompt and answer format to train on (default: `ask`'s; with a JSON schema the targets
    are JSON, citing the oracle's document when the schema has `sources`)."""
    style = style or PromptStyle()
    if not kb.exists():
        raise InputError(f"knowledge base {kb.name!r} does not exist; ingest first")
    if not 0 <= withhold <= 1:
        raise InputError(f"withhold must be in [0, 1], got {withhold}")
    settings = kb.settings.answer
    budget = budget or settings.context_tokens
    mode = mode or settings.mode
    searcher = searcher_for(kb)
    rng = random.Random(seed)
    notify = progress or (lambda done, total: None)
    notify(0, len(cases))
    report = RaftReport([])
    for case in cases:
        hits = searcher.search(case.question, k=pool, mode=mode).hits
        oracle = _oracle(kb, case, hits) if case.answerable else None
        if case.answerable and oracle is None:
            report.skipped.append({"id": case.id, "question": case.question,
                                   "reason": "no passage holds a reference answer"})
            notify(1, None)
            continue
        keep_oracle = oracle is not None and rng.random() >= withhold
        chosen = _choose_passages(case, hits, oracle, keep_oracle, distractors, rng)
        if not chosen:
            report.skipped.append({"id": case.id, "question": case.question,
                                   "reason": "no passages retrieved"})
            notify(1, None)
            continue
        flags = {c.id: c.flags for c in kb.store.get_chunks(h.chunk_id for h in chosen)
                 if c.flags}
        prompt = build_prompt(case.question, chosen, count_tokens, budget, flags, style=style)
        target = style.render_answer(RAFT_REFUSAL, None, None)
        if keep_oracle:
            assert oracle is not None
            number = next((p.number for p in prompt.passages if p.chunk_id == oracle.chunk_id),
                          None)
            if number is None:  # the budget left it out: put it first
                chosen.remove(oracle)
                chosen.insert(0, oracle)
                prompt = build_prompt(case.question, chosen, count_tokens, budget, flags,
                                      style=style)
                number = 1
            target = style.render_answer(case.answers[0], number, doc_label(oracle.doc_id))
            report.answered += 1
        elif case.answerable:
            report.withheld += 1
        else:
            report.unanswerable += 1
        messages = [dict(m) | ({"weight": 0} if m["role"] == "assistant" else {})
                    for m in prompt.messages]
        messages.append({"role": "assistant", "content": target})
        report.examples.append(TrainingExample(tuple(messages), len(report.examples) + 1,
                                               "raft"))
        report.documents |= {p.doc_id for p in prompt.passages}
        notify(1, None)
    return report


def build_closed_book_examples(cases: Sequence[EvalCase], style: PromptStyle | None = None
                               ) -> list[TrainingExample]:
    """Closed-book question/answer pairs (how teams usually try to teach a model their
    documents): the prompt the closed-book architecture asks with, and the first reference answer
    as the target (citing the case's first gold document when the style lists sources);
    unanswerable cases teach the refusal."""
    style = style or PromptStyle()
    examples: list[TrainingExample] = []
    for case in cases:
        prompt = build_closed_book_prompt(case.question, style=style)
        if case.answerable:
            source = doc_label(case.gold_doc_ids[0]) if case.gold_doc_ids else None
            target = style.render_answer(case.answers[0], None, source)
        else:
            target = style.render_answer(RAFT_REFUSAL, None, None)
        messages = [dict(m) | ({"weight": 0} if m["role"] == "assistant" else {})
                    for m in prompt.messages]
        messages.append({"role": "assistant", "content": target})
        examples.append(TrainingExample(tuple(messages), len(examples) + 1, "closed-book"))
    return examples


def _oracle(kb: KnowledgeBase, case: EvalCase, hits: Sequence[Hit]) -> Hit | None:
    """The best-ranked retrieved passage holding a reference answer (from a gold document when
    the case names them); else such a chunk of a gold document straight from the store."""
    gold = set(case.gold_doc_ids)
    for h in hits:
        if (not gold or h.doc_id in gold) and contains_answer(h.text, case.answers):
            return h
    for doc_id in case.gold_doc_ids:
        for chunk in kb.store.chunks_of(doc_id):
            if contains_answer(chunk.text, case.answers):
                return Hit(rank=0, score=0.0, doc_id=chunk.doc_id, chunk_id=chunk.id,
                           text=chunk.text, metadata={"title": chunk.title})
    return None


def knowledge_base_info(kb: KnowledgeBase, documents: set[str]) -> KnowledgeBaseInfo:
    """What the manifest records about the knowledge base the examples came from."""
    hashes = kb.store.document_hashes()
    return KnowledgeBaseInfo(
        name=kb.name, generation=kb.store.generation(), documents=len(hashes),
        embedder=kb.settings.embedder.name,
        document_hashes={d: hashes[d] for d in sorted(documents) if d in hashes})


def train_raft_adapter(
    kb: KnowledgeBase,
    cases: Sequence[EvalCase],
    out: Path,
    settings: Settings,
    *,
    cases_file: Path | None = None,
    progress: ProgressFn | None = None,
    build_progress: Callable[[int, int | None], None] | None = None,
    restart: bool = False,
    style: PromptStyle | None = None,
    tune: TuneSettings | None = None,
) -> tuple[RaftReport, TrainResult]:
    """Build RAFT examples from `kb` and `cases` (settings `tune.raft_*`), keep them beside the
    adapter as `raft-data.jsonl`, and train on them; the manifest records the knowledge base's
    generation and the documents the prompts quoted (for the staleness check)."""
    tune = tune or settings.tune
    folder, _ = resolve_base(tune.base, settings.cache_dir)
    tokenizer = load_tokenizer(folder)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    report = build_raft_examples(kb, cases, count, distractors=tune.raft_distractors,
                                 withhold=tune.raft_withhold, pool=tune.raft_pool,
                                 seed=tune.seed, progress=build_progress, style=style)
    if not report.examples:
        reasons = sorted({s["reason"] for s in report.skipped})
        raise InputError(f"no RAFT examples could be built ({'; '.join(reasons)})")
    result = train_adapter(report.examples, out, settings, tune=tune,
                           data_file=Path(out) / RAFT_DATA,
                           shape="raft", knowledge_base=knowledge_base_info(kb, report.documents),
                           cases_file=cases_file, progress=progress, restart=restart,
                           save_examples=True)
    return report, result
