"""`ragtune compare` end to end on a slice of the bundled sample, with the real bundled models:
training, every architecture, the freshness probe, adapter reuse, the report in Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.evaluation.runner import load_run
from ragtune.lab import SAMPLE_EXPERIMENT

pytestmark = pytest.mark.slow

SAMPLE = SAMPLE_EXPERIMENT.parent
ARTICLES = ("returns-policy.md", "refunds.md", "aero-monitor.md", "support-hours.md",
            "data-security.md", "gift-cards.md")
CHANGED = ("returns-policy.md", "refunds.md")


def case_valid(raw: str) -> bool:
    from ragtune.evaluation.metrics import schema_errors

    schema = json.loads((SAMPLE / "answer-schema.json").read_text())
    return not schema_errors(raw, schema)


def _slice(tmp: Path) -> Path:
    """Six articles, their 18 questions, four unanswerable ones, two changed articles."""
    (tmp / "kb").mkdir()
    (tmp / "changes").mkdir()
    for name in ARTICLES:
        shutil.copy(SAMPLE / "kb" / name, tmp / "kb" / name)
    for name in CHANGED:
        shutil.copy(SAMPLE / "changes" / name, tmp / "changes" / name)
    rows = [json.loads(line) for line in (SAMPLE / "questions.jsonl").read_text().splitlines()]
    keep = [r for r in rows if set(r["gold_doc_ids"]) & set(ARTICLES)]
    keep += [r for r in rows if not r["answers"]][:4]
    (tmp / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    changes = [line for line in (SAMPLE / "changes.jsonl").read_text().splitlines()
               if json.loads(line)["doc_id"] in CHANGED]
    (tmp / "changes.jsonl").write_text("\n".join(changes) + "\n")
    shutil.copy(SAMPLE / "answer-schema.json", tmp / "answer-schema.json")
    shutil.copy(SAMPLE / "checklist.yaml", tmp / "checklist.yaml")
    exp = tmp / "experiment.yaml"
    exp.write_text(
        "name: slice\n"
        "knowledge_base: {name: slice, documents: kb, chunk_tokens: 96}\n"
        "questions: questions.jsonl\n"
        "changes: {documents: changes, questions: changes.jsonl}\n"
        "task: {schema: answer-schema.json}\n"
        "checklist: checklist.yaml\n"
        "budgets: {eval_cases: 8, consistency_cases: 2, hybrid_examples: 8, tuned_epochs: 1,\n"
        "          train_batch_size: 8, eval_batch_size: 8, max_new_tokens: 32}\n")
    return exp


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    """One compare run (the CLI, --json) shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("lab")
    home = tmp / "home"
    home.mkdir()
    (home / "config.toml").write_text('[generator]\ndtype = "float32"\n')
    mp = pytest.MonkeyPatch()
    mp.setenv("RAGTUNE_HOME", str(home))
    mp.setenv("RAGTUNE_CACHE", str(model_cache))
    exp = _slice(tmp)
    out = tmp / "out"
    result = CliRunner().invoke(app, ["compare", str(exp), "--out", str(out), "--json"])
    yield exp, out, result, home
    mp.undo()


