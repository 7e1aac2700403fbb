"""The bundled sample, the experiment file, the seeded split and the lab's correctness test."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from ragtune.errors import InputError
from ragtune.lab import SAMPLE_EXPERIMENT, load_experiment, load_questions, split_questions, states
from ragtune.lab.experiment import Budgets, SplitSpec, load_changes
from ragtune.text import normalize_words

SAMPLE = SAMPLE_EXPERIMENT.parent


def _articles(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8").lower() for p in folder.glob("*.md")}


def test_the_sample_is_a_help_centre_with_questions_gold_answers_and_a_change_set() -> None:
    kb = _articles(SAMPLE / "kb")
    assert len(kb) == 40
    words = [len(text.split()) for text in kb.values()]
    assert min(words) >= 100 and max(words) <= 260
    questions = load_questions(SAMPLE / "questions.jsonl")
    assert len(questions) == 150
    unanswerable = [q for q in questions if not q.answerable]
    assert len(unanswerable) / len(questions) == pytest.approx(0.2)
    for q in questions:
        assert len(set(map(normalize_words, q.phrasings))) == 4, q.id
        for answer in q.answers:  # each gold answer is in its gold article and in no other
            holding = sorted(name for name, text in kb.items() if answer.lower() in text)
            assert holding == list(q.gold_doc_ids), (q.id, answer, holding)
    every = Counter(normalize_words(p) for q in questions for p in q.phrasings)
    assert every.most_common(1)[0][1] == 1  # no phrasing is shared by two questions
    changed = _articles(SAMPLE / "changes")
    changes = load_changes(SAMPLE / "changes.jsonl")
    by_id = {q.id: q for q in questions}
    assert len(changes) == 24 and len(changed) == 12
    for c in changes:
        assert by_id[c.question_id].answers == c.old_answers
        after = kb | {c.doc_id: changed[c.doc_id]}
        for new in c.new_answers:  # the new fact is in the changed article only
            assert [n for n, text in after.items() if new.lower() in text] == [c.doc_id]
        assert not any(old.lower() in changed[c.doc_id] for old in c.old_answers)


def test_the_split_is_seeded_and_keeps_every_evaluation_question_out_of_training() -> None:
    exp = load_experiment(SAMPLE_EXPERIMENT)
    questions = exp.load_questions()
    changed = {c.question_id for c in exp.load_changes()}
    a = split_questions(questions, exp.split, exp.budgets, keep=changed)
    b = split_questions(questions, exp.split, exp.budgets, keep=changed)
    assert [c.question for c in a.eval] == [c.question for c in b.eval]
    assert [c.question for c in a.tuned_training] == [c.question for c in b.tuned_training]
    trained = {normalize_words(c.question) for c in a.tuned_training + a.hybrid_training}
    asked = {normalize_words(c.question) for c in a.eval + a.paraphrases}
    assert not trained & asked
    assert len(a.eval) == exp.budgets.eval_cases
    assert changed <= {c.id for c in a.eval}  # the freshness probe's questions are evaluated
    assert sum(not c.answerable for c in a.eval) == 9  # the file's share: 20%
    # every answerable question lends two phrasings to training; unanswerable ones split whole
    answerable = [q for q in questions if q.answerable]
    assert len([c for c in a.tuned_training if c.answerable]) == 2 * len(answerable)
    refusing = {c.id for c in a.tuned_training if not c.answerable}
    assert refusing and not refusing & {c.id for c in a.eval}
    assert len(a.hybrid_training) == exp.budgets.hybrid_examples
    assert {c.id for c in a.paraphrases} <= {c.id for c in a.eval}
    other = split_questions(questions, SplitSpec(seed=1), exp.budgets, keep=changed)
    assert [c.question for c in other.eval] != [c.question for c in a.eval]


def test_a_split_without_budgets_evaluates_every_held_out_question() -> None:
    questions = load_questions(SAMPLE / "questions.jsonl")
    split = split_questions(questions, SplitSpec(), Budgets())
    assert len(split.eval) == 120 + 15
    assert len(split.paraphrases) == 120


def test_too_few_phrasings_for_a_phrasing_split_is_an_error_and_auto_splits_by_question(
        tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"How long is {i}?",
                                        "answers": [f"{i} days"]}) + "\n" for i in range(4)))
    with pytest.raises(InputError, match="at least 3 phrasings"):
        split_questions(load_questions(path), SplitSpec(by="phrasings"), Budgets())
    split = split_questions(load_questions(path), SplitSpec(), Budgets())
    assert split.by == "questions" and len(split.eval) == 2 and not split.paraphrases


def test_bad_question_lines_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "phrasings": ["x?"]}\nnot json\n{"id": "a", "phrasings": '
                    '["y?"]}\n{"phrasings": []}\n')
    with pytest.raises(InputError) as err:
        load_questions(path)
    text = str(err.value)
    assert "q.jsonl:2: invalid JSON" in text
    assert "q.jsonl:3: id 'a' repeats line 1" in text
    assert "q.jsonl:4: needs 'phrasings'" in text


@pytest.mark.parametrize(("body", "message"), [
    ("name: x\n", "knowledge_base: Field required"),
    ("colour: red\n", "colour: Extra inputs are not permitted"),
    ("- a\n", "expected a mapping"),
    ("name: [\n", "not valid YAML"),
])
def test_experiment_file_errors_name_the_file_and_the_key(tmp_path: Path, body: str,
                                                           message: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(body)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_experiment(path)
    assert str(path) in str(err.value)


def test_unknown_architecture_and_missing_files_are_errors(tmp_path: Path) -> None:
    base = SAMPLE_EXPERIMENT.read_text()
    path = tmp_path / "exp.yaml"
    path.write_text(base.replace("documents: kb", f"documents: {SAMPLE / 'kb'}")
                    .replace("[base, rag, rag+schema, tuned, hybrid]",
                             "[rag, agents]"))
    with pytest.raises(InputError, match="unknown architecture"):
        load_experiment(path)
    path.write_text(base)  # relative paths are read from the experiment file's folder
    with pytest.raises(InputError, match=r"knowledge_base\.documents: .*kb does not exist"):
        load_experiment(path)


@pytest.mark.parametrize(("answer", "refs", "expected"), [
    ("21 days", ["21 days"], True),
    ("You can return it within 21 days.", ["21 days"], True),
    ("EUR 12", ["EUR 12 per month"], True),  # a shorter form keeping the figure
    ("EUR 25", ["EUR 27"], False),  # token F1 0.5, wrong figure
    ("28 days", ["21 days"], False),
    ("Nordlys", ["Nordlys Clean Air Lab"], False),  # F1 0.4
    ("Nordlys Clean Air", ["Nordlys Clean Air Lab"], True),
    ("", ["21 days"], False),
])
def test_states_credits_a_fact_only_with_its_figures(answer: str, refs: list[str],
                                                     expected: bool) -> None:
    assert states(answer, refs) is expected


def test_own_training_data_may_not_contain_an_evaluation_question(tmp_path: Path) -> None:
    from ragtune.lab.compare import check_no_leak
    from ragtune.tuning.data import load_training_data

    exp = load_experiment(SAMPLE_EXPERIMENT)
    split = split_questions(exp.load_questions(), exp.split, exp.budgets)
    asked = split.eval[3].question
    clean = [{"prompt": f"Question: {c.question}", "completion": c.answers[0] if c.answers
              else "I don't know."} for c in split.tuned_training[:20]]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in clean))
    check_no_leak(load_training_data(path), split, path)  # training phrasings only: fine
    leaking = clean + [{"prompt": f"Question: {asked.upper()}", "completion": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in leaking))
    with pytest.raises(InputError, match=r"train\.jsonl:21: contains the evaluation question"):
        check_no_leak(load_training_data(path), split, path)


def test_the_demo_adds_rag_tuned_retrieval_in_the_registry_order() -> None:
    exp = load_experiment(SAMPLE_EXPERIMENT)
    assert "rag-tuned-retrieval" not in exp.architectures  # opt-in: `ragtune demo --levers`
    assert exp.with_architecture("rag-tuned-retrieval").architectures == [
        "base", "rag", "rag+schema", "rag-tuned-retrieval", "tuned", "hybrid"]
    with pytest.raises(InputError, match="unknown architecture"):
        exp.with_architecture("rag+x")
