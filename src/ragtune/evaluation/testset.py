"""A test set generated from a knowledge base: seeded, reproducible, no API key needed.

    >>> cases = generate_testset(kb, questions=50, unanswerable=0.2, seed=0)
    >>> write_cases(cases, Path("generated.jsonl"))

Answerable cases: a seeded sample of chunks (`per_doc` per document at most; a chunk is asked
about again, another of its sentences, only once every chunk of its document was); from each,
a sentence with a clear answer in it — a figure, else a name, else its longest uncommon word —
becomes a fill-in-the-blank question whose answer is that span, with the chunk's document as the
gold document (`metadata.chunk_id` names the chunk). With a `writer` generator (an LLM; the bundled
135M model is too weak for this), the question is written by the model instead and kept only when
its answer is copied from the chunk.

Unanswerable cases pair a question with an unrelated passage: a generated question from chunk A
gets one of its figures or names replaced by one from an unrelated document B, so it
asks about something no document states; it is kept only when no chunk of the knowledge base
contains both the new term and the original answer.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragtune.answering.judges import sentences
from ragtune.cases import EvalCase
from ragtune.errors import InputError
from ragtune.jsonl import write_jsonl
from ragtune.kb import KnowledgeBase
from ragtune.models.generators import GenerationConfig, Generator
from ragtune.text import STOPWORDS_EN, contains_answer, figure_spans

BLANK = "____"
_NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)*")
_WORD = re.compile(r"\b[a-z][a-z-]{6,}\b")
_COMMON = STOPWORDS_EN | {"between", "however", "therefore", "through", "without", "because",
                          "although", "including", "different", "several", "whether"}


def _figures(text: str) -> list[str]:
    """Figures that are words of their own (`ragtune.text.figure_spans`): blanked out whole."""
    return figure_spans(text, standalone=True)


def _names(text: str) -> list[str]:
    """Capitalized runs not at the start of a sentence."""
    return [m.group(0).strip() for m in _NAME.finditer(text)]


# The key terms of a sentence, facts first: its figures, else its names.
_KEY_TERMS: tuple[Callable[[str], list[str]], ...] = (_figures, _names)


@dataclass(frozen=True)
class _Source:
    doc_id: str
    chunk_id: str
    text: str


def _answer_span(sentence: str) -> str | None:
    """The span to blank out: a figure, else a name (not sentence-initial), else the longest
    uncommon lowercase word; it must occur once in the sentence."""
    for terms in _KEY_TERMS:
        spans = [s for s in terms(sentence) if sentence.count(s) == 1 and s not in _COMMON]
        if spans:
            return max(spans, key=len)
    words = [w for w in _WORD.findall(sentence) if w not in _COMMON and sentence.count(w) == 1]
    return max(words, key=len) if words else None


def cloze(text: str, rng: random.Random) -> tuple[str, str] | None:
    """(question, answer) from a chunk's text: a fill-in-the-blank sentence, or None."""
    candidates = [s for s in sentences(text) if 8 <= len(s.split()) <= 45]
    rng.shuffle(candidates)
    for sentence in candidates:
        span = _answer_span(sentence)
        if span:
            question = f'Fill in the blank: "{sentence.replace(span, BLANK, 1)}"'
            return question, span
    return None


WRITER_PROMPT = (
    "Write one question that the passage answers, and its answer: a short phrase copied "
    'exactly from the passage. Reply with JSON only: {"question": "...", "answer": "..."}'
)


def written(text: str, writer: Generator) -> tuple[str, str] | None:
    """(question, answer) written by an LLM, kept only when the answer is in the passage."""
    reply = writer.generate([{"role": "system", "content": WRITER_PROMPT},
                             {"role": "user", "content": text}],
                            GenerationConfig(max_new_tokens=96)).text
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    try:
        row = json.loads(match.group(0)) if match else {}
    except json.JSONDecodeError:
        return None
    question, answer = row.get("question"), row.get("answer")
    if (isinstance(question, str) and isinstance(answer, str) and question.strip()
            and answer.strip() and contains_answer(text, [answer])):
        return question.strip(), answer.strip()
    return None


def _swap_term(question: str, answer: str, donor: str, rng: random.Random
               ) -> tuple[str, str] | None:
    """Replace a key term of `question` (not the answer, not inside the blank) with a term of
    the same kind from `donor`; (new question, inserted term) or None."""
    for terms in _KEY_TERMS:  # facts, not wording: a swapped word reads as nonsense
        mine = [t for t in terms(question) if t not in answer and answer not in t
                and t not in _COMMON and question.count(t) == 1]
        theirs = sorted(set(terms(donor)) - set(mine) - _COMMON)
        theirs = [t for t in theirs if t.lower() not in question.lower()]
        if mine and theirs:
            old, new = rng.choice(sorted(mine)), rng.choice(theirs)
            return question.replace(old, new, 1), new
    return None


