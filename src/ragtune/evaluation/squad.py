"""SQuAD 2.0: paragraphs as documents, questions as answerable / unanswerable cases.

    >>> data = load_squad(Path("../shared/data/squad-v2-dev-subset/dev-v2.0.json"))
    >>> len(data.paragraphs), len(data.questions)
    (646, 6078)
    >>> sample = data.sample(200, 200, seed=13)

Each paragraph becomes one document with id `<title>-<index>` (its article title as the
document title); each question keeps the id of the paragraph it was written for.

Benchmarks that calibrate or train on some articles and measure on others take their articles
from one place: `judge_split` (the offline judge's 4 calibration articles) and `reader_split`
(the grounded-reader adapter's training and test articles, disjoint from those 4).

    >>> train, test = reader_split(data)
    >>> reader_data = data.of_articles(train)
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import InputError
from ragtune.text import figure_spans, normalize_answer


@dataclass(frozen=True)
class SquadParagraph:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # empty: unanswerable
    paragraph_id: str

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class SquadData:
    paragraphs: list[SquadParagraph]
    questions: list[SquadQuestion]

    def corpus_rows(self) -> list[dict[str, str]]:
        """BEIR-style JSONL rows (`_id`, `title`, `text`) that `ragtune ingest` reads."""
        return [{"_id": p.id, "title": p.title, "text": p.text} for p in self.paragraphs]

    def write_corpus(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for row in self.corpus_rows():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path

    def of_articles(self, articles: Collection[str]) -> SquadData:
        """The paragraphs and questions of `articles` (ids as `article_of` gives them)."""
        wanted = set(articles)
        return SquadData([p for p in self.paragraphs if article_of(p.id) in wanted],
                         [q for q in self.questions if article_of(q.paragraph_id) in wanted])

    def articles(self) -> list[str]:
        """The article ids, sorted."""
        return sorted({article_of(p.id) for p in self.paragraphs})

    def sample(self, answerable: int, unanswerable: int, seed: int,
               exclude: set[str] | None = None) -> list[SquadQuestion]:
        """A seeded sample (answerable first, then unanswerable), skipping ids in `exclude`."""
        exclude = exclude or set()
        rng = random.Random(seed)
        pos = [q for q in self.questions if q.answerable and q.id not in exclude]
        neg = [q for q in self.questions if not q.answerable and q.id not in exclude]
        if answerable > len(pos) or unanswerable > len(neg):
            raise InputError(
                f"asked for {answerable}+{unanswerable} questions, have {len(pos)}+{len(neg)}"
            )
        return rng.sample(pos, answerable) + rng.sample(neg, unanswerable)


def load_squad(path: Path) -> SquadData:
    """Read a SQuAD 2.0 JSON file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read SQuAD JSON ({exc})") from exc
    paragraphs: list[SquadParagraph] = []
    questions: list[SquadQuestion] = []
    for article in raw.get("data", []):
        title = str(article["title"]).replace("_", " ")
        for i, para in enumerate(article["paragraphs"]):
            pid = f"{article['title']}-{i}"
            paragraphs.append(SquadParagraph(pid, title, para["context"]))
            for qa in para["qas"]:
                answers = () if qa.get("is_impossible") else tuple(
                    dict.fromkeys(a["text"] for a in qa["answers"]))
                questions.append(SquadQuestion(qa["id"], qa["question"], answers, pid))
    if not paragraphs:
        raise InputError(f"{path}: no paragraphs (is this SQuAD 2.0 JSON?)")
    return SquadData(paragraphs, questions)


@dataclass(frozen=True)
class SupportExample:
    """One labelled (question, claim, context) triple for validating a support judge."""

    question: str
    claim: str
    context: str
    supported: bool
    kind: str  # "gold" | "other-answer" | "entity-swap"
    paragraph_id: str


_NAME = re.compile(r"[A-Z][\w'’-]*(?:\s+(?:of\s+|the\s+|de\s+|von\s+)?[A-Z][\w'’-]*)*")
_NAME_STOP = frozenset({"The", "A", "An", "In", "On", "At", "It", "He", "She", "They", "This",
                        "That", "These", "Those", "There", "After", "Before", "During", "When",
                        "While", "However", "Although", "As", "By", "For", "From", "His", "Her",
                        "Its", "Their", "Some", "Many", "Most", "Other", "With", "Since", "If"})


def _differs(candidate: str, golds: Sequence[str]) -> bool:
    """True when `candidate` shares no word with any gold answer (a clearly wrong answer)."""
    words = set(normalize_answer(candidate).split())
    return bool(words) and all(not words & set(normalize_answer(g).split()) for g in golds)


