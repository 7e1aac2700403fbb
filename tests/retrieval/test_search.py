"""Search over a small knowledge base in every mode, including access groups and fusion."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragtune import InputError, KnowledgeBase, Settings, reciprocal_rank_fusion, search


def test_rrf_known_values() -> None:
    fused = reciprocal_rank_fusion({"a": ["x", "y"], "b": ["y", "z"]}, k=60)
    assert [f[0] for f in fused] == ["y", "x", "z"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[0][2] == {"a": 2, "b": 1}
    weighted = reciprocal_rank_fusion({"a": ["x"], "b": ["z"]}, weights={"a": 2.0})
    assert weighted[0][0] == "x"


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.lists(st.integers(0, 30).map(str), max_size=20), max_size=3))
def test_rrf_scores_are_sums_and_sorted(rankings: dict[str, list[str]]) -> None:
    fused = reciprocal_rank_fusion(rankings)
    scores = [s for _, s, _ in fused]
    assert scores == sorted(scores, reverse=True)
    ids = {i for ids in rankings.values() for i in ids}
    assert {f[0] for f in fused} == ids
    for item, score, ranks in fused:
        assert score == pytest.approx(sum(1 / (60 + r) for r in ranks.values()))
        for name, r in ranks.items():
            assert rankings[name].index(item) + 1 == r


@pytest.fixture
def kb(settings: Settings, embedder, six_docs: Path, tmp_path: Path):
    base = KnowledgeBase("s", settings, embedder=embedder)
    base.ingest([six_docs])
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "tea-secret.md").write_text("# Secret tea\n\nThe secret green tea blend is "
                                          "steeped for two minutes at 80 degrees.")
    base.ingest([secret], groups=["hr"])
    yield base
    base.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_each_mode_finds_the_right_document(kb: KnowledgeBase, mode: str) -> None:
    result = search(kb, "when should I descale my kettle", k=3, mode=mode)
    assert result.hits[0].doc_id.endswith("kettle.md")
    assert "Descale" in result.hits[0].text
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_groups_hide_documents_in_every_mode(kb: KnowledgeBase, mode: str) -> None:
    everyone = search(kb, "green tea steeping minutes", k=10, mode=mode, groups=[])
    assert not any("secret" in h.doc_id for h in everyone.hits)
    assert len(everyone.hits) == min(10, len(kb.store.vector_matrix().chunk_ids) - 1) or \
        mode == "bm25"
    hr = search(kb, "green tea steeping minutes", k=10, mode=mode, groups=["hr"])
    assert any("secret" in h.doc_id for h in hr.hits)


@pytest.mark.slow
def test_bad_arguments(kb: KnowledgeBase) -> None:
    with pytest.raises(InputError, match="mode"):
        search(kb, "x", mode="fuzzy")
    with pytest.raises(InputError, match="empty"):
        search(kb, "  ")
    with pytest.raises(InputError, match="k must be"):
        search(kb, "x", k=0)
