"""`ragtune compare --docs DIR`: the lab on a folder of documents with nothing prepared — the
split by question, the synthetic change set, the plan and the budget, the checklist left out,
and the whole minimal path end to end with the real bundled models."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cases import EvalCase
from ragtune.cli import app
from ragtune.errors import InputError
from ragtune.evaluation.testset import BLANK
from ragtune.lab import assess, load_experiment, load_questions, split_questions
from ragtune.lab.checklist import MEASURED_ALONE, Evidence
from ragtune.lab.experiment import Budgets, LabQuestion, SplitSpec
from ragtune.lab.freshness import fact, synthetic_changes
from ragtune.lab.prepare import (
    TRAINING_FLOOR,
    docs_experiment,
    infer_gold,
    paraphrase,
    top_up_training,
    training_shortfall,
)
from ragtune.lab.sizing import (
    REFERENCE_RATES,
    Counts,
    estimate,
    fit_budget,
    load_rates,
    record_rates,
)
from ragtune.text import contains_answer, normalize_words

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_KB = ROOT / "examples" / "sample-kb"


# --- the split by question -------------------------------------------------------------------


def _one_phrasing(n_answerable: int, n_unanswerable: int) -> list[LabQuestion]:
    return [LabQuestion(f"a{i}", (f"What is fact number {i}?",), (f"{i} units",),
                        ("doc.md",)) for i in range(n_answerable)] + \
           [LabQuestion(f"u{i}", (f"What is unknown thing {i}?",), (), ())
            for i in range(n_unanswerable)]


def test_one_phrasing_questions_are_split_by_question_and_no_fact_is_both_trained_and_asked(
        ) -> None:
    questions = _one_phrasing(20, 6)
    split = split_questions(questions, SplitSpec(), Budgets(), paraphrase=paraphrase)
    assert split.by == "questions" and "Split by question" in split.describe()
    trained = {c.id for c in split.tuned_training + split.hybrid_training}
    asked = {c.id for c in split.eval}
    assert not trained & asked  # the honest scenario: no evaluated fact was trained on
    assert len([c for c in split.eval if c.answerable]) == 10  # question_train_share 0.5
    assert len([c for c in split.eval if not c.answerable]) == 3
    # every answerable evaluation question is asked again, in a rewrite (one phrasing only)
    assert len(split.paraphrases) == split.rewritten == 10
    for p in split.paraphrases:
        original = split.eval_phrasing[p.id]
        assert normalize_words(p.question) != normalize_words(original)
        assert normalize_words(original) in normalize_words(p.question)
    again = split_questions(questions, SplitSpec(), Budgets(), paraphrase=paraphrase)
    assert [c.id for c in again.eval] == [c.id for c in split.eval]  # seeded
    other = split_questions(questions, SplitSpec(seed=3), Budgets(), paraphrase=paraphrase)
    assert [c.id for c in other.eval] != [c.id for c in split.eval]


def test_the_phrasing_split_is_kept_where_phrasings_exist_and_forcing_it_needs_them() -> None:
    sample = load_questions(ROOT / "src" / "ragtune" / "lab" / "sample" / "questions.jsonl")
    assert split_questions(sample, SplitSpec(), Budgets()).by == "phrasings"
    with pytest.raises(InputError, match="at least 3 phrasings .* split.by: questions"):
        split_questions(_one_phrasing(4, 0), SplitSpec(by="phrasings"), Budgets())


def test_gold_documents_a_question_file_leaves_out_are_the_ones_stating_the_answer() -> None:
    corpus = {"billing.md": "The Team plan costs 49 euros per month.",
              "faq.md": "Team seats cost 49 euros each; invitations expire after 7 days.",
              "runbook.txt": "Page the on-call engineer."}
    questions = [LabQuestion("price", ("How much is Team?",), ("49 euros",), ()),
                 LabQuestion("named", ("When do invites expire?",), ("7 days",), ("x.md",)),
                 LabQuestion("absent", ("Who is the CEO?",), ("Jane Roe",), ()),
                 LabQuestion("none", ("What about GPUs?",), (), ())]
    filled, inferred, unfound = infer_gold(questions, corpus)
    assert (inferred, unfound) == (1, 1)
    assert [q.gold_doc_ids for q in filled] == [("billing.md", "faq.md"), ("x.md",), (), ()]
    # the retriever's order: the first is the one a trained answer cites
    ranked, _, _ = infer_gold(questions, corpus, rank=lambda q: ["faq.md", "billing.md"])
    assert ranked[0].gold_doc_ids == ("faq.md", "billing.md")
    # the most specific answer any document states decides, not a shorter form of it
    rotate = LabQuestion("rotate", ("How often are keys rotated?",),
                         ("every 90 days", "90 days"), ())
    docs = {"billing.md": "Data is kept for 90 days.",
            "onboarding.md": "Rotate keys every\n90 days."}
    assert infer_gold([rotate], docs)[0][0].gold_doc_ids == ("onboarding.md",)


def test_training_is_topped_up_with_generated_questions_stating_no_evaluated_fact() -> None:
    questions = _one_phrasing(6, 4)  # 3 answerable and 2 unanswerable train: 5 < the floor
    split = split_questions(questions, SplitSpec(), Budgets(), paraphrase=paraphrase)
    evaluated = [c for c in split.eval if c.answerable]
    leak_answer = evaluated[0].answers[0]  # "N units"
    leak_number = leak_answer.split()[0]
    generated = [
        # the blank filled in states an evaluated fact: skipped
        LabQuestion("g0", (f'Fill in the blank: "The meter reads {BLANK} units today."',),
                    (leak_number,), ("doc.md",)),
        # its answer is stated by an evaluated answer: skipped
        LabQuestion("g1", ("Which figure is on the dial?",), (leak_number,), ("doc.md",)),
        *[LabQuestion(f"n{i}", (f'Fill in the blank: "Room {BLANK} has {i} chairs."',),
                      (f"R{i}",), ("rooms.md",)) for i in range(20)],
        LabQuestion("u", ("Which GPUs are offered?",), (), ()),
    ]
    assert training_shortfall(split) == TRAINING_FLOOR - 5
    topped, added = top_up_training(split, generated)
    assert added == TRAINING_FLOOR - 5 and training_shortfall(topped) == 0
    new = topped.tuned_training[len(split.tuned_training):]
    assert [c.id for c in new] == [f"generated-n{i}" for i in range(added)]
    assert new == topped.hybrid_training[len(split.hybrid_training):]
    asked = [a for c in split.eval + split.paraphrases for a in c.answers]
    for c in new:  # no evaluated fact is trained on
        assert not contains_answer(c.question.replace(BLANK, c.answers[0]), asked)
    assert topped.eval == split.eval and topped.paraphrases == split.paraphrases
    assert top_up_training(topped, generated) == (topped, 0)  # nothing missing


def test_a_cloze_question_is_rewritten_around_its_gap() -> None:
    rewritten = paraphrase('Fill in the blank: "Refunds take ____ business days."')
    assert rewritten == ('Which words are missing where ____ stands in this text: "Refunds '
                         'take ____ business days."?')
    assert paraphrase("Could you tell me how long refunds take?") == \
        "I have a question: tell me how long refunds take?"


# --- the synthetic change set ----------------------------------------------------------------


def _corpus(tmp: Path) -> Path:
    docs = tmp / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "returns.md").write_text(
        "# Returns\n\nYou can return a device within 21 days. Refunds of 21 days or more are "
        "rare; a return older than 121 days is refused.\n\nReturns go to Nordlys Depot.\n")
    (docs / "sub" / "plans.txt").write_text(
        "The Pro plan costs EUR 12 per month and covers 10 devices.\n")
    (docs / "shipping.html").write_text(
        "<html><body><p>Shipping takes 3 days and is handled by Calder Freight.</p>"
        "<p>Every plan covers 10 devices.</p></body></html>")
    return docs


def _cases() -> list[EvalCase]:
    def case(qid: str, answer: str, doc: str) -> EvalCase:
        return EvalCase(f"question {qid}?", (answer,), (doc,), None, {}, qid)
    return [case("q1", "21 days", "returns.md"), case("q2", "EUR 12 per month", "plans.txt"),
            case("q3", "10 devices", "plans.txt"),  # also stated by shipping.html
            case("q4", "Calder Freight", "shipping.html"),
            case("q5", "Nordlys Depot", "returns.md"),
            case("q6", "is refused", "returns.md")]  # a phrase of plain words


def _texts(docs: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in docs.rglob("*") if p.is_file()}


def test_synthetic_changes_are_reproducible_and_every_new_fact_is_absent_first(tmp_path: Path
                                                                              ) -> None:
    docs = _corpus(tmp_path)
    corpus = _texts(docs)
    edits = synthetic_changes(docs, _cases(), corpus, tmp_path / "a", limit=8, seed=0)
    again = synthetic_changes(docs, _cases(), corpus, tmp_path / "b", limit=8, seed=0)
    assert [e.to_dict() for e in edits] == [e.to_dict() for e in again]
    assert _texts(tmp_path / "a" / "documents") == _texts(tmp_path / "b" / "documents")
    assert (tmp_path / "a" / "changes.jsonl").read_text() == \
        (tmp_path / "b" / "changes.jsonl").read_text()
    # q3's answer is in another document too, q6's is a phrase of plain words: left alone
    assert sorted(e.question_id for e in edits) == ["q1", "q2", "q4", "q5"]
    by_id = {e.question_id: e for e in edits}
    assert by_id["q1"].kind == "figure" and by_id["q5"].kind == "name"
    for e in edits:  # the new fact was in no document before the edit
        assert not any(contains_answer(text, [e.new]) for text in corpus.values()), e
    edited = _texts(tmp_path / "a" / "documents")
    returns = edited["returns.md"]
    assert not re.search(r"(?<!\d)21 days", returns) and returns.count(by_id["q1"].new) == 2
    assert "121 days" in returns  # the figure inside a larger one is not touched
    assert by_id["q1"].occurrences == 2
    assert by_id["q5"].new.endswith(" Depot") and by_id["q5"].new in returns
    assert (tmp_path / "a" / "documents" / "sub" / "plans.txt").is_file()  # same place
    assert "shipping.html" in edited  # HTML is edited as text
    rows = [json.loads(line) for line in (tmp_path / "a" / "changes.jsonl").open()]
    assert {r["question_id"] for r in rows} == set(by_id) and all(r["synthetic"] for r in rows)
    assert fact("is refused") is None and fact("debugging") == ("term", "debugging")
    assert fact("EUR 1,250 a year") == ("figure", "1,250")
    other = synthetic_changes(docs, _cases(), corpus, tmp_path / "c", limit=8, seed=1)
    assert [e.new for e in other] != [e.new for e in edits]
    assert len(synthetic_changes(docs, _cases(), corpus, tmp_path / "d", limit=2)) == 2


def test_a_replacement_already_in_the_corpus_is_never_used(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The fee is 5 percent.\n")
    # every other one-digit figure is taken: the fee gets a two-digit one no document has
    (docs / "b.md").write_text(" ".join(f"{d} percent" for d in range(10) if d != 5) + "\n")
    case = EvalCase("fee?", ("5 percent",), ("a.md",), None, {}, "q")
    corpus = _texts(docs)
    [edit] = synthetic_changes(docs, [case], corpus, tmp_path / "out")
    assert re.fullmatch(r"[1-9]\d percent", edit.new)
    assert not any(contains_answer(t, [edit.new]) for t in corpus.values())
    (docs / "b.md").write_text(" ".join(f"{d} percent" for d in range(100) if d != 5))
    assert synthetic_changes(docs, [case], _texts(docs), tmp_path / "out2") == []
    assert (tmp_path / "out2" / "changes.jsonl").read_text() == ""


def test_with_a_retriever_only_what_it_brings_for_the_question_can_keep_the_old_fact(
        tmp_path: Path) -> None:
    docs = _corpus(tmp_path)
    corpus = _texts(docs)
    q3 = [c for c in _cases() if c.id == "q3"]  # "10 devices": shipping.html states it too

    def brings(passages: dict[str, str]):
        return lambda question: list(passages.items())

    alone = brings({"plans.txt": corpus["plans.txt"]})
    assert [e.question_id for e in synthetic_changes(docs, q3, corpus, tmp_path / "a",
                                                     retrieve=alone)] == ["q3"]
    both = brings({"plans.txt": corpus["plans.txt"], "shipping.html": corpus["shipping.html"]})
    assert synthetic_changes(docs, q3, corpus, tmp_path / "b", retrieve=both) == []


# --- sizing ----------------------------------------------------------------------------------


COUNTS = Counts(documents=40, kilobytes=280.0, chunk_tokens=128, generated=120, eval=60,
                paraphrases=40, tuned_training=48, hybrid_training=48, fresh=8, by="questions")


def test_the_plan_names_every_stage_and_a_budget_shrinks_the_run_to_fit(tmp_path: Path) -> None:
    exp = docs_experiment(SAMPLE_KB)
    plan = estimate(COUNTS, exp, dict(REFERENCE_RATES))
    stages = [s.stage for s in plan.stages]
    assert stages[:3] == ["ingest", "generate questions", "train tuned"]
    assert {f"evaluate {a}" for a in exp.architectures} <= set(stages)
    assert {f"freshness {a}" for a in exp.architectures} <= set(stages)
    assert plan.seconds == pytest.approx(sum(s.seconds for s in plan.stages))
    # passages of twice the reference's length: a prompted reader takes twice as long per
    # question, the RAFT-trained hybrid about 1.4 times, an architecture without them the same
    longer = estimate(replace(COUNTS, chunk_tokens=256), exp, dict(REFERENCE_RATES))
    ratio = {s.stage: s.seconds for s in longer.stages}
    base = {s.stage: s.seconds for s in plan.stages}
    assert ratio["freshness rag"] == pytest.approx(2 * base["freshness rag"])
    assert ratio["freshness hybrid"] == pytest.approx(2 ** 0.5 * base["freshness hybrid"])
    assert ratio["freshness base"] == pytest.approx(base["freshness base"])
    assert "split by questions" in plan.lines()[0] and "estimate: about" in plan.lines()[-1]

    def counts_for(e):  # what the lab's counts() gives, shrunk as the budgets say
        b = e.budgets
        return Counts(40, 280.0, 128, e.generated_questions or 120, min(60, b.eval_cases or 60),
                      min(40, b.consistency_cases if b.consistency_cases is not None else 40),
                      48, min(48, b.hybrid_examples or 48), min(8, e.synthetic_changes),
                      "questions")

    budget = plan.seconds / 60 / 2
    fitted, fitted_plan = fit_budget(exp, counts_for, budget, dict(REFERENCE_RATES))
    assert fitted_plan.seconds <= budget * 60 < plan.seconds
    assert fitted.budgets.eval_cases < 60 and fitted.generated_questions < 120
    assert any("--budget" in n for n in fitted_plan.notes)
    _, tiny = fit_budget(exp, counts_for, 1, dict(REFERENCE_RATES))
    assert any("does not fit" in n for n in tiny.notes)


def test_a_finished_run_records_this_machines_rates_for_the_next_plan(tmp_path: Path) -> None:
    exp = docs_experiment(SAMPLE_KB)
    rates, source = load_rates(tmp_path)
    assert rates == REFERENCE_RATES and "reference" in source
    # 100 questions are 13 batches of 8: 104 questions' time; the model loads once a stage
    stages = {"ingest": 6.0 + 280 * 0.04, "evaluate rag": 6.0 + 104 * 2.0}
    record_rates(tmp_path, COUNTS, stages, exp, "2026-12-01T08:00:00")
    rates, source = load_rates(tmp_path)
    assert rates["ingest_per_kilobyte"] == pytest.approx(0.04)
    assert rates["evaluate_per_question:rag"] == pytest.approx(2.0)
    assert rates["train_tuned_per_example_epoch"] == REFERENCE_RATES[
        "train_tuned_per_example_epoch"]  # not measured: the reference stays
    assert "this machine" in source and "2026-12-01T08:00:00" in source


# --- no checklist ----------------------------------------------------------------------------


def _measured(**archs: tuple[float, float, float, float]) -> Evidence:
    """Evidence of architectures measured as (correct, freshness after, format valid,
    refusal correct)."""
    return Evidence(archs={a: dict(zip(MEASURED_ALONE, values, strict=True))
                           for a, values in archs.items()}, source="lab")


def test_without_a_checklist_the_measurements_alone_decide() -> None:
    evidence = _measured(base=(0.1, 0.0, 0.9, 0.2), rag=(0.6, 0.7, 0.8, 0.5),
                         tuned=(0.3, 0.0, 1.0, 0.4))
    result = assess(None, evidence)
    assert result.recommendation == "rag"
    assert "No checklist was given" in result.reasons[0]
    assert result.scores == {} and {d["arch"] for d in result.decided_by} >= {"rag"}
    # refusing and formatting well do not beat answering: a model that answered nothing right
    # is left out while another did
    silent = _measured(tuned=(0.0, 0.0, 1.0, 1.0), rag=(0.2, 0.1, 0.4, 0.3))
    result = assess(None, silent)
    assert result.recommendation == "rag"
    assert any("tuned answered none" in r for r in result.reasons)
    with pytest.raises(InputError, match="checklist answers, or measurements"):
        assess(None, Evidence(archs={"rag": {"correct": 0.5}}))


def test_a_minimal_experiment_file_names_only_its_documents(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_KB, tmp_path / "handbook")
    path = tmp_path / "exp.yaml"
    path.write_text("knowledge_base:\n  documents: handbook\n")
    exp = load_experiment(path)
    assert exp.name == "handbook" and exp.kb_name == "handbook"
    assert exp.questions is None and exp.checklist is None and exp.changes is None
    assert exp.answer_schema()["required"] == ["answer", "sources"]  # the plain cited answer


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_docs_alone_runs_every_architecture_and_probes_freshness(
        tmp_path: Path, ragtune_home: Path) -> None:
    """The minimal path: a folder of four documents and nothing else, within a budget."""
    docs = tmp_path / "handbook"
    shutil.copytree(SAMPLE_KB, docs)
    before = _texts(docs)
    out = tmp_path / "lab"
    result = CliRunner().invoke(app, ["compare", "--docs", str(docs), "--budget", "3",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert _texts(docs) == before  # the team's documents are never edited
    plan = data["plan"]
    assert plan["seconds"] > 0 and plan["budget_minutes"] == 3
    assert "plan: 4 documents" in result.stderr and "estimate: about" in result.stderr
    assert "left in all" in result.stderr  # each stage says what remains
    exp = data["experiment"]
    assert exp["split_by"] == "questions" and exp["documents"] == 4
    prepared = " ".join(exp["prepared"])
    for said in ("were generated from the documents", "Split by question", "Paraphrases:",
                 "Checklist: not given", "Freshness probe: no change set given"):
        assert said in prepared, said
    assert data["order"] == ["base", "rag", "rag+schema", "rag-tuned-retrieval", "tuned",
                             "hybrid"]
    for arch in data["order"]:
        m = data["architectures"][arch]["metrics"]
        for key in ("correct", "format_valid", "freshness_after", "consistency"):
            assert m[key] is not None, (arch, key)
    fresh = data["freshness"]
    assert fresh["synthetic"] is True and fresh["questions"] == len(fresh["edits"]) >= 2
    for edit in fresh["edits"]:  # each new fact stands in the edited copy, in no original
        assert not any(contains_answer(t, [edit["new"]]) for t in before.values())
        assert contains_answer((out / "documents" / edit["path"]).read_text(), [edit["new"]])
    rec = data["recommendation"]
    assert rec["recommendation"] in {"rag", "fine-tune", "hybrid", "neither"}
    assert "No checklist was given" in rec["reasons"][0]
    report = (out / "report.md").read_text()
    assert "## Prepared by the lab" in report and "Split by question" in report
    assert "## Synthetic change set (freshness probe)" in report
    assert (ragtune_home / "labs" / "rates.json").is_file()  # the next plan uses them


@pytest.mark.slow
def test_compare_with_one_phrasing_questions_splits_by_question_and_says_so(
        tmp_path: Path, ragtune_home: Path) -> None:
    """A team's real questions: one phrasing each, answers for some, `[]` for the others, no
    gold documents; too few to train on alone."""
    questions = ROOT / "examples" / "sample-cases.jsonl"
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    assert all("phrasings" not in r and "gold_doc_ids" not in r for r in rows)
    assert {bool(r["answers"]) for r in rows} == {True, False}
    out = tmp_path / "lab"
    result = CliRunner().invoke(app, ["compare", "--docs", str(SAMPLE_KB), "--questions",
                                      str(questions), "--budget", "3", "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    exp = data["experiment"]
    assert exp["split_by"] == "questions"
    prepared = " ".join(exp["prepared"])
    for said in ("Split by question", "Gold documents: 6 answerable questions named none",
                 "Training questions: the question file left 6 to train on"):
        assert said in prepared, said
    report = (out / "report.md").read_text()
    assert "Split by question" in report and "Questions: none given" not in report
    lab = json.loads((out / "lab.json").read_text())
    asked = {c["id"] for c in lab["cases"] if c["kind"] == "eval"}
    given = {r["id"]: r for r in rows}
    assert asked <= set(given) and any(not given[i]["answers"] for i in asked)
    evaluated = [a for i in asked for a in given[i]["answers"]]
    trained = (out / "adapters" / "tuned" / "closed-book-data.jsonl").read_text()
    assert len(trained.splitlines()) == TRAINING_FLOOR
    assert evaluated and not contains_answer(trained, evaluated)  # no evaluated fact trained
    assert data["freshness"]["synthetic"] is True and data["freshness"]["questions"] >= 1
    assert {e["question_id"] for e in data["freshness"]["edits"]} <= asked
