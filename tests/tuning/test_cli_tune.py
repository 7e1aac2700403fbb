"""`ragtune tune`, `tune --raft`, `adapters list|show`, and adapters and schemas in `ask` and
`eval`, through the command line on the real bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from conftest import write_code_examples
from ragtune.cli import app

pytestmark = pytest.mark.slow

runner = CliRunner()
TINY = ["--epochs", "1", "--batch-size", "4", "--lr", "0.005", "--rank", "4", "--alpha", "8",
        "--precision", "float32", "--min-examples", "4"]
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 60}},
                 "required": ["answer"]}


def run(*args: str):
    return runner.invoke(app, list(args))


def test_tune_json_then_adapters_list_and_show(tmp_path: Path) -> None:
    data = write_code_examples(tmp_path / "codes.jsonl", 10)
    out = tmp_path / "adapter"
    result = run("tune", str(data), "--out", str(out), *TINY, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["out"] == str(out) and report["resumed_from_step"] is None
    assert report["data"]["examples"] == 10 and report["training"]["steps"] == 3
    assert report["metrics"]["val_loss"] is not None
    listed = json.loads(run("adapters", "list", "--json").stdout)["adapters"]
    assert [(Path(a["path"]), a["status"], a["examples"]) for a in listed] == [
        (out.resolve(), "ok", 10)]
    shown = run("adapters", "show", str(out), "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["manifest"]["data"]["sha256"] == report["data"]["sha256"]
    human = run("adapters", "show", str(out))
    assert "fresh" in human.stdout and "trained without a knowledge base" in human.stdout
    assert run("adapters", "show", str(tmp_path / "nope")).exit_code == 1
    again = run("tune", str(data), "--out", str(out), *TINY)
    assert again.exit_code == 0 and "already holds this adapter" in again.stderr


def test_raft_adapter_goes_stale_when_documents_change(six_docs: Path, tmp_path: Path) -> None:
    assert run("ingest", str(six_docs), "--kb", "c").exit_code == 0
    cases = tmp_path / "cases.jsonl"
    rows = [("How often should the kettle be descaled?", ["every month"]),
            ("What pressure do road tyres need?", ["6 to 8 bar"]),
            ("How long does green tea steep?", ["two minutes"]),
            ("How long does black tea steep?", ["four minutes"]),
            ("How often should the chain be oiled?", ["every 300 kilometres"]),
            ("Which planet is the largest?", ["Jupiter"]),
            ("Who wrote Hamlet?", []),
            ("What is the speed of light?", [])]
    cases.write_text("".join(json.dumps({"question": q, "answers": a}) + "\n" for q, a in rows))
    out = tmp_path / "hybrid"
    result = run("tune", str(cases), "--raft", "--kb", "c", "--out", str(out), *TINY,
                 "--distractors", "1", "--withhold", "0.25", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    raft = report["raft"]
    assert raft["examples"] == 8 and raft["unanswerable"] == 2
    assert raft["answered"] + raft["withheld"] == 6
    assert report["data"]["shape"] == "raft"
    examples = [json.loads(line) for line in (out / "raft-data.jsonl").read_text().splitlines()]
    assert len(examples) == 8
    manifest = json.loads((out / "ragtune-adapter.json").read_text())
    assert manifest["knowledge_base"]["name"] == "c"
    assert manifest["data"]["cases_sha256"] and manifest["data"]["path"].endswith(
        "raft-data.jsonl")
    shown = json.loads(run("adapters", "show", str(out), "--json").stdout)
    assert shown["staleness"]["stale"] is False

    (six_docs / "kettle.md").write_text("# Kettle manual\n\nDescale the kettle every week.\n")
    assert run("ingest", str(six_docs), "--kb", "c").exit_code == 0
    shown = json.loads(run("adapters", "show", str(out), "--json").stdout)
    assert shown["status"] == "stale" and shown["staleness"]["stale"] is True
    assert [Path(d).name for d in shown["staleness"]["changed"]] == ["kettle.md"]
    listed = json.loads(run("adapters", "list", "--json").stdout)["adapters"]
    assert [a["status"] for a in listed] == ["stale"]
    asked = run("ask", "How often should the kettle be descaled?", "--kb", "c", "--adapter",
                str(out), "--json")
    assert asked.exit_code == 0, asked.output
    assert "stale adapter" in asked.stderr
    assert json.loads(asked.stdout)["generation"]["model"].endswith("+hybrid")


def test_eval_tuned_and_hybrid_record_the_adapter(six_docs: Path, tiny_adapter,
                                                  tmp_path: Path) -> None:
    result, *_ = tiny_adapter
    assert run("ingest", str(six_docs), "--kb", "c").exit_code == 0
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "tea", "question": "How long does green tea steep?", '
                     '"answers": ["two minutes"]}\n')
    for arch in ("tuned", "hybrid"):
        done = run("eval", str(cases), "--kb", "c", "--arch", arch, "--adapter",
                   str(result.out), "--out", str(tmp_path / arch), "--json")
        assert done.exit_code == 0, done.output
        config = json.loads((tmp_path / arch / "config.json").read_text())
        assert config["arch"] == arch and config["generator"].endswith("+adapter")
        assert config["adapter"]["fingerprint"] == result.manifest.fingerprint
        assert config["adapter"]["status"] == "ok"
    tuned = json.loads((tmp_path / "tuned" / "summary.json").read_text())
    hybrid = json.loads((tmp_path / "hybrid" / "summary.json").read_text())
    assert tuned["metrics"]["recall@50"] is None and hybrid["metrics"]["recall@50"] == 1.0
    wrong = run("eval", str(cases), "--kb", "c", "--arch", "rag", "--adapter", str(result.out))
    assert wrong.exit_code == 1 and "use --arch hybrid" in wrong.stderr


def test_ask_and_eval_with_a_schema(six_docs: Path, generator, tmp_path: Path) -> None:
    assert run("ingest", str(six_docs), "--kb", "c").exit_code == 0
    schema = tmp_path / "answer.json"
    schema.write_text(json.dumps(ANSWER_SCHEMA))
    asked = run("ask", "How long does green tea steep?", "--kb", "c", "--schema", str(schema),
                "--max-tokens", "48", "--json")
    assert asked.exit_code == 0, asked.output
    data = json.loads(asked.stdout)
    assert data["generation"] is not None
    if data["refused"]:
        assert data["raw_output"] is None  # a refused draft never reaches the client
    else:
        jsonschema.validate(json.loads(data["raw_output"]), ANSWER_SCHEMA)
        jsonschema.validate(json.loads(data["answer"]), ANSWER_SCHEMA)
        assert data["schema_errors"] == []
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"question": "How long does green tea steep?", "answers": ["two '
                     'minutes"]}\n{"question": "What do tomatoes need?", "answers": ["full '
                     'sun"]}\n')
    done = run("eval", str(cases), "--kb", "c", "--arch", "base", "--schema", str(schema),
               "--out", str(tmp_path / "run"), "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["metrics"]["schema_valid"] in (1.0, None)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["schema"] == ANSWER_SCHEMA
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = run("ask", "q", "--kb", "c", "--schema", str(bad))
    assert result.exit_code == 1 and "bad.json: not valid JSON" in result.stderr
