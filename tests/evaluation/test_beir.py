"""The BEIR runner and `ragtune bench beir` on a tiny BEIR folder written in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune import InputError
from ragtune.cli import app
from ragtune.evaluation import load_beir

pytestmark = pytest.mark.slow


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "c1", "title": "Kettles", "text": "Descale kettles monthly with citric acid."},
        {"_id": "c2", "title": "Tea", "text": "Green tea steeps two minutes at 80 degrees."},
        {"_id": "c3", "title": "Bikes", "text": "Oil the bicycle chain every 300 kilometres."},
        {"_id": "c4", "title": "Planets", "text": "Jupiter is the largest planet."},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [{"_id": "q1", "text": "how to descale a kettle"},
               {"_id": "q2", "text": "green tea temperature"},
               {"_id": "q3", "text": "largest planet"},
               {"_id": "q4", "text": "unjudged query"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    # CRLF line ends and a header, as some BEIR copies have
    (root / "qrels" / "test.tsv").write_bytes(
        b"query-id\tcorpus-id\tscore\r\nq1\tc1\t1\r\nq2\tc2\t1\r\nq3\tc4\t2\r\n")
    return root


def test_load_beir_tolerates_crlf_and_header(beir_dir: Path) -> None:
    data = load_beir(beir_dir)
    assert data.qrels == {"q1": {"c1": 1}, "q2": {"c2": 1}, "q3": {"c4": 2}}
    assert len(data.queries) == 4


def test_load_beir_errors_name_the_file(beir_dir: Path) -> None:
    with pytest.raises(InputError, match="qrels/dev.tsv: missing"):
        load_beir(beir_dir, split="dev")
    (beir_dir / "qrels" / "test.tsv").write_text("q9\tc1\t1\n")
    with pytest.raises(InputError, match="not in queries.jsonl"):
        load_beir(beir_dir)


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_bench_beir_json(beir_dir: Path, mode: str) -> None:
    result = CliRunner().invoke(app, ["bench", "beir", str(beir_dir), "--mode", mode, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == mode and data["queries"] == 3 and data["documents"] == 4
    assert data["ndcg@10"] == 1.0 and data["recall@100"] == 1.0 and data["mrr@10"] == 1.0
    assert data["latency_ms"]["p50"] > 0


def test_bench_beir_reuses_a_named_kb(beir_dir: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["bench", "beir", str(beir_dir), "--kb", "tiny", "--json"])
    assert first.exit_code == 0
    listed = json.loads(runner.invoke(app, ["docs", "list", "--kb", "tiny", "--json"]).stdout)
    assert len(listed["documents"]) == 4
    again = runner.invoke(app, ["bench", "beir", str(beir_dir), "--kb", "tiny", "--mode", "bm25",
                                "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["ndcg@10"] == 1.0
