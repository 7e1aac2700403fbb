"""The SQuAD 2.0 subset reader and its seeded samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.errors import InputError
from ragtune.evaluation.squad import load_squad

SQUAD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / \
    "squad-v2-dev-subset" / "dev-v2.0.json"


@pytest.fixture(scope="module")
def squad():
    return load_squad(SQUAD)


def test_counts_match_the_source_description(squad) -> None:
    assert len(squad.paragraphs) == 646
    assert len(squad.questions) == 6078
    assert sum(q.answerable for q in squad.questions) == 2910
    normandy = next(q for q in squad.questions
                    if q.question == "In what country is Normandy located?")
    assert "France" in normandy.answers
    assert normandy.paragraph_id == "Normans-0"


def test_samples_are_seeded_balanced_and_disjoint(squad) -> None:
    a = squad.sample(20, 10, seed=13)
    assert a == squad.sample(20, 10, seed=13)
    assert sum(q.answerable for q in a) == 20 and len(a) == 30
    b = squad.sample(20, 10, seed=7, exclude={q.id for q in a})
    assert not {q.id for q in a} & {q.id for q in b}
    with pytest.raises(InputError, match="asked for"):
        squad.sample(5000, 0, seed=1)


def test_corpus_rows(squad, tmp_path: Path) -> None:
    rows = squad.corpus_rows()
    assert rows[0] == {"_id": "Normans-0", "title": "Normans", "text": squad.paragraphs[0].text}
    path = squad.write_corpus(tmp_path / "c.jsonl")
    assert len(path.read_text().splitlines()) == 646