def _entity_swap(answer: str, golds: Sequence[str], context: str, rng: random.Random
                 ) -> str | None:
    """`answer` with its figure or name replaced by another one from the same paragraph."""
    numbers = figure_spans(answer)
    if numbers:
        gold_numbers = {n for g in golds for n in figure_spans(g)}
        pool = sorted({n for n in figure_spans(context) if n not in gold_numbers})
        if not pool:
            return None
        return answer.replace(numbers[0], rng.choice(pool), 1)
    if not answer[:1].isupper():
        return None
    pool = sorted({m.group(0) for m in _NAME.finditer(context)
                   if m.group(0) not in _NAME_STOP and _differs(m.group(0), golds)})
    return rng.choice(pool) if pool else None


def article_of(paragraph_id: str) -> str:
    """The article a paragraph id (`<title>-<index>`) belongs to: `Normans-0` -> `Normans`."""
    return paragraph_id.rsplit("-", 1)[0]


JUDGE_SPLIT_SEED = 5  # `bench/judge.py`'s SPLIT_SEED
JUDGE_CALIBRATION_ARTICLES = 4
READER_SPLIT_SEED = 21  # any fixed number; issue 21 introduced the reader adapter
READER_TRAIN_ARTICLES = 6


def judge_split(data: SquadData) -> tuple[list[str], list[str]]:
    """(calibration, other) articles, sorted: the split `bench/judge.py` fits the offline
    judge with (4 articles drawn with seed 5 from the sorted article ids)."""
    articles = data.articles()
    calibration = set(random.Random(JUDGE_SPLIT_SEED).sample(articles,
                                                             JUDGE_CALIBRATION_ARTICLES))
    return sorted(calibration), [a for a in articles if a not in calibration]


def reader_split(data: SquadData) -> tuple[list[str], list[str]]:
    """(train, test) articles, sorted, for the grounded-reader adapter (`make reader`).

    The articles `judge_split` does not calibrate on are shuffled with `READER_SPLIT_SEED`; the
    first 6 train the reader (`bench/reader.py`), the other 6 are held out to measure it. Neither
    side holds a judge-calibration article, so a judge fitted on those can score the test.
    """
    _, others = judge_split(data)
    random.Random(READER_SPLIT_SEED).shuffle(others)
    return (sorted(others[:READER_TRAIN_ARTICLES]), sorted(others[READER_TRAIN_ARTICLES:]))


def support_set(data: SquadData, questions: int, seed: int,
                articles: Collection[str] | None = None) -> list[SupportExample]:
    """A labelled support set from `questions` seeded answerable questions: each gives its
    gold answer in its own paragraph (supported) and one unsupported claim in the same
    paragraph, alternately a wrong answer taken from another question (same paragraph when it
    has one, else same article) and a plausible entity swap (the answer's figure or name
    replaced by another figure or name from the paragraph; when the answer has neither, a wrong
    answer from another question is used and labelled so). `articles` limits the questions to
    those articles (calibration and test sets from disjoint articles)."""
    rng = random.Random(seed)
    paragraphs = {p.id: p for p in data.paragraphs}
    by_paragraph: dict[str, list[SquadQuestion]] = {}
    for q in data.questions:
        if q.answerable:
            by_paragraph.setdefault(q.paragraph_id, []).append(q)
    pool = [q for q in data.questions if q.answerable
            and (articles is None or article_of(q.paragraph_id) in articles)]
    if questions > len(pool):
        raise InputError(f"asked for {questions} questions, have {len(pool)}")
    chosen = rng.sample(pool, questions)
    out: list[SupportExample] = []
    for i, q in enumerate(chosen):
        para = paragraphs[q.paragraph_id]
        out.append(SupportExample(q.question, q.answers[0], para.text, True, "gold", para.id))
        claim, kind = None, "entity-swap"
        if i % 2:
            claim = _entity_swap(q.answers[0], q.answers, para.text, rng)
        if claim is None:
            kind = "other-answer"
            article = article_of(para.id)
            same = [a for o in by_paragraph[para.id] for a in o.answers[:1]]
            near = [a for pid, qs in by_paragraph.items() if article_of(pid) == article
                    for o in qs for a in o.answers[:1]]
            for answers in (same, near):
                wrong = sorted(a for a in set(answers) if _differs(a, q.answers))
                if wrong:
                    claim = rng.choice(wrong)
                    break
        if claim is not None:
            out.append(SupportExample(q.question, claim, para.text, False, kind, para.id))
    return out
