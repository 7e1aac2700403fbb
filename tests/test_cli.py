"""The command line contract: --json shapes on stdout, exit statuses, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

pytestmark = pytest.mark.slow

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_ingest_json_shape_and_rerun(six_docs: Path) -> None:
    first = run("ingest", str(six_docs), "--kb", "c", "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert {"added", "updated", "unchanged", "deleted", "failed"} <= set(data)
    assert (data["added"], data["failed"]) == (6, [])
    second = json.loads(run("ingest", str(six_docs), "--kb", "c", "--json").stdout)
    assert second["unchanged"] == 6 and second["added"] == 0


def test_ingest_with_a_bad_file_exits_1_and_names_it(six_docs: Path) -> None:
    (six_docs / "bad.pdf").write_bytes(b"not a pdf")
    result = run("ingest", str(six_docs), "--kb", "c", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["added"] == 6
    assert [Path(f["path"]).name for f in data["failed"]] == ["bad.pdf"]
    assert "bad.pdf: not a PDF" in result.stderr


def test_docs_list_show_rm(six_docs: Path) -> None:
    run("ingest", str(six_docs), "--kb", "c", "--groups", "staff,ops")
    listed = json.loads(run("docs", "list", "--kb", "c", "--json").stdout)["documents"]
    assert len(listed) == 6
    assert {"id", "source", "version", "chunks", "groups", "metadata"} <= set(listed[0])
    assert listed[0]["groups"] == ["ops", "staff"]
    doc_id = next(d["id"] for d in listed if d["id"].endswith("kettle.md"))
    shown = json.loads(run("docs", "show", doc_id, "--kb", "c", "--json").stdout)
    assert shown["versions"][0]["event"] == "added"
    assert shown["chunks"][0]["heading"] == "Kettle manual"
    removed = run("docs", "rm", doc_id, "--kb", "c", "--json")
    assert removed.exit_code == 0 and json.loads(removed.stdout)["deleted"] == [doc_id]
    missing = run("docs", "rm", doc_id, "--kb", "c")
    assert missing.exit_code == 1
    gone = run("docs", "show", doc_id, "--kb", "c")
    assert gone.exit_code == 1 and "no document" in gone.stderr


def test_search_json_shape(six_docs: Path) -> None:
    run("ingest", str(six_docs), "--kb", "c")
    for mode in ("bm25", "dense", "hybrid"):
        result = run("search", "how long does green tea steep", "--kb", "c", "--mode", mode,
                     "-k", "3", "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["mode"] == mode and data["degraded"] is None
        hit = data["hits"][0]
        assert {"rank", "score", "doc_id", "chunk_id", "text", "metadata"} <= set(hit)
        assert hit["doc_id"].endswith("tea.html") and "Green tea" in hit["text"]


def test_usage_errors_exit_2_and_user_errors_exit_1(tmp_path: Path) -> None:
    assert run("ingest").exit_code == 2
    assert run("search", "x", "--bogus").exit_code == 2
    missing = run("ingest", str(tmp_path / "nope"), "--kb", "c")
    assert missing.exit_code == 1
    assert "no such file or folder" in missing.stderr
    bad_kb = run("docs", "list", "--kb", "../escape")
    assert bad_kb.exit_code == 1 and "knowledge base name" in bad_kb.stderr


def test_unknown_config_key_is_named(ragtune_home: Path) -> None:
    ragtune_home.mkdir(parents=True, exist_ok=True)
    (ragtune_home / "config.toml").write_text("[chunking]\nmax_tokns = 10\n")
    result = run("docs", "list")
    assert result.exit_code == 1
    assert "unknown setting 'chunking.max_tokns'" in result.stderr


def test_console_script_json_stdout_is_pure(six_docs: Path, ragtune_home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ragtune", "ingest", str(six_docs), "--kb", "p", "--json"],
        capture_output=True, text=True, env={"RAGTUNE_HOME": str(ragtune_home),
                                             "PATH": "/usr/bin:/bin"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["added"] == 6  # stdout holds exactly one JSON document


def test_ask_json_citations_resolve_to_stored_chunks(six_docs: Path, generator) -> None:
    from ragtune import KnowledgeBase, Settings

    run("ingest", str(six_docs), "--kb", "c")
    result = run("ask", "How often should the chain be oiled?", "--kb", "c", "-k", "3",
                 "--json", "--show-context")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"question", "answer", "refused", "citations", "passages", "prompt", "search",
            "raw_output", "generation", "timings_ms", "signals"} <= set(data)
    with KnowledgeBase.open("c", Settings.load()) as kb:
        for c in data["citations"]:
            [chunk] = kb.store.get_chunks([c["chunk_id"]])
            assert (chunk.doc_id, chunk.version, chunk.start, chunk.end) == (
                c["doc_id"], c["version"], c["start"], c["end"])
            assert kb.store.document_text(c["doc_id"])[c["start"]:c["end"]] == chunk.text
            assert c["number"] in [p["number"] for p in data["passages"]]
    assert not data["refused"] and data["citations"], data["raw_output"]
    plain = json.loads(run("ask", "How often should the chain be oiled?", "--kb", "c", "-k", "3",
                           "--json").stdout)
    assert "prompt" not in plain and "text" not in plain["passages"][0]


def test_ask_refuses_without_relevant_content(six_docs: Path, generator) -> None:
    run("ingest", str(six_docs), "--kb", "c")
    result = run("ask", "What is the boiling point of tungsten in kelvin?", "--kb", "c",
                 "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["refused"] and data["citations"] == []
    assert data["answer"] == "I don't know based on the provided documents."
    text = run("ask", "What is the boiling point of tungsten in kelvin?", "--kb", "c")
    assert "I don't know based on the provided documents." in text.stdout
    assert "refused" in text.stderr


def test_ask_human_output_lists_sources(six_docs: Path, generator) -> None:
    run("ingest", str(six_docs), "--kb", "c")
    result = run("ask", "How often should the chain be oiled?", "--kb", "c", "-k", "2",
                 "--show-context")
    assert result.exit_code == 0, result.output
    assert "Sources" in result.stdout and "bikes.txt" in result.stdout
    assert "[1]" in result.stdout and "oil the chain every 300" in result.stdout  # the snippet
    assert "Context" in result.stdout and "refused" not in result.stderr


def test_ask_errors(six_docs: Path) -> None:
    empty = run("ask", "anything", "--kb", "never-made")
    assert empty.exit_code == 1 and "run `ragtune ingest` first" in empty.stderr
    run("ingest", str(six_docs), "--kb", "c")
    bad = run("ask", "anything", "--kb", "c", "--generator", "mystery:x")
    assert bad.exit_code == 1 and "unknown generator" in bad.stderr


@pytest.mark.parametrize("command", [
    ["search", "anything"], ["calibrate", "{cases}"], ["eval", "{cases}"],
    ["tune", "{cases}", "--raft", "--out", "{out}"], ["traces", "list"],
    ["traces", "show", "t1"],
])
def test_commands_that_read_a_knowledge_base_refuse_one_never_made(
        tmp_path: Path, command: list[str]) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"question": "q", "answers": []}\n')
    args = [a.format(cases=cases, out=tmp_path / "adapter") for a in command]
    result = run(*args, "--kb", "never-made")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (  # (tune draws its bar first)
        "error knowledge base 'never-made' is empty: run `ragtune ingest` first")
    assert not (tmp_path / "adapter").exists()


def test_calibrate_stores_a_policy_that_ask_uses(six_docs: Path, tmp_path: Path,
                                                 generator) -> None:
    from ragtune import KnowledgeBase, Settings
    from ragtune.answering import Answerer

    run("ingest", str(six_docs), "--kb", "c")
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in [
        {"question": "How long does green tea steep?", "answers": ["two minutes"]},
        {"question": "Which planet is the largest?", "answers": ["Jupiter"]},
        {"question": "How many moons does Saturn have?", "answers": []},
        {"question": "What temperature is black tea brewed at in Japan?", "answers": []},
    ]) + "\n")
    dry = run("calibrate", str(cases), "--kb", "c", "--json", "--dry-run")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["stored"] is False and report["cases"] == 4 and report["answerable"] == 2
    assert 0 < report["policy"]["min_similarity"] < 1
    with KnowledgeBase.open("c", Settings.load()) as kb:
        assert Answerer(kb, generator).policy.calibrated_on == "settings"
    stored = run("calibrate", str(cases), "--kb", "c")
    assert stored.exit_code == 0 and "stored in the knowledge base" in stored.stderr
    with KnowledgeBase.open("c", Settings.load()) as kb:
        assert Answerer(kb, generator).policy.calibrated_on == "4 cases"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    failed = run("calibrate", str(bad), "--kb", "c")
    assert failed.exit_code == 1 and "bad.jsonl:1: 'answers' is missing" in failed.stderr


def test_eval_json_saved_run_and_compare(six_docs: Path, generator, tmp_path: Path) -> None:
    run("ingest", str(six_docs), "--kb", "c")
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        '{"id": "chain", "question": "How often should the chain be oiled?", '
        '"answers": ["every 300 kilometres"]}\n'
        '{"id": "tungsten", "question": "What is the boiling point of tungsten?", '
        '"answers": []}\n', encoding="utf-8")
    outputs = {}
    for arch in ("base", "rag"):
        result = run("eval", str(cases), "--kb", "c", "--arch", arch, "--json",
                     "--out", str(tmp_path / arch))
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert {"cases", "metrics", "failure_causes", "remedies", "out"} <= set(data)
        assert data["cases"] == 2 and data["out"] == str(tmp_path / arch)
        assert 0.0 <= data["metrics"]["refusal_correct"] <= 1.0
        traces = [json.loads(line) for line in
                  (tmp_path / arch / "cases.jsonl").read_text().splitlines()]
        assert [t["id"] for t in traces] == ["chain", "tungsten"]
        assert json.loads((tmp_path / arch / "config.json").read_text())["arch"] == arch
        outputs[arch] = data
    assert outputs["base"]["metrics"]["recall@50"] is None
    assert outputs["rag"]["metrics"]["recall@50"] == 1.0
    diff = run("eval", "--compare", str(tmp_path / "base"), str(tmp_path / "rag"), "--json")
    assert diff.exit_code == 0, diff.output
    data = json.loads(diff.stdout)
    assert (data["a"], data["b"], data["shared_cases"]) == ("base", "rag", 2)
    human = run("eval", "--compare", str(tmp_path / "base"), str(tmp_path / "rag"))
    assert human.exit_code == 0 and "refusal_correct" in human.stdout


def test_eval_human_summary_and_errors(six_docs: Path, generator, tmp_path: Path) -> None:
    run("ingest", str(six_docs), "--kb", "c")
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"question": "What is the boiling point of tungsten?", "answers": []}\n',
                     encoding="utf-8")
    result = run("eval", str(cases), "--kb", "c", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "failure causes" in result.stdout and "pass_rate" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\nnot json\n', encoding="utf-8")
    result = run("eval", str(bad), "--kb", "c")
    assert result.exit_code == 1
    assert "bad.jsonl:1: 'answers' is missing" in result.output
    assert "bad.jsonl:2: invalid JSON" in result.output
    assert run("eval", str(cases), "--kb", "c", "--arch", "tuned").exit_code == 1
    assert run("eval", "--kb", "c").exit_code == 2  # neither CASES nor --compare
    result = run("eval", "--compare", str(tmp_path), str(tmp_path / "r"))
    assert result.exit_code == 1 and "not an evaluation run" in result.output


def test_testset_writes_cases_eval_reads(six_docs: Path, tmp_path: Path) -> None:
    run("ingest", str(six_docs), "--kb", "c")
    target = tmp_path / "gen.jsonl"
    result = run("testset", "--kb", "c", "-n", "4", "--unanswerable", "0.25", "--seed", "1",
                 "--out", str(target), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cases"] == data["answerable"] + data["unanswerable"] and data["answerable"] >= 1
    from ragtune.cases import load_cases

    assert len(load_cases(target)) == data["cases"]
    again = run("testset", "--kb", "c", "-n", "4", "--unanswerable", "0.25", "--seed", "1",
                "--out", str(tmp_path / "again.jsonl"), "--json")
    assert (tmp_path / "again.jsonl").read_text() == target.read_text()
    assert again.exit_code == 0
