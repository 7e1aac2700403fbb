"""The SQuAD 2.0 subset reader and its seeded samples."""

from __future__ import annotations

import re
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


def test_support_set_labels_and_negatives() -> None:
    from collections import Counter

    from ragtune.evaluation.squad import article_of, support_set
    from ragtune.text import normalize_answer

    data = load_squad(SQUAD)
    examples = support_set(data, 60, seed=1)
    assert examples == support_set(data, 60, seed=1)
    kinds = Counter((e.kind, e.supported) for e in examples)
    assert kinds[("gold", True)] == 60
    assert kinds[("other-answer", False)] + kinds[("entity-swap", False)] == 60
    assert kinds[("entity-swap", False)] > 0
    questions = {q.question: q for q in data.questions}
    paragraphs = {p.id: p.text for p in data.paragraphs}
    for e in examples:
        gold = questions[e.question].answers
        assert e.context == paragraphs[e.paragraph_id]
        if e.supported:
            assert e.claim == gold[0] and e.claim in e.context
        elif e.kind == "other-answer":  # another question's answer: no word in common
            words = set(normalize_answer(e.claim).split())
            assert words and all(not words & set(normalize_answer(g).split()) for g in gold)
        else:  # entity swap: a figure no gold answer has, or a name sharing no word with them
            figures = set(re.findall(r"\d+", e.claim))
            gold_figures = {f for g in gold for f in re.findall(r"\d+", g)}
            words = set(normalize_answer(e.claim).split())
            assert (figures - gold_figures) or all(
                not words & set(normalize_answer(g).split()) for g in gold)
            assert e.claim in e.context or figures - gold_figures
    some = {article_of(examples[0].paragraph_id)}
    assert {article_of(e.paragraph_id) for e in support_set(data, 10, 2, some)} == some
