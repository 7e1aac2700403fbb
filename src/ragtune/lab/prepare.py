"""What `ragtune compare --docs DIR` fills in when a team brings only documents.

    >>> exp = docs_experiment(Path("handbook/"), questions=None, checklist=None)
    >>> questions = generated_questions(kb, default_question_count(40), seed=0)
    >>> rewrite, how = paraphraser(settings)

- **Questions**: a test set generated from the documents (`ragtune testset`: fill-in-the-blank
  questions whose answer is a figure, a name or an uncommon word of one chunk, and unanswerable
  ones made by swapping in a term from an unrelated document), several per document so that a
  small folder still gives a test set, one phrasing each (so the split is by question).
- **Paraphrases** for the consistency check, when a question has one phrasing: the configured
  generator rewrites it when it is a served model (kept only when every figure and name
  survives), else a deterministic rewrite: the bundled 135M model is too small to paraphrase
  reliably, so its rewrites would measure the paraphraser, not the architecture.
- **The task**: no schema gives the plain cited answer (`DEFAULT_SCHEMA`).
- **The change set**: `ragtune.lab.freshness` makes a synthetic one.
- **Gold documents** a question file does not name: the documents that state an answer
  (`infer_gold`), so retrieval is scored, RAFT has its oracle passage and a fact can be edited.
- **Training questions** when a question file leaves fewer than `TRAINING_FLOOR` to train on:
  generated ones from the documents (`top_up_training`), none stating a fact the evaluation asks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ragtune.answering.prompt import doc_label
from ragtune.config import Settings
from ragtune.documents.loaders import SUPPORTED_SUFFIXES
from ragtune.evaluation.testset import BLANK, generate_testset
from ragtune.kb import KnowledgeBase
from ragtune.lab.experiment import (
    Experiment,
    KnowledgeBaseSpec,
    LabQuestion,
    Split,
    experiment_name,
)
from ragtune.lab.freshness import TEXT_SUFFIXES
from ragtune.models.generators import GenerationConfig, Generator
from ragtune.text import contains_answer, figures, normalize_words

UNANSWERABLE_SHARE = 0.2  # of generated questions, as in the bundled sample
MIN_QUESTIONS, MAX_QUESTIONS, PER_DOCUMENT = 24, 120, 3
SENTENCE_CHARS, OTHER_FILE = 120, 20
TRAINING_FLOOR = 12  # questions that train, at the least (a docs-only run's smallest split)


def docs_experiment(documents: Path, questions: Path | None = None,
                    checklist: Path | None = None, seed: int = 0) -> Experiment:
    """The experiment `compare --docs` runs: the documents, and what was given; every other
    field keeps its default (see `ragtune.lab.experiment`)."""
    return Experiment(name=experiment_name(documents),
                      knowledge_base=KnowledgeBaseSpec(documents=documents.resolve()),
                      questions=questions.resolve() if questions else None,
                      checklist=checklist.resolve() if checklist else None,
                      split={"seed": seed})  # type: ignore[arg-type]


def document_files(folder: Path) -> list[Path]:
    """The files an ingest of `folder` reads (by suffix), for sizing before any work."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.startswith("."))


def default_question_count(documents: int) -> int:
    """Questions to generate for a folder of `documents`: three per document, at least 24 (a
    split and a freshness probe need a few), at most 120 (`--budget` shrinks it further)."""
    return max(MIN_QUESTIONS, min(MAX_QUESTIONS, PER_DOCUMENT * documents))


