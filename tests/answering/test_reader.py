"""The grounded reader ships in the package and is what answers by default with the bundled
model; the plain model is one setting away, and closed-book runs and the lab never get it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ragtune import Settings
from ragtune.answering import generator_for
from ragtune.answering.ask import answering_adapter
from ragtune.bundled import reader_adapter
from ragtune.evaluation.runner import Evaluator
from ragtune.models.adapter_manifest import MANIFEST_FILE, read_manifest

REPO = Path(__file__).resolve().parents[2]


def test_the_reader_ships_small_with_a_manifest_that_says_how_it_was_made() -> None:
    folder = reader_adapter()
    assert folder == REPO / "src" / "ragtune" / "data" / "reader"
    weights = folder / "adapter_model.safetensors"
    assert 1_000_000 < weights.stat().st_size <= 20_000_000
    manifest = read_manifest(folder)
    assert manifest.command == "make reader"
    assert manifest.base_model.name == "local:smollm2"
    assert len(manifest.data.sha256) == 64 and manifest.data.shape == "raft"
    assert manifest.data.examples == manifest.data.train + manifest.data.validation
    assert manifest.metrics["val_loss"] < manifest.metrics["val_loss_before"]
    # no path of the machine it was trained on
    assert "/work/" not in (folder / MANIFEST_FILE).read_text(encoding="utf-8")
    # the files a wheel must carry are the package data pyproject names
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = data["tool"]["setuptools"]["package-data"]["ragtune"]
    assert {f"data/reader/{p.name}" for p in folder.iterdir()
            if p.name != "raft-data.jsonl"} <= set(shipped)


def test_the_bundled_model_answers_with_the_reader_unless_told_otherwise(tmp_path: Path
                                                                          ) -> None:
    settings = Settings.load(home=tmp_path)
    assert answering_adapter(settings) == reader_adapter()
    assert generator_for(settings).name == "local:smollm2+reader"
    plain = settings.with_overrides({"generator": {"reader": False}})
    assert answering_adapter(plain) is None
    assert generator_for(plain).name == "local:smollm2"
    own = settings.with_overrides({"generator": {"adapter": str(reader_adapter())}})
    assert answering_adapter(own) == reader_adapter()  # an explicit adapter wins
    remote = settings.with_overrides({"generator": {"name": "openai:gpt-4o-mini",
                                                    "base_url": "http://127.0.0.1:9/v1"}})
    assert answering_adapter(remote) is None


def test_closed_book_runs_the_plain_model_and_rag_the_reader(six_kb) -> None:
    assert Evaluator(six_kb, "base").answerer.generator.name == "local:smollm2"
    assert Evaluator(six_kb, "rag").answerer.generator.name == "local:smollm2+reader"
