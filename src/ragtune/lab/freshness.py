"""A synthetic change set for the freshness probe, when the experiment gives none.

    >>> edits = synthetic_changes(docs, eval_cases, corpus, out / "changes", limit=8, seed=0)
    >>> edits[0].old, edits[0].new
    ('21 days', '47 days')

The probe asks: when a fact changes in the documents, who answers with the new fact and who
still says the old one? With no change set, the lab makes one from the facts the evaluation
asks about:

- a candidate is an answerable evaluation question with one gold document, a text file
  (Markdown, text, HTML) that states the reference answer verbatim; it is skipped when another
  document that retrieval brings for the question states the answer too (the old fact would
  still be right there; without a retriever, when any other document states it);
- its fact is rewritten: a figure gets other digits of the same size (`21 days` → `47 days`,
  `EUR 1,250` → `EUR 1,283`; a digit more when every value of that size occurs in the corpus,
  as one-digit figures do), a name another made-up name of the same shape (`Nordlys` →
  `Vantor`), and only when the evaluation has too few of those, a one-word term another
  made-up word (`debugging` → `valorin`); an answer that is a phrase of plain words is skipped;
- the new answer, and the new figure or name alone, are verified absent from every document of
  the corpus before the edit is used (as `ragtune.text.contains_answer` reads text: whole words,
  case and punctuation aside), so an answer stating it can only have read the edited document;
- every occurrence of the old answer in that document is replaced, in a copy written under
  `out/documents/` (the change set's documents) with `out/changes.jsonl` naming each question,
  its old and its new answer.

Seeded: the same documents, questions and seed give the same edits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune.cases import EvalCase
from ragtune.jsonl import write_jsonl
from ragtune.text import contains_answer, figure_spans

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".html", ".htm"})
DRAWS = 40  # replacement values tried per fact before it is skipped
_ONSETS = ("B", "D", "F", "G", "K", "L", "M", "N", "P", "R", "S", "T", "V", "Z", "Br", "Cl",
           "Dr", "Gr", "Kr", "St", "Tr", "Vel")
_NUCLEI = ("a", "e", "i", "o", "u", "ae", "ai", "ei", "or", "ar", "en", "an")
_JOINS = ("n", "r", "l", "s", "m", "v")  # between two syllables
_ENDS = ("n", "r", "l", "s", "x", "nd", "th", "rk")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


@dataclass(frozen=True)
class Edit:
    """One rewritten fact: the question that asks for it, the document, old and new."""

    question_id: str
    doc_id: str  # the document's file name, as the question file names gold documents
    path: str  # the file, relative to the documents folder
    old: str
    new: str
    kind: str  # "figure", "name" or "term" (`KINDS`)
    occurrences: int  # how often the old answer stood in the document

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def change_row(self) -> dict[str, Any]:
        """The change-set line (`ragtune.lab.experiment.load_changes` reads it)."""
        return {"question_id": self.question_id, "doc_id": self.doc_id,
                "old_answers": [self.old], "new_answers": [self.new], "kind": self.kind,
                "synthetic": True}


def synthetic_changes(documents: Path, cases: Sequence[EvalCase], corpus: Mapping[str, str],
                      out: Path, *, limit: int = 8, seed: int = 0,
                      retrieve: Callable[[str], list[tuple[str, str]]] | None = None
                      ) -> list[Edit]:
    """Up to `limit` edits (see the module docstring); the edited copies go to
    `out/documents/`, the change set to `out/changes.jsonl`. `corpus` maps each document's file
    name to its text (the knowledge base's, every format), `cases` are the evaluation
    questions (gold documents named by file name); `retrieve(question)` gives the (file name,
    passage text) retrieval brings for a question."""
    rng = random.Random(f"{seed}-freshness")
    files = _text_files(documents)
    candidates = sorted((c for c in cases if c.answers and len(c.gold_doc_ids) == 1
                         and c.gold_doc_ids[0] in files), key=lambda c: c.id)
    rng.shuffle(candidates)  # then figures first, names next, terms last (stable: seeded)
    candidates.sort(key=lambda c: min((KINDS.index(k[0]) for k in map(fact, c.answers) if k),
                                      default=len(KINDS)))
    edited: dict[str, str] = {}  # relative path -> text so far
    edits: list[Edit] = []
    for case in candidates:
        if len(edits) >= limit:
            break
        doc = case.gold_doc_ids[0]
        rel = files[doc]
        text = edited.get(rel) or (documents / rel).read_text(encoding="utf-8")
        old = _stated(case.answers, text)
        if old is None or any(_overlap(old, e) for e in edits):
            continue
        nearby = retrieve(case.question) if retrieve is not None else list(corpus.items())
        if any(contains_answer(other, [old]) for name, other in nearby if name != doc):
            continue  # another document states it too: the old fact would stay right there
        found = _replacement(old, rng, [*corpus.values(), text])
        if found is None:
            continue
        new, kind = found
        after, count = _whole(old).subn(new.replace("\\", "\\\\"), text)
        if contains_answer(after, [old]):
            continue  # written another way too (other case, other spacing): not all replaced
        edited[rel] = after
        edits.append(Edit(case.id, doc, rel, old, new, kind, count))
    for rel, text in edited.items():
        target = out / "documents" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    write_jsonl((e.change_row() for e in edits), out / "changes.jsonl")
    return edits


def _text_files(documents: Path) -> dict[str, str]:
    """File name -> path relative to `documents`, for text files whose name is unique (gold
    documents are named by file name)."""
    seen: dict[str, list[str]] = {}
    for path in sorted(documents.rglob("*")):
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            seen.setdefault(path.name, []).append(path.relative_to(documents).as_posix())
    return {name: paths[0] for name, paths in seen.items() if len(paths) == 1}


def _whole(span: str) -> re.Pattern[str]:
    """`span` where it stands as whole words (not the 21 days of 121 days)."""
    return re.compile(rf"(?<![\w.]){re.escape(span)}(?!\w)")


def _stated(answers: Sequence[str], text: str) -> str | None:
    """The first reference answer written verbatim in `text` (the span an edit replaces)."""
    return next((a for a in answers if a.strip() and _whole(a).search(text)), None)


def _overlap(old: str, edit: Edit) -> bool:
    return old in edit.old or edit.old in old or old in edit.new or edit.new in old


KINDS = ("figure", "name", "term")  # what an edit rewrites, the most plausible first


def fact(answer: str) -> tuple[str, str] | None:
    """(kind, the span an edit replaces) of an answer: its first figure, else its name (every
    word capitalised), else the answer itself when it is one uncommon lowercase word (a term);
    None for anything else (a phrase of plain words)."""
    spans = figure_spans(answer)
    if spans:
        return "figure", spans[0]
    name = _name(answer)
    if name is not None:
        return "name", name
    if re.fullmatch(r"[a-z][a-z-]{4,}", answer.strip()):
        return "term", answer.strip()
    return None


def _replacement(old: str, rng: random.Random, texts: Sequence[str]
                 ) -> tuple[str, str] | None:
    """(new answer, kind): `old` with its fact (`fact`) replaced by a value found in none of
    `texts`, as a whole answer and on its own; None if there is no such value after `DRAWS`
    tries (twice that for a figure, the second half a digit longer) or nothing to replace."""
    found = fact(old)
    if found is None:
        return None
    kind, term = found
    for draw in range(2 * DRAWS if kind == "figure" else DRAWS):
        if kind == "figure":
            value = _other_figure(term, rng, longer=draw >= DRAWS)
        else:
            value = _other_name(term, rng)
            value = value.lower() if kind == "term" else value
        new = old.replace(term, value, 1)
        if value != term and not any(contains_answer(t, [new]) or contains_answer(t, [value])
                                     for t in texts):
            return new, kind
    return None


def _name(answer: str) -> str | None:
    """The answer's first capitalised word when every word of it is capitalised (a name such
    as `Nordlys Clean Air Lab`); None for plain words."""
    words = _WORD.findall(answer)
    if not words or not all(w[0].isupper() for w in words if len(w) > 3):
        return None
    first = words[0]
    return first if len(first) >= 3 else None


def _other_figure(figure: str, rng: random.Random, longer: bool = False) -> str:
    """`figure` with other digits in its last two digit places (a leading digit stays
    non-zero): the same size and format, another value; `longer` adds a digit first."""
    if longer:
        last = max(i for i, ch in enumerate(figure) if ch.isdigit())
        figure = figure[:last + 1] + "0" + figure[last + 1:]
    digits = [i for i, ch in enumerate(figure) if ch.isdigit()]
    chars = list(figure)
    for i in digits[-2:]:
        chars[i] = str(rng.randint(1 if i == digits[0] else 0, 9))
    return "".join(chars)


def _other_name(name: str, rng: random.Random) -> str:
    """A made-up word of about the length of `name`, capitalised like it."""
    word = rng.choice(_ONSETS) + rng.choice(_NUCLEI)
    while len(word) < max(4, len(name) - 2):
        word += rng.choice(_JOINS) + rng.choice(_NUCLEI)
    word += rng.choice(_ENDS)
    return word.upper() if name.isupper() else word
