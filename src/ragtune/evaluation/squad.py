"""SQuAD 2.0: paragraphs as documents, questions as answerable / unanswerable cases.

    >>> data = load_squad(Path("../shared/data/squad-v2-dev-subset/dev-v2.0.json"))
    >>> len(data.paragraphs), len(data.questions)
    (646, 6078)
    >>> sample = data.sample(200, 200, seed=13)

Each paragraph becomes one document with id `<title>-<index>` (its article title as the
document title); each question keeps the id of the paragraph it was written for.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import InputError


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
