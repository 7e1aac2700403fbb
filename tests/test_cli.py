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
    ragtune_home.mkdir(parents=True)
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