def test_compare_measures_every_architecture_and_writes_the_report(lab_run) -> None:
    exp, out, result, _ = lab_run
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["order"] == ["base", "rag", "rag+schema", "rag-tuned-retrieval", "tuned",
                             "hybrid"]
    assert data["recommendation"]["recommendation"] in {"rag", "fine-tune", "hybrid", "neither"}
    assert data["recommendation"]["reasons"]
    for arch in data["order"]:
        m = data["architectures"][arch]["metrics"]
        for key in ("correct", "format_valid", "refusal_correct", "freshness_after",
                    "consistency", "latency_ms_p50", "prompt_tokens"):
            assert m[key] is not None, (arch, key)
        assert 0 <= m["correct"] <= 1 and 0 <= m["format_valid"] <= 1
    arch = data["architectures"]
    # retrieval is measured where there is retrieval, faithfulness too
    assert arch["rag"]["metrics"]["recall@k"] is not None
    assert arch["base"]["metrics"]["faithfulness"] is None
    # base and rag run the plain model (not the reader `ask` uses by default), and say so;
    # the adapters trained here are applied to that same plain model
    assert [load_run(out / "runs" / a).config["generator"] for a in ("base", "rag", "hybrid")
            ] == ["local:smollm2", "local:smollm2", "local:smollm2+hybrid"]
    assert any("run the plain local:smollm2" in n for n in data["experiment"]["notes"])
    # constrained decoding: every generated answer is valid for the schema unless it ran into
    # the token limit (the grammar is guaranteed, termination is not)
    for r in load_run(out / "runs" / "rag-schema").results:
        if r.raw_output and not case_valid(r.raw_output):
            assert r.output_tokens == 32, r.raw_output
    # the adapters were trained (timed); the closed-book one learned documents that changed
    assert arch["tuned"]["metrics"]["training_seconds"] > 0
    assert arch["tuned"]["metrics"]["adapter_stale"] is True
    assert set(arch["tuned"]["metrics"]["adapter_stale_documents"]) == set(CHANGED)
    assert arch["tuned"]["metrics"]["change_cost"].startswith("retrain")
    assert arch["rag"]["metrics"]["change_cost"] == "re-sync 2 documents"
    fresh = data["freshness"]
    assert fresh["changed_documents"] == sorted(CHANGED) and fresh["questions"] == 4
    assert fresh["resync_seconds"] is not None and fresh["resync"]["updated"] == 2
    assert [s["stage"] for s in data["stages"]][:4] == ["ingest", "train tuned", "train hybrid",
                                                        "tune retrieval"]
    for name in ("report.html", "report.md", "lab.json"):
        assert (out / name).is_file()
    assert data["report"]["html"] == str(out / "report.html")


def test_every_evaluation_is_an_eval_run_with_traces(lab_run) -> None:
    _, out, _, _ = lab_run
    lab = json.loads((out / "lab.json").read_text())
    for arch in ("base", "rag-schema", "hybrid"):
        run = load_run(out / "runs" / arch)
        assert run.config["cases"] == 8 and len(run.results) == 8
        assert all(r.raw_output or r.refused for r in run.results)
        assert load_run(out / "runs" / f"{arch}-fresh").config["cases"] == 4
        assert load_run(out / "runs" / f"{arch}-paraphrases").config["cases"] == 2
    kinds = {c["kind"] for c in lab["cases"]}
    assert kinds == {"eval", "paraphrase", "fresh"}
    case = next(c for c in lab["cases"] if c["kind"] == "eval" and c["answers"])
    assert set(case["by_arch"]) == set(lab["order"])
    passages = case["by_arch"]["rag"]["passages"]
    assert passages and all(p["text"] for p in passages)  # the drill-down shows the passages
    assert case["by_arch"]["base"]["passages"] == []
    assert not any(p.startswith("/") for p in case["gold_doc_ids"])


def test_lab_json_is_the_typed_result_key_for_key(lab_run) -> None:
    from ragtune.lab import LabResult, load_lab

    _, out, result, _ = lab_run
    text = (out / "lab.json").read_text(encoding="utf-8")
    lab = load_lab(out / "lab.json")
    assert isinstance(lab, LabResult)
    assert json.dumps(lab.to_dict(), indent=2, ensure_ascii=False) + "\n" == text
    data = json.loads(result.stdout)
    assert list(data) == ["experiment", "recommendation", "order", "architectures", "freshness",
                          "retrieval_levers", "stages", "seconds", "plan", "report"]
    # the plan announced before any work: its stages, each estimated, summing to the total
    plan = data["plan"]
    assert plan["stages"] and abs(sum(s["seconds"] for s in plan["stages"])
                                  - plan["seconds"]) < 1
    assert {k: v for k, v in data.items() if k not in ("plan", "report")} == {
        k: v for k, v in json.loads(text).items() if k in data}
    assert lab.architectures["rag"].metrics.recall_at_k == data["architectures"]["rag"][
        "metrics"]["recall@k"]