def generate_testset(
    kb: KnowledgeBase,
    questions: int = 50,
    unanswerable: float = 0.2,
    seed: int = 0,
    writer: Generator | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    per_doc: int = 1,
) -> list[EvalCase]:
    """`questions` cases, about `unanswerable` of them unanswerable (see the module docstring).
    The same knowledge base, arguments and seed give the same cases."""
    if questions <= 0:
        raise InputError(f"questions must be > 0, got {questions}")
    if not 0 <= unanswerable < 1:
        raise InputError(f"unanswerable must be in [0, 1), got {unanswerable}")
    if per_doc < 1:
        raise InputError(f"per_doc must be >= 1, got {per_doc}")
    if not kb.exists():
        raise InputError(f"knowledge base {kb.name!r} does not exist; ingest first")
    rng = random.Random(seed)
    docs = sorted(d.id for d in kb.store.list_documents())
    rng.shuffle(docs)
    want_neg = round(questions * unanswerable)
    want_pos = questions - want_neg
    notify = progress or (lambda done, total: None)
    notify(0, questions)
    made: list[tuple[_Source, str, str]] = []
    used: set[str] = set()  # chunks asked about: each once before any is asked again
    asked: set[str] = set()
    for doc_id in [d for _ in range(per_doc) for d in docs]:  # round after round
        if len(made) >= want_pos + want_neg:  # negatives are made from extra positives
            break
        every = kb.store.chunks_of(doc_id)
        chunks = [c for c in every if c.id not in used] or every
        if not chunks:
            continue
        chunk = rng.choice(chunks)
        used.add(chunk.id)
        pair = written(chunk.text, writer) if writer is not None else None
        pair = pair or cloze(chunk.text, rng)
        if pair is not None and pair[0] not in asked:  # another sentence of a chunk asked
            asked.add(pair[0])
            made.append((_Source(doc_id, chunk.id, chunk.text), *pair))
            if len(made) <= want_pos:
                notify(1, None)
    positives, spare = made[:want_pos], made[want_pos:]
    if not positives:
        raise InputError(f"knowledge base {kb.name!r}: no chunk has a sentence to ask about")
    cases = [EvalCase(q, (a,), (src.doc_id,), None,
                      {"kind": "generated", "chunk_id": src.chunk_id}, f"gen-{i:04d}")
             for i, (src, q, a) in enumerate(positives, 1)]
    negatives = _unanswerable(kb, spare + positives, want_neg, docs, rng, notify)
    return cases + negatives


def _unanswerable(kb: KnowledgeBase, pool: Sequence[tuple[_Source, str, str]], wanted: int,
                  docs: Sequence[str], rng: random.Random,
                  notify: Callable[[int, int | None], None]) -> list[EvalCase]:
    from ragtune.retrieval import searcher_for

    searcher = searcher_for(kb)
    out: list[EvalCase] = []
    for src, question, answer in pool:
        if len(out) >= wanted:
            break
        donors = [d for d in docs if d != src.doc_id]
        if not donors:
            break
        donor_doc = rng.choice(donors)
        donor_chunks = kb.store.chunks_of(donor_doc)
        if not donor_chunks:
            continue
        donor = rng.choice(donor_chunks)
        swapped = _swap_term(question, answer, donor.text, rng)
        if swapped is None:
            continue
        new_question, term = swapped
        if contains_answer(src.text, [term]):
            continue  # the source passage already mentions the new term
        hits = searcher.search(new_question, k=20, mode="hybrid").hits
        if any(contains_answer(h.text, [term]) and contains_answer(h.text, [answer])
               for h in hits):
            continue  # some passage states both: it might be answerable
        out.append(EvalCase(new_question, (), (), None,
                            {"kind": "unanswerable", "from_chunk": src.chunk_id,
                             "paired_with": donor.id, "inserted": term},
                            f"gen-u{len(out) + 1:04d}"))
        notify(1, None)
    return out


def write_cases(cases: Sequence[EvalCase], path: Path) -> Path:
    """Write cases as JSONL (the format `load_cases` reads)."""
    return write_jsonl((case.to_dict() for case in cases), path)
