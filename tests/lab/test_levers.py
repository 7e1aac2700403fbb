"""Retrieval levers (`ragtune tune-retrieval`) on a small slice of BEIR SciFact, with the real
embedder and real SQLite: the split and the choice are reproducible, every lever is chosen on
the training split and reported on the held-out one, `--apply` rewrites only what changed, and
a tuned embedder is a real model with a manifest."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragtune import (
    ChunkingSettings,
    ConfigError,
    EmbedderPair,
    EvalCase,
    KnowledgeBase,
    Settings,
    apply_tuning,
    search,
    split_cases,
    tune_embedder,
    tune_retrieval,
)
from ragtune.cli import app
from ragtune.evaluation import load_beir
from ragtune.lab.levers import PASSAGE_COST, RANKERS, Ranker
from ragtune.models.embedders import get_embedder
from ragtune.retrieval import searcher_for
from ragtune.tuning.embedder import pairs_sha256, read_embedder_manifest, record_metrics

pytestmark = pytest.mark.slow

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "scifact"
runner = CliRunner()


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A corpus of the gold documents of 24 train queries plus 36 others, and their cases."""
    rng = random.Random(7)
    train = load_beir(SCIFACT, "train")
    queries = rng.sample(sorted(train.qrels), 24)
    gold = {d for q in queries for d in train.qrels[q]}
    rows = [json.loads(line) for line in
            (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    others = rng.sample([r for r in rows if r["_id"] not in gold], 36)
    root = tmp_path_factory.mktemp("scifact-slice")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n"
                              for r in [r for r in rows if r["_id"] in gold] + others))
    cases = root / "cases.jsonl"
    cases.write_text("".join(json.dumps({"id": q, "question": train.queries[q], "answers": [],
                                         "gold_doc_ids": sorted(train.qrels[q])}) + "\n"
                             for q in queries))
    return corpus, cases


@pytest.fixture
def slice_kb(slice_files: tuple[Path, Path], settings: Settings, embedder):
    kb = KnowledgeBase.open("slice", settings)
    kb.ingest([slice_files[0]])
    yield kb
    kb.close()


def load(path: Path) -> list[EvalCase]:
    from ragtune import load_cases

    return load_cases(path)


def test_split_is_seeded_and_ignores_file_order(slice_files: tuple[Path, Path]) -> None:
    cases = load(slice_files[1])
    train, held = split_cases(cases, heldout=0.25, seed=3)
    assert len(held) == 6 and len(train) == 18
    assert not {c.id for c in train} & {c.id for c in held}
    again = split_cases(list(reversed(cases)), heldout=0.25, seed=3)
    assert [c.id for c in again[1]] == [c.id for c in held]
    other = split_cases(cases, heldout=0.25, seed=4)
    assert [c.id for c in other[1]] != [c.id for c in held]
    no_gold = [EvalCase("q?", ("a",))] * 10
    with pytest.raises(Exception, match="gold_doc_ids"):
        split_cases(no_gold)


def test_same_seed_same_choice_and_choices_come_from_training(
        slice_kb: KnowledgeBase, slice_files: tuple[Path, Path]) -> None:
    train, held = split_cases(load(slice_files[1]), heldout=0.3, seed=0)
    first = tune_retrieval(slice_kb, train, held, chunkings=(), seed=0)
    second = tune_retrieval(slice_kb, train, held, chunkings=(), seed=0)
    assert first.sections() == second.sections()
    assert [r.to_dict() | {"cost": {}} for r in first.rows] == \
        [r.to_dict() | {"cost": {}} for r in second.rows]
    ranking = [r for r in first.rows if r.lever == "ranking"]
    assert [r.setting for r in ranking] == [r.name for r in RANKERS]
    chosen = next(r for r in ranking if r.chosen)
    # the chosen ranking is the training split's best (or the current one within MIN_GAIN)
    assert chosen.train["ndcg@10"] >= max(r.train["ndcg@10"] for r in ranking) - 0.005
    assert all(r.train_queries == len(train) and r.heldout_queries == len(held) for r in ranking)
    # the report's after figure is the chosen ranking measured on the held-out questions
    assert first.after["ndcg@10"] == pytest.approx(chosen.heldout["ndcg@10"])
    prompt = [r for r in first.rows if r.lever == "prompt"]
    assert sum(r.chosen for r in prompt) == 1
    picked = next(r for r in prompt if r.chosen)

    def utility(r) -> float:  # recall in the prompt, less a cost per passage
        return r.train["prompt_recall"] - PASSAGE_COST * r.cost["passages"]

    assert utility(picked) >= max(utility(r) for r in prompt) - 1e-9
    assert picked.cost["passages"] == first.k
    assert f"k = {first.k}" in first.toml()
    data = first.to_dict()
    assert data["train_queries"] == len(train) and data["heldout_queries"] == len(held)
    assert {"before", "after", "levers", "chosen"} <= set(data)