def test_rag_tuned_retrieval_searches_with_levers_chosen_on_training_questions(lab_run) -> None:
    _, out, result, _ = lab_run
    data = json.loads(result.stdout)
    levers = data["retrieval_levers"]
    # chosen on the training phrasings, reported on the evaluation questions that have gold
    # documents (the unanswerable ones have none)
    lab = json.loads((out / "lab.json").read_text())
    with_gold = [c for c in lab["cases"] if c["kind"] == "eval" and c["gold_doc_ids"]]
    assert 0 < levers["heldout_queries"] == len(with_gold) <= 8 < levers["train_queries"]
    ranking = [r for r in levers["levers"] if r["lever"] == "ranking"]
    assert len(ranking) == 9 and sum(r["chosen"] for r in ranking) == 1
    chosen = next(r for r in ranking if r["chosen"])
    assert chosen["train"]["ndcg@10"] >= max(r["train"]["ndcg@10"] for r in ranking) - 0.005
    assert levers["after"]["ndcg@10"] == chosen["heldout"]["ndcg@10"]
    run = load_run(out / "runs" / "rag-tuned-retrieval")
    assert run.config["generator"] == "local:smollm2" and run.config["cases"] == 8
    assert run.config["arch"] == "rag"
    assert run.config["k"] == levers["chosen"]["answer"]["k"]  # searched as chosen
    assert run.config["settings"]["retrieval"] == levers["chosen"]["retrieval"]
    assert any(r.startswith("Retrieval levers (") and "training (hybrid) then changed "
               "correctness by" in r for r in data["recommendation"]["reasons"])
    md = (out / "report.md").read_text()
    assert "## Retrieval levers (rag-tuned-retrieval)" in md
    assert chosen["setting"] in md
    assert 'id="levers"' in (out / "report.html").read_text()


def test_assess_reads_the_lab_as_evidence(lab_run) -> None:
    exp, out, _, _ = lab_run
    result = CliRunner().invoke(app, ["assess", "--answers", str(exp.parent / "checklist.yaml"),
                                      "--evidence", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert any(d["metric"] == "score" for d in data["decided_by"])


def test_the_real_report_renders_in_chromium(lab_run, browser) -> None:
    from browser import file_url, severe_console_errors

    _, out, _, _ = lab_run
    lab = json.loads((out / "lab.json").read_text())
    severe_console_errors(browser)  # drain
    browser.get(file_url(out / "report.html"))
    assert severe_console_errors(browser) == []
    rec = browser.find_element("id", "recommendation").text
    assert lab["recommendation"]["recommendation"] in rec
    table = browser.find_element("id", "comparison")
    headers = [th.text for th in table.find_elements("css selector", "thead th")]
    assert all(any(a in h for h in headers) for a in lab["order"])
    assert "Correct" in table.text or "correct" in table.text.lower()


def test_a_second_run_reuses_the_adapters_whose_manifest_matches(lab_run) -> None:
    """Last in this module: it rewrites the lab folder's report."""
    exp, out, _, home = lab_run
    manifests = {a: (out / "adapters" / a / "ragtune-adapter.json").read_text()
                 for a in ("tuned", "hybrid")}
    text = exp.read_text().replace("eval_cases: 8", "eval_cases: 4")
    smaller = exp.with_name("again.yaml")
    smaller.write_text(text + "architectures: [tuned, hybrid]\n")
    result = CliRunner().invoke(app, ["compare", str(smaller), "--out", str(out), "--json",
                                      "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "tuned adapter: reused" in result.stderr and "hybrid adapter: reused" in result.stderr
    for arch, text in manifests.items():  # untouched: not retrained
        assert (out / "adapters" / arch / "ragtune-adapter.json").read_text() == text
    assert json.loads(result.stdout)["order"] == ["tuned", "hybrid"]


def test_compare_refuses_to_sync_a_knowledge_base_it_did_not_build(tmp_path: Path,
                                                                   six_kb) -> None:
    exp = _slice(tmp_path)
    exp.write_text(exp.read_text().replace("name: slice, documents", "name: six, documents"))
    result = CliRunner().invoke(app, ["compare", str(exp), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "knowledge base 'six' already exists, built outside the lab" in result.stderr
    assert six_kb.store.document_hashes()  # untouched
