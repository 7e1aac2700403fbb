"""Search over small knowledge bases in every mode: access groups, filters, limits, fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from ragtune import InputError, KnowledgeBase, ModelError, Settings, reciprocal_rank_fusion, search
from ragtune.cli import app
from ragtune.config import ChunkingSettings
from ragtune.documents import Document, chunk_document
from ragtune.retrieval import searcher_for

MODES = ["bm25", "dense", "hybrid"]


def test_rrf_known_values() -> None:
    fused = reciprocal_rank_fusion({"a": ["x", "y"], "b": ["y", "z"]}, k=60)
    assert [f[0] for f in fused] == ["y", "x", "z"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[0][2] == {"a": 2, "b": 1}
    weighted = reciprocal_rank_fusion({"a": ["x"], "b": ["z"]}, weights={"a": 2.0})
    assert weighted[0][0] == "x"


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.lists(st.integers(0, 30).map(str), max_size=20), max_size=3),
       st.floats(0, 100))
def test_rrf_scores_are_sums_and_sorted(rankings: dict[str, list[str]], k: float) -> None:
    fused = reciprocal_rank_fusion(rankings, k=k)
    scores = [s for _, s, _ in fused]
    assert scores == sorted(scores, reverse=True)
    assert {f[0] for f in fused} == {i for ids in rankings.values() for i in ids}
    for item, score, ranks in fused:
        assert score == pytest.approx(sum(1 / (k + r) for r in ranks.values()))
        for name, r in ranks.items():
            assert rankings[name].index(item) + 1 == r  # the best (first) rank counts


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder):
    """Public notes on tea and kettles, plus secret documents that match tea queries best."""
    root = tmp_path_factory.mktemp("search")
    settings = Settings.load(home=root / "home")
    base = KnowledgeBase("s", settings, embedder=embedder)
    public = [{"_id": f"pub{i}", "title": f"Tea note {i}",
               "text": f"Tea note {i}: black tea and herbal tea are sold in shop {i}.",
               "year": 2015 + i, "lang": "en" if i % 2 else "fr"} for i in range(10)]
    public.append({"_id": "kettle", "title": "Kettle manual",
                   "text": "Descale the kettle every month with citric acid.", "year": 2020,
                   "lang": "en"})
    public.append({"_id": "kettle-copy", "title": "Kettle manual",
                   "text": "Descale the kettle every month with citric acid.", "year": 2020,
                   "lang": "en"})
    secret = [{"_id": f"sec{i}", "title": "Secret green tea steeping",
               "text": f"Secret {i}: green tea steeps for two minutes at 80 degrees; green tea "
                       "steeping time matters.", "groups": ["hr"]} for i in range(10)]
    base.ingest([write_jsonl(root / "docs.jsonl", public + secret)])
    yield base
    base.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_finds_the_right_document(kb: KnowledgeBase, mode: str) -> None:
    result = search(kb, "when should I descale my kettle", k=3, mode=mode)
    assert result.hits[0].doc_id in ("kettle", "kettle-copy")
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    assert all(mode in h.ranks or mode == "hybrid" for h in result.hits)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_groups_filter_before_ranking_so_top_k_stays_full(kb: KnowledgeBase, mode: str) -> None:
    query = "green tea steeping time in minutes"
    everyone = search(kb, query, k=12, mode=mode)  # unrestricted caller: secrets rank first
    assert everyone.hits[0].doc_id.startswith("sec")
    outsider = search(kb, query, k=8, mode=mode, groups=[])
    assert len(outsider.hits) == 8  # full, although ten better hits were invisible
    assert not any(h.doc_id.startswith("sec") for h in outsider.hits)
    other_group = search(kb, query, k=8, mode=mode, groups=["finance"])
    assert not any(h.doc_id.startswith("sec") for h in other_group.hits)
    insider = search(kb, query, k=8, mode=mode, groups=["hr", "finance"])
    assert insider.hits[0].doc_id.startswith("sec")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_metadata_filters_in_every_mode(kb: KnowledgeBase, mode: str) -> None:
    result = search(kb, "tea shop", k=5, mode=mode, dedupe=False,
                    filters={"year": {"gte": 2020}, "lang": "en"})
    # BM25 returns only chunks that share a term with the query: the kettles do not
    assert len(result.hits) == (3 if mode == "bm25" else 5)
    assert {h.doc_id for h in result.hits} <= {"pub5", "pub7", "pub9", "kettle", "kettle-copy"}
    none = search(kb, "tea", k=5, mode=mode, filters={"year": {"gt": 3000}})
    assert none.hits == []


@pytest.mark.slow
def test_near_duplicates_collapse_and_per_doc_limit(kb: KnowledgeBase) -> None:
    deduped = search(kb, "descale kettle citric acid", k=5, mode="dense")
    ids = [h.doc_id for h in deduped.hits]
    assert ("kettle" in ids) != ("kettle-copy" in ids)  # the copy is collapsed
    assert len(ids) == 5
    both = search(kb, "descale kettle citric acid", k=5, mode="dense", dedupe=False)
    assert {"kettle", "kettle-copy"} <= {h.doc_id for h in both.hits}
    per_doc = search(kb, "tea", k=6, mode="bm25", per_doc=1)
    assert len({h.doc_id for h in per_doc.hits}) == len(per_doc.hits) == 6


@pytest.mark.slow
def test_index_follows_store_writes(kb: KnowledgeBase, tmp_path: Path) -> None:
    searcher = searcher_for(kb)
    before = searcher.index()
    kb.ingest([write_jsonl(tmp_path / "new.jsonl", [
        {"_id": "zebra", "text": "Zebras have black and white stripes."}])])
    assert search(kb, "zebra stripes", k=1, mode="bm25").hits[0].doc_id == "zebra"
    assert searcher.index() is not before
    kb.remove(["zebra"])
    assert all(h.doc_id != "zebra" for h in search(kb, "zebra stripes", k=3).hits)


@pytest.mark.slow
def test_query_fast_paths_equal_batch_embedding(embedder) -> None:
    from ragtune.models import LocalEmbedder

    torch_only = LocalEmbedder(embedder.path, embedder.name)  # no cache dir: no ONNX export
    assert embedder.query_backend == "onnxruntime"
    assert torch_only.query_backend == "torch"
    for text in ["short query", "A longer query about descaling kettles with citric acid."]:
        batch = embedder.embed([text])[0]
        for fast in (embedder.embed_query(text), torch_only.embed_query(text)):
            assert float(fast @ batch) > 0.9999
            np.testing.assert_allclose(fast, batch, atol=2e-4)
    assert list(embedder.cache_dir.glob("minilm-*.onnx"))  # exported once, cached


@pytest.fixture
def vectorless_kb(settings: Settings, counter):
    base = KnowledgeBase("nov", settings, counter=counter)
    base.store.set_meta(base.provenance())
    doc = Document(id="d", text="Kettles need descaling.", source="/d.md", format="md")
    chunks = chunk_document(doc, 0, counter, ChunkingSettings())
    base.store.write_document(doc, chunks, None, [{"kettl": 1, "need": 1, "descal": 1}])
    yield base
    base.close()


@pytest.mark.slow
def test_hybrid_without_vectors_degrades_loudly(vectorless_kb: KnowledgeBase) -> None:
    result = search(vectorless_kb, "descaling kettles", mode="hybrid")
    assert result.degraded and "BM25 only" in result.degraded
    assert result.hits[0].doc_id == "d"
    with pytest.raises(ModelError, match="no vectors"):
        search(vectorless_kb, "descaling kettles", mode="dense")
    runner = CliRunner()
    args = ["search", "descaling kettles", "--kb", "nov", "--json"]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1 and "degraded" in failed.stderr
    assert json.loads(failed.stdout)["degraded"]
    allowed = runner.invoke(app, [*args, "--allow-fallback"])
    assert allowed.exit_code == 0


@pytest.mark.slow
@pytest.mark.parametrize("per_doc", [None, 1])
def test_empty_knowledge_base_gives_no_hits_and_no_degradation(
    settings: Settings, embedder, tmp_path: Path, per_doc: int | None
) -> None:
    with KnowledgeBase("empty", settings, embedder=embedder) as base:
        path = write_jsonl(tmp_path / "one.jsonl", [{"_id": "x", "text": "hello world"}])
        base.ingest([path])
        base.remove(["x"])
        for mode in MODES:
            result = search(base, "hello", mode=mode, per_doc=per_doc)
            assert result.hits == [] and result.degraded is None


@pytest.mark.slow
def test_bad_arguments(kb: KnowledgeBase) -> None:
    with pytest.raises(InputError, match="mode"):
        search(kb, "x", mode="fuzzy")
    with pytest.raises(InputError, match="empty"):
        search(kb, "  ")
    with pytest.raises(InputError, match="k must be"):
        search(kb, "x", k=0)
    with pytest.raises(InputError, match="unknown operator"):
        search(kb, "x", filters={"year": {"around": 3}})


TENANT_ROWS = [
    {"_id": f"{tenant}{i}", "title": f"{tenant} note {i}", "groups": groups,
     "text": f"{tenant} note {i}: {words} shipping takes {i + 2} days; returns within {i} weeks."}
    for tenant, groups, words in (
        ("alpha", ["alpha"], "green tea kettle warranty"),
        ("beta", ["beta"], "launch code zebra7741 kettle warranty tea tea tea"),
        ("both", ["alpha", "beta"], "shared kettle manual"),
        ("pub", [], "public tea shop opening hours"))
    for i in range(6)]


def test_a_callers_ranking_is_the_one_without_the_documents_it_cannot_see(
        tmp_path: Path, embedder) -> None:
    """The statistics policy as an oracle: for a caller holding `alpha`, every score and rank
    in every mode equals an unrestricted search of a knowledge base that holds only what alpha
    may read (BM25 document frequencies and lengths, z-score fusion, RRF, per-document)."""
    settings = Settings.load(home=tmp_path / "home")
    full = KnowledgeBase("full", settings, embedder=embedder)
    full.ingest([write_jsonl(tmp_path / "all.jsonl", TENANT_ROWS)])
    seen = KnowledgeBase("seen", settings, embedder=embedder)
    seen.ingest([write_jsonl(tmp_path / "seen.jsonl", [
        r for r in TENANT_ROWS if not r["groups"] or "alpha" in r["groups"]])])
    for query in ("kettle warranty tea", "zebra7741 launch code", "shipping days"):
        for mode in MODES:
            for per_doc in (None, 1):
                for fusion in ("zscore", "rrf"):
                    got = search(full, query, k=8, mode=mode, groups=["alpha"],
                                 per_doc=per_doc, fusion=fusion)
                    want = search(seen, query, k=8, mode=mode, per_doc=per_doc,
                                  fusion=fusion)
                    where = (query, mode, per_doc, fusion)
                    assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits], where
                    assert [h.score for h in got.hits] == pytest.approx(
                        [h.score for h in want.hits], abs=1e-5), where
    # and the unrestricted caller's statistics do count beta's documents
    everyone = search(full, "tea", k=30, mode="bm25").hits
    alpha = search(full, "tea", k=30, mode="bm25", groups=["alpha"]).hits
    shared = {h.chunk_id: h.score for h in alpha}
    assert any(abs(h.score - shared[h.chunk_id]) > 1e-3 for h in everyone
               if h.chunk_id in shared)