def test_apply_rechunks_only_what_changed(slice_kb: KnowledgeBase,
                                          slice_files: tuple[Path, Path]) -> None:
    store = slice_kb.store
    before = {d.id: [(c.start, c.end, c.text_hash) for c in store.chunks_of(d.id)]
              for d in slice_kb.documents()}
    versions = {d.id: d.version for d in slice_kb.documents()}
    train, held = split_cases(load(slice_files[1]), heldout=0.3, seed=0)
    tuning = tune_retrieval(slice_kb, train, held, chunkings=((384, 48),), seed=0)
    trial = [r for r in tuning.rows if r.lever == "chunking" and r.setting.startswith("384")]
    assert trial and trial[0].cost["reembedded_chunks"] > 0  # long abstracts only
    tuning.chunking = ChunkingSettings(max_tokens=384, overlap_tokens=48)  # chosen or not
    report = apply_tuning(slice_kb, tuning)

    after = {d.id: [(c.start, c.end, c.text_hash) for c in store.chunks_of(d.id)]
             for d in slice_kb.documents()}
    same = [d for d in before if before[d] == after[d]]
    changed = [d for d in before if before[d] != after[d]]
    assert same and changed  # abstracts under 256 tokens fit either way, longer ones are cut anew
    assert report.unchanged == len(same) and report.updated == len(changed)
    new_versions = {d.id: d.version for d in slice_kb.documents()}
    assert all(new_versions[d] == versions[d] for d in same)
    assert all(new_versions[d] == versions[d] + 1 for d in changed)
    old_hashes = {h for chunks in before.values() for _, _, h in chunks}
    new_texts = {h for d in changed for _, _, h in after[d]} - old_hashes
    assert report.chunks_embedded == len(new_texts)  # nothing already embedded is embedded again
    assert report.chunks_written == sum(len(after[d]) for d in changed)
    again = apply_tuning(slice_kb, tuning)  # already adopted: nothing to rewrite
    assert (again.updated, again.chunks_embedded) == (0, 0)

    # adopted: a fresh object over the same home searches and ingests with the new settings
    reopened = KnowledgeBase.open("slice", Settings.load(home=slice_kb.settings.home))
    assert reopened.settings.chunking.max_tokens == 384
    assert reopened.settings.answer.k == tuning.k
    assert reopened.settings.retrieval.fusion == tuning.ranker.fusion
    assert reopened.ingest([slice_files[0]]).unchanged == len(before)  # no provenance clash
    hit = search(reopened, train[0].question, k=3).hits[0]
    assert hit.text and hit.doc_id in reopened.store.document_hashes()
    reopened.close()


def test_adopted_settings_are_validated(slice_kb: KnowledgeBase, plain_generator) -> None:
    from ragtune import Answerer

    with pytest.raises(ConfigError, match="generator"):
        slice_kb.adopt_settings({"generator": {"name": "openai:x"}})
    with pytest.raises(ConfigError, match="bm25_weight"):
        slice_kb.adopt_settings({"retrieval": {"bm25_weight": 3}})
    assert slice_kb.adopted_settings == {}
    # another process's knowledge base (a running `serve`) searching the same store
    serving = KnowledgeBase.open("slice", Settings.load(home=slice_kb.settings.home))
    searcher = searcher_for(serving)
    searcher.search("vitamin D", k=3)
    assert searcher.fusion == "zscore"
    slice_kb.adopt_settings({"retrieval": {"fusion": "rrf", "rrf_k": 20}})
    assert slice_kb.settings.retrieval.rrf_k == 20
    result = searcher.search("vitamin D", k=3)
    assert searcher.fusion == "rrf" and searcher.hybrids["rrf"].rrf_k == 20
    assert set(result.hits[0].ranks) == {"bm25", "dense"}
    answerer = Answerer(serving, plain_generator)  # made before the next adoption
    assert len(answerer.prepare("vitamin D").search.hits) == 3
    slice_kb.adopt_settings({"answer": {"k": 2}})
    assert len(answerer.prepare("vitamin D").search.hits) == 2
    serving.close()
    assert KnowledgeBase.open("slice", Settings.load(home=slice_kb.settings.home)
                              ).settings.retrieval.fusion == "rrf"


def test_weights_change_the_hybrid_ranking(slice_kb: KnowledgeBase,
                                           slice_files: tuple[Path, Path]) -> None:
    from ragtune.lab.levers import Bench

    bench = Bench(slice_kb)
    cases = load(slice_files[1])
    lexical = bench.document_run(cases, Ranker("hybrid", "zscore", 0.9))
    semantic = bench.document_run(cases, Ranker("hybrid", "zscore", 0.1))
    assert lexical != semantic
    assert bench.document_run(cases, Ranker("bm25")) != bench.document_run(cases,
                                                                           Ranker("dense"))


