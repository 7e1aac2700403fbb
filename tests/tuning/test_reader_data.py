"""The reader adapter's data (`bench/reader.py`): the article split, the cases, target checks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ragtune.answering.prompt import build_prompt
from ragtune.evaluation.squad import article_of, judge_split, load_squad, reader_split
from ragtune.retrieval import Hit
from ragtune.tuning.data import TrainingExample
from ragtune.tuning.raft import RAFT_REFUSAL

REPO = Path(__file__).resolve().parents[2]
SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
READER_TRAIN = ["1973_oil_crisis", "Computational_complexity_theory", "Force", "Huguenot",
                "Normans", "Yuan_dynasty"]  # what src/ragtune/data/reader was trained on


@pytest.fixture(scope="module")
def squad():
    return load_squad(SQUAD)


@pytest.fixture(scope="module")
def reader() -> ModuleType:
    """bench/reader.py as a module (it imports its sibling `common`)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_reader", REPO / "bench" / "reader.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module


def test_judge_split_is_the_one_the_judge_was_calibrated_on(squad) -> None:
    recorded = json.loads((REPO / "bench" / "results" / "judge.json").read_text())
    calibration, others = judge_split(squad)
    assert calibration == recorded["calibration_articles"]
    assert others == recorded["test_articles"]


def test_reader_split_is_fixed_and_disjoint(squad) -> None:
    train, test = reader_split(squad)
    calibration, _ = judge_split(squad)
    assert train == READER_TRAIN
    assert len(test) == 6 and not set(train) & set(test)
    assert not (set(train) | set(test)) & set(calibration)
    assert sorted(train + test + calibration) == squad.articles()
    assert reader_split(squad) == (train, test)


def test_cases_come_from_training_articles_only(squad, reader) -> None:
    cases = reader.reader_cases(squad, 30, 10)
    assert cases == reader.reader_cases(squad, 30, 10)
    assert sum(c.answerable for c in cases) == 30 and len(cases) == 10 + 30
    assert {article_of(c.gold_doc_ids[0]) for c in cases} <= set(READER_TRAIN)
    questions = {q.id: q for q in squad.questions}
    for case in cases:
        q = questions[case.id]
        assert case.gold_doc_ids == (q.paragraph_id,)
        assert sorted(case.answers) == sorted(q.answers)
        assert [len(a) for a in case.answers] == sorted(len(a) for a in case.answers)


def _example(target: str) -> TrainingExample:
    hits = [Hit(1, 1.0, "a", "a#0", "Porto's bridge opened in 1886.", {"title": "Porto"}),
            Hit(2, 0.5, "b", "b#0", "Lisbon lies on the Tagus.", {"title": "Lisbon"})]
    prompt = build_prompt("When did it open?", hits, lambda t: len(t.split()), budget=100)
    return TrainingExample((*prompt.messages, {"role": "assistant", "content": target}), 1, "raft")


def test_target_check_catches_a_wrong_citation(reader) -> None:
    assert reader.target_problems([_example("1886 [1]"), _example(RAFT_REFUSAL)]) == []
    wrong = reader.target_problems([_example("1886 [2]")])
    assert len(wrong) == 1 and "passage 2 does not hold '1886'" in wrong[0]
    assert "neither refusal nor cited" in reader.target_problems([_example("1886")])[0]