def askable(files: list[Path]) -> int:
    """About how many questions `files` can give, read before the ingest: a question per
    sentence, at most (`SENTENCE_CHARS` of text each; `OTHER_FILE` sentences for a file that is
    not text, such as a PDF): the cap of a plan for a small folder."""
    chars = sum(p.stat().st_size if p.suffix.lower() in TEXT_SUFFIXES
                else OTHER_FILE * SENTENCE_CHARS for p in files)
    return max(1, chars // SENTENCE_CHARS)


def generated_questions(kb: KnowledgeBase, count: int, seed: int = 0,
                        progress: Callable[[int, int | None], None] | None = None
                        ) -> list[LabQuestion]:
    """`count` questions generated from `kb` (about a fifth unanswerable), as lab questions
    with one phrasing, naming gold documents by file name. Seeded: the same documents and seed
    give the same questions."""
    documents = len(kb.store.document_hashes())
    per_doc = max(1, math.ceil(count * (1 + UNANSWERABLE_SHARE) / max(1, documents)))
    cases = generate_testset(kb, questions=count, unanswerable=UNANSWERABLE_SHARE, seed=seed,
                             per_doc=per_doc, progress=progress)
    return [LabQuestion(c.id, (c.question,), c.answers,
                        tuple(doc_label(d) for d in c.gold_doc_ids)) for c in cases]


def infer_gold(questions: list[LabQuestion], corpus: dict[str, str],
               rank: Callable[[str], list[str]] | None = None
               ) -> tuple[list[LabQuestion], int, int]:
    """(questions, inferred, unfound): every answerable question that names no gold document
    gets the documents of `corpus` (file name -> text) that state its most specific answer
    (the longest one any document states: "every 90 days" over "90 days"), in the order `rank`
    (question -> file names, best first; a retriever) puts them, so the first is the one a
    trained answer cites. `unfound` counts those no document states (they keep none)."""
    out, inferred, unfound = [], 0, 0
    for q in questions:
        if q.answerable and not q.gold_doc_ids:
            golds = _stating(q, corpus)
            if rank is not None and golds:
                order = {name: i for i, name in enumerate(rank(q.phrasings[0]))}
                golds = sorted(golds, key=lambda name: order.get(name, len(order)))
            inferred += bool(golds)
            unfound += not golds
            q = LabQuestion(q.id, q.phrasings, q.answers, tuple(golds))
        out.append(q)
    return out, inferred, unfound


def _stating(q: LabQuestion, corpus: dict[str, str]) -> list[str]:
    """The documents stating `q`'s most specific answer, by file name."""
    for answer in sorted(set(q.answers), key=lambda a: (-len(normalize_words(a).split()), a)):
        names = [name for name, text in sorted(corpus.items()) if contains_answer(text, [answer])]
        if names:
            return names
    return []


def training_shortfall(split: Split, floor: int = TRAINING_FLOOR) -> int:
    """Questions `split` lacks for training (0 when it has `floor` of them)."""
    return max(0, floor - len({c.id for c in split.tuned_training}))


def generation_request(missing: int) -> int:
    """Questions to generate for `missing` training questions: twice as many and a few more,
    as some state an evaluated fact and are skipped."""
    return 2 * missing + 4


def top_up_training(split: Split, generated: list[LabQuestion], floor: int = TRAINING_FLOOR
                    ) -> tuple[Split, int]:
    """(split, added): `split` with generated questions added to both adapters' training until
    `floor` questions train. A generated question is skipped when its sentence (the blank filled
    in) or its answer states an answer the evaluation asks for, or the other way round: the
    tuned model still never sees an evaluated fact."""
    asked = [a for c in split.eval + split.paraphrases for a in c.answers]
    trained = {normalize_words(c.question) for c in split.tuned_training}
    tuned, hybrid = list(split.tuned_training), list(split.hybrid_training)
    added, wanted = 0, training_shortfall(split, floor)
    for q in generated:
        if added >= wanted:
            break
        phrasing = q.phrasings[0]
        stated = [phrasing.replace(BLANK, a) for a in q.answers] or [phrasing]
        if normalize_words(phrasing) in trained or (asked and (
                any(contains_answer(t, asked) for t in stated)
                or any(contains_answer(a, list(q.answers)) for a in asked if q.answers))):
            continue
        case = replace(q.case(phrasing, "train"), id=f"generated-{q.id}")
        tuned.append(case)
        hybrid.append(case)
        trained.add(normalize_words(phrasing))
        added += 1
    return replace(split, tuned_training=tuned, hybrid_training=hybrid), added


# --- paraphrases ----------------------------------------------------------------------------

_CLOZE = re.compile(r'^Fill in the blank: "(?P<sentence>.*)"$', re.DOTALL)
_LEAD = re.compile(r"^(please|could you|can you|tell me|i'd like to know)[,:]?\s+", re.I)
REWRITE_METHOD = ("a deterministic rewrite (a fill-in-the-blank question asked as a question "
                  "about the gap; any other question with another lead-in): the configured "
                  "generator is too small to paraphrase reliably")
PARAPHRASE_PROMPT = ("Rewrite the user's question in other words. Keep every name and number "
                     "exactly as written. Reply with the rewritten question only.")


def paraphrase(question: str) -> str:
    """A deterministic rewrite of `question` for the consistency check: the same content, other
    words around it (`REWRITE_METHOD`)."""
    q = question.strip()
    cloze = _CLOZE.match(q)
    if cloze:
        return f'Which words are missing where {BLANK} stands in this text: ' \
               f'"{cloze.group("sentence")}"?'
    body = _LEAD.sub("", q).rstrip(" ?.")
    return f"I have a question: {body}?"


def _keeps_facts(original: str, candidate: str) -> bool:
    """A generated paraphrase is kept when it is one line, says something else than the
    question, and keeps its figures and capitalised names."""
    names = set(re.findall(r"(?<!^)(?<![.?!] )\b[A-Z][\w'-]+", original.strip()))
    return (bool(candidate) and "\n" not in candidate and len(candidate) < 3 * len(original) + 40
            and normalize_words(candidate) != normalize_words(original)
            and figures(original) <= figures(candidate)
            and all(n in candidate for n in names))


def is_small(generator_name: str) -> bool:
    """Whether the generator is one of the bundled small models (too small to paraphrase)."""
    return generator_name.startswith("local:")


def paraphraser(settings: Settings, generator: Generator | None = None
                ) -> tuple[Callable[[str], str], Callable[[], str]]:
    """(rewrite a question, say how the rewrites were made): the configured generator for a
    served model (falling back to `paraphrase` for a rewrite that loses a fact), else
    `paraphrase` alone."""
    counts = {"generator": 0, "rewrite": 0}
    name = settings.generator.name
    use_model = generator is not None or not is_small(name)
    models: list[Generator] = [generator] if generator is not None else []

    def rewrite(question: str) -> str:
        if use_model:
            if not models:
                models.append(_generator(settings))
            reply = models[0].generate([{"role": "system", "content": PARAPHRASE_PROMPT},
                                    {"role": "user", "content": question}],
                                   GenerationConfig(max_new_tokens=64)).text.strip().strip('"')
            if _keeps_facts(question, reply):
                counts["generator"] += 1
                return reply
        counts["rewrite"] += 1
        return paraphrase(question)

    def method() -> str:
        if not use_model:
            return f"Paraphrases: {REWRITE_METHOD} ({name})."
        label = generator.name if generator is not None else name
        return (f"Paraphrases: {counts['generator']} written by {label} (kept only when every "
                f"figure and name survives), {counts['rewrite']} by a deterministic rewrite "
                "where the model's lost a fact.")
    return rewrite, method


def _generator(settings: Settings) -> Generator:
    from ragtune.answering.ask import generator_for

    return generator_for(settings)
