"""Test-set generation from a real knowledge base: seeded, answers found in their gold chunk,
unanswerable questions that no passage answers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ragtune import KnowledgeBase
from ragtune.cases import load_cases
from ragtune.errors import InputError
from ragtune.evaluation.metrics import contains_answer
from ragtune.evaluation.testset import BLANK, cloze, generate_testset, write_cases

PASSAGES = {
    f"doc{i}.txt": text for i, text in enumerate([
        "The Aurora router ships with 4 antennas. Its firmware is updated every 30 days by the "
        "vendor in Lisbon.",
        "Customers in the Premium plan receive a replacement device within 2 business days. "
        "Returns are accepted for 60 days after delivery.",
        "The Nimbus camera records video at 1080 pixels and stores clips for 14 days in the "
        "cloud archive.",
        "Support tickets marked urgent are answered by the Tokyo team within 4 hours on "
        "working days.",
        "Every invoice lists the VAT rate of 21 percent and is emailed to the billing contact "
        "on the first day.",
        "The Solaris panel produces 400 watts at noon and carries a warranty of 25 years "
        "against defects.",
    ])
}


@pytest.fixture
def kb(tmp_path: Path, settings, embedder) -> KnowledgeBase:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in PASSAGES.items():
        (root / name).write_text(text, encoding="utf-8")
    base = KnowledgeBase.open("gen", settings)
    base.ingest([root])
    yield base
    base.close()


def test_cloze_blanks_a_figure_first() -> None:
    question, answer = cloze("The Solaris panel produces 400 watts at noon and carries a "
                             "warranty of 25 years against defects.", random.Random(0))
    assert answer in {"400", "25"} and BLANK in question
    assert question.replace(BLANK, answer) == (
        'Fill in the blank: "The Solaris panel produces 400 watts at noon and carries a '
        'warranty of 25 years against defects."')
    assert cloze("Too short.", random.Random(0)) is None


def test_generated_set_is_seeded_and_grounded(kb: KnowledgeBase, tmp_path: Path) -> None:
    cases = generate_testset(kb, questions=5, unanswerable=0.4, seed=3)
    assert cases == generate_testset(kb, questions=5, unanswerable=0.4, seed=3)
    assert cases != generate_testset(kb, questions=5, unanswerable=0.4, seed=4)
    answerable = [c for c in cases if c.answerable]
    unanswerable = [c for c in cases if not c.answerable]
    assert len(answerable) == 3 and 1 <= len(unanswerable) <= 2
    for case in answerable:
        [chunk] = kb.store.get_chunks([case.metadata["chunk_id"]])
        assert case.gold_doc_ids == (chunk.doc_id,)
        assert contains_answer(chunk.text, case.answers)
        assert BLANK in case.question and case.answers[0] not in case.question
    for case in unanswerable:
        assert case.gold_doc_ids == () and case.metadata["kind"] == "unanswerable"
        inserted = case.metadata["inserted"]
        assert inserted in case.question
        [source] = kb.store.get_chunks([case.metadata["from_chunk"]])
        assert not contains_answer(source.text, [inserted])  # the pairing changed the facts
    path = write_cases(cases, tmp_path / "gen.jsonl")
    assert [c.question for c in load_cases(path)] == [c.question for c in cases]


def test_bad_arguments(kb: KnowledgeBase, settings) -> None:
    with pytest.raises(InputError, match="questions must be > 0"):
        generate_testset(kb, questions=0)
    with pytest.raises(InputError, match="unanswerable"):
        generate_testset(kb, questions=3, unanswerable=1.0)
    with pytest.raises(InputError, match="does not exist"):
        generate_testset(KnowledgeBase.open("none", settings), questions=3)