def test_tuned_embedder_is_a_model_with_a_manifest(tmp_path: Path, slice_kb: KnowledgeBase,
                                                   slice_files: tuple[Path, Path]) -> None:
    from ragtune.lab.levers import Bench

    cases = load(slice_files[1])[:8]
    pairs = Bench(slice_kb).mine_pairs(cases, Ranker("hybrid"), negatives=1)
    assert len(pairs) >= len(cases)
    assert all(p.negatives and p.positive not in p.negatives for p in pairs)
    out = tmp_path / "emb"
    manifest = tune_embedder(pairs, out, epochs=2, batch_size=4, learning_rate=1e-4, seed=0,
                             max_seq_length=128)
    assert manifest.base.name == "local:minilm"
    assert manifest.data.sha256 == pairs_sha256(pairs) and manifest.data.pairs == len(pairs)
    assert manifest.training.steps == 2 * -(-len(pairs) // 4)
    assert manifest.training.loss_first > 0 and manifest.training.loss_last > 0
    record_metrics(out, {"heldout": {"ndcg@10": 0.5}})
    assert read_embedder_manifest(out).metrics["heldout"] == {"ndcg@10": 0.5}

    tuned = get_embedder(f"local:{out}")
    base = get_embedder("local:minilm", 16, slice_kb.settings.cache_dir)

    def margin(model) -> float:
        """How much nearer each question is to its passage than to its hard negative."""
        q = model.embed([p.query for p in pairs])
        pos = model.embed([p.positive for p in pairs])
        neg = model.embed([p.negatives[0] for p in pairs])
        return float(np.mean(np.sum(q * pos, axis=1) - np.sum(q * neg, axis=1)))

    assert margin(tuned) > margin(base)  # it learned what it was shown
    vectors = tuned.embed(["a question", pairs[0].positive])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    report = slice_kb.rebuild(embedder=f"local:{out}")
    chunks = slice_kb.store.stats().chunks
    assert report.chunks_embedded == len({c.text_hash for d in slice_kb.documents()
                                          for c in slice_kb.store.chunks_of(d.id)})
    assert report.updated == len(slice_kb.documents()) and chunks
    assert slice_kb.store.get_meta()["embedder"] == f"local:{out}"
    assert slice_kb.settings.embedder.name == f"local:{out}"
    assert search(slice_kb, cases[0].question, k=3, mode="dense").hits

    with pytest.raises(ConfigError, match="sentence-transformers"):
        get_embedder(f"local:{tmp_path / 'nothing'}")
    with pytest.raises(Exception, match="at least 2"):
        tune_embedder([EmbedderPair("q", "p")], tmp_path / "x")


def test_cli_tune_retrieval(slice_kb: KnowledgeBase, slice_files: tuple[Path, Path],
                            tmp_path: Path) -> None:
    toml = tmp_path / "tuned.toml"
    result = runner.invoke(app, ["tune-retrieval", str(slice_files[1]), "--kb", "slice",
                                 "--chunking", "", "--embedder", "--epochs", "1",
                                 "--out", str(toml), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["applied"] is None
    assert data["train_queries"] + data["heldout_queries"] == 24
    assert {r["lever"] for r in data["levers"]} == {"ranking", "chunking", "embedder", "prompt"}
    assert "[retrieval]" in toml.read_text() and "[answer]" in toml.read_text()
    tuned = next(r for r in data["levers"] if r["lever"] == "embedder"
                 and r["setting"].startswith("tuned"))
    # the tuned embedder learned from part of the training split, was chosen (or not) on the
    # rest, and its manifest records the held-out figures it was reported with
    assert tuned["train_queries"] < data["train_queries"]
    manifest = read_embedder_manifest(Path(tuned["cost"]["folder"]))
    assert manifest.metrics["heldout"]["ndcg@10"] == pytest.approx(tuned["heldout"]["ndcg@10"],
                                                                   abs=1e-4)
    assert manifest.metrics["heldout_queries"] == data["heldout_queries"]
    assert manifest.command and "tune-retrieval" in manifest.command
    assert manifest.data.pairs >= tuned["train_queries"]

    result = runner.invoke(app, ["tune-retrieval", str(slice_files[1]), "--kb", "slice",
                                 "--chunking", "", "--apply"])
    assert result.exit_code == 0, result.output
    assert "held-out nDCG@10" in result.stdout and "applied" in result.stderr
    assert KnowledgeBase.open("slice").adopted_settings["answer"]["k"] == data["chosen"][
        "answer"]["k"]

    bad = runner.invoke(app, ["tune-retrieval", str(slice_files[1]), "--kb", "slice",
                              "--chunking", "big"])
    assert bad.exit_code != 0 and "MAX:OVERLAP" in bad.output
