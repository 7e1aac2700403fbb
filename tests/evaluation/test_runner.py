"""`Evaluator` end to end on the real bundled models and a real SQLite knowledge base: traces,
metrics, attribution evidence, saved runs and their diff; gold-passage location."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune import KnowledgeBase, Settings
from ragtune.answering import REFUSAL, RefusalPolicy
from ragtune.cases import EvalCase
from ragtune.errors import InputError
from ragtune.evaluation.attribution import CAUSES
from ragtune.evaluation.runner import (
    METRICS,
    Evaluator,
    _Gold,
    compare_runs,
    load_run,
)

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "required": ["answer"]}


@pytest.fixture
def kb(six_kb: KnowledgeBase) -> KnowledgeBase:
    return six_kb


def doc_id(kb: KnowledgeBase, name: str) -> str:
    return next(d.id for d in kb.documents() if d.source.endswith(name))


@pytest.fixture
def cases(kb: KnowledgeBase) -> list[EvalCase]:
    return [
        EvalCase("How often should the chain be oiled?", ("every 300 kilometres",),
                 (doc_id(kb, "bikes.txt"),), id="chain"),
        EvalCase("What is the boiling point of tungsten?", (), id="tungsten"),
        EvalCase("How long does green tea steep?", ("two minutes",), (doc_id(kb, "tea.html"),),
                 SCHEMA, {"topic": "tea"}, id="tea-json"),
    ]


def test_rag_run_scores_every_case_and_keeps_the_trace(kb, cases, generator, tmp_path) -> None:
    evaluator = Evaluator(kb, "rag", generator=generator,
                          policy=RefusalPolicy(min_similarity=0.2, min_confidence=None))
    seen: list[tuple[int, int | None]] = []
    run = evaluator.run(cases, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 3) and sum(d for d, _ in seen) == 3
    by_id = {r.id: r for r in run.results}
    chain, tungsten, tea = by_id["chain"], by_id["tungsten"], by_id["tea-json"]
    for r in run.results:
        assert set(r.metrics) == set(METRICS)
        assert r.metrics["refusal_correct"] == float(r.refused != bool(r.answers))
        assert r.latency_ms > 0
        assert r.passed == (r.attribution is None)
        if r.attribution is not None:
            assert r.attribution.cause in CAUSES and r.attribution.evidence
    # retrieval found the gold documents, and the gold chunk went into the prompt
    assert chain.gold_rank == 1 and chain.metrics["recall@50"] == 1.0
    assert chain.metrics["mrr@10"] == 1.0 and chain.passages[0]["doc_id"] == doc_id(kb, "bikes.txt")
    assert tea.metadata == {"topic": "tea"}
    if not chain.refused:
        assert chain.claims and chain.metrics["faithfulness"] is not None
        assert all(0.0 <= c["score"] <= 1.0 for c in chain.claims)
        assert chain.citations and chain.metrics["citation_precision"] is not None
        assert chain.metrics["answer_relevance"] is not None
    # tungsten: nothing relevant, refused before generating (similarity under 0.2)
    assert tungsten.refused and tungsten.answer == REFUSAL and tungsten.passed
    assert tungsten.metrics["exact_match"] is None and tungsten.metrics["recall@50"] is None
    # the schema case is answered in plain text by the model, or refused
    if not tea.refused:
        assert tea.metrics["schema_valid"] == 0.0
        assert tea.attribution.cause == "format violation"
        assert tea.attribution.evidence.startswith("not JSON")
    summary = run.summary
    assert (summary["cases"], summary["answerable"], summary["unanswerable"]) == (3, 2, 1)
    assert summary["metrics"]["pass_rate"] == sum(r.passed for r in run.results) / 3
    assert summary["metrics"]["refusal_correct"] == pytest.approx(
        sum(r.metrics["refusal_correct"] for r in run.results) / 3)
    assert summary["metrics"]["cost_per_1k_queries"] is None  # no price configured
    assert sum(summary["failure_causes"].values()) == sum(not r.passed for r in run.results)
    assert run.config["arch"] == "rag" and run.config["judge"] == "offline"
    assert run.config["generator"] == generator.name

    saved = run.save(tmp_path / "run-rag")
    assert sorted(p.name for p in saved.iterdir()) == ["cases.jsonl", "config.json",
                                                       "summary.json"]
    again = load_run(saved)
    assert again.summary == json.loads(json.dumps(run.summary))
    assert [r.to_dict() for r in again.results] == [json.loads(json.dumps(r.to_dict()))
                                                    for r in run.results]


def test_base_run_has_no_retrieval_and_compares_with_rag(kb, cases, generator, tmp_path
                                                         ) -> None:
    base = Evaluator(kb, "base", generator=generator).run(cases)
    for r in base.results:
        assert r.passages == [] and r.citations == [] and r.gold_rank is None
        assert r.metrics["recall@50"] is None and r.metrics["faithfulness"] is None
        if r.attribution is not None:
            assert r.attribution.cause in {"knowledge gap", "missed refusal",
                                           "format violation"}
    rag = Evaluator(kb, "rag", generator=generator,
                    policy=RefusalPolicy(min_similarity=0.2, min_confidence=None)).run(cases)
    diff = compare_runs(base, rag)
    assert (diff["a"], diff["b"], diff["shared_cases"]) == ("base", "rag", 3)
    assert diff["config"]["arch"] == {"a": "base", "b": "rag"}
    em = diff["metrics"]["refusal_correct"]
    assert em["delta"] == pytest.approx(em["b"] - em["a"])
    assert set(diff["failure_causes"]) == set(CAUSES)
    flipped = {row["id"] for row in diff["fixed"] + diff["broken"]}
    assert flipped == {r.id for r, o in zip(rag.results, base.results, strict=True)
                       if r.passed != o.passed}


def test_evaluator_refuses_bad_input(kb, settings) -> None:
    with pytest.raises(InputError, match="arch must be one of"):
        Evaluator(kb, "finetuned")
    with pytest.raises(InputError, match="arch 'tuned' needs an adapter"):
        Evaluator(kb, "tuned")
    with pytest.raises(InputError, match="does not exist"):
        Evaluator(KnowledgeBase.open("nothing-here", settings), "rag")
    with pytest.raises(InputError, match="not an evaluation run"):
        load_run(Path(settings.home))


LONG_TEXT = " ".join(f"Sentence number {i} talks about topic {i} in some detail."
                     for i in range(60))


@pytest.fixture
def split_kb(tmp_path, embedder):
    """One long document cut into small chunks (64 tokens, no overlap), and a phrase that
    straddles the first chunk boundary: the last five words of chunk 0 and the first three
    after it (unique: they hold numbers)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.txt").write_text(LONG_TEXT, encoding="utf-8")
    settings = Settings.load(home=tmp_path / "home", chunking={"max_tokens": 64,
                                                               "overlap_tokens": 0})
    with KnowledgeBase.open("split", settings) as kb:
        kb.ingest([tmp_path / "docs"])
        [doc] = kb.documents()
        boundary = kb.store.chunks_of(doc.id)[0].end
        straddling = " ".join(LONG_TEXT[:boundary].split()[-5:]
                              + LONG_TEXT[boundary:].split()[:3])
        yield kb, doc.id, straddling


def test_gold_passages_and_a_chunking_split(split_kb) -> None:
    """An answer that straddles a chunk boundary is a chunking split; one inside a chunk is
    located in that chunk."""
    kb, doc_id, straddling = split_kb
    chunks = kb.store.chunks_of(doc_id)
    assert len(chunks) > 2
    assert not any(straddling in c.text for c in chunks)
    gold = _Gold(kb, EvalCase("q", (straddling,), (doc_id,)))
    assert gold.split and gold.chunks == {c.id for c in chunks}
    inside = "topic 30 in some detail"
    gold = _Gold(kb, EvalCase("q", (inside,), (doc_id,)))
    holding = {c.id for c in chunks if inside in c.text}
    assert not gold.split and holding and gold.chunks == holding


FILLERS = {f"fillers/tea-{i:02d}.txt": f"Tea note {i}: oolong blend number {i} is rolled by "
           f"hand in village {i} and steeps for {i % 5 + 2} minutes." for i in range(55)}


@pytest.fixture
def big_kb(six_docs: Path, settings, embedder) -> KnowledgeBase:
    """The six documents plus 55 tea notes: more than 50 chunks, so a document can be missed."""
    for name, text in FILLERS.items():
        path = six_docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    base = KnowledgeBase.open("big", settings)
    base.ingest([six_docs])
    yield base
    base.close()


def answered(evaluator: Evaluator, question: str, text: str):
    """What the architecture returns when its model writes `text` (real retrieval, prompt,
    citation parsing and refusal rules; only the model's words are chosen by the test)."""
    from ragtune.models.generators import Generation

    prep = evaluator.answerer.prepare(question, k=evaluator.k, mode=evaluator.mode)
    return evaluator.answerer.finish(prep, Generation(text, 100, 8, "stop", 0.1,
                                                      logprobs=[-0.1] * 8))


def test_every_cause_from_real_retrieval_and_scoring(big_kb, generator, settings) -> None:
    no_thresholds = RefusalPolicy(min_similarity=None, min_confidence=None)
    ev = Evaluator(big_kb, "rag", generator=generator, policy=no_thresholds, k=1)
    bikes = doc_id(big_kb, "bikes.txt")
    chain = "How often should the chain be oiled?"

    def cause(case: EvalCase, text: str, evaluator: Evaluator = ev) -> str | None:
        result = evaluator.score(case, answered(evaluator, case.question, text))
        return result.attribution.cause if result.attribution else None

    good = EvalCase(chain, ("every 300 kilometres",), (bikes,))
    assert cause(good, "every 300 kilometres [1]") is None
    assert cause(good, "I don't know.") == "false refusal"
    assert cause(good, "every 50 kilometres [1]") == "unfaithful"  # 50 is in no passage
    assert cause(EvalCase(chain, (), ()), "every 300 kilometres [1]") == "missed refusal"
    assert cause(EvalCase(chain, ("every 300 kilometres",), (bikes,), SCHEMA),
                 "every 300 kilometres [1]") == "format violation"
    # verification refuses a wrong answer made of the passage's words ("weekly" is there, but
    # not as the oiling interval): the model answered unfaithfully
    assert cause(good, "weekly [1]") == "unfaithful"
    # with verification marking instead of refusing, and a lenient faithfulness bar, the same
    # answer is the model using the wrong part of the context
    lenient = Settings.load(home=settings.home, eval={"min_faithfulness": 0.0},
                            answer={"verify": "mark"})
    ev_lenient = Evaluator(big_kb, "rag", settings=lenient, generator=generator,
                           policy=no_thresholds, k=1)
    assert cause(good, "weekly [1]", ev_lenient) == "context ignored"
    # ranking miss: the gold document is the second hit, and only one passage is in the prompt
    tea = "How many minutes does the tea steep?"
    ranked = list(dict.fromkeys(h.doc_id for h in ev.searcher.search(tea, k=50).hits))
    second = ranked[1]
    word = big_kb.store.chunks_of(second)[0].text.split()[-1].strip(".")
    result = ev.score(EvalCase(tea, (word,), (second,)), answered(ev, tea, "x [1]"))
    assert result.attribution.cause == "ranking miss" and result.gold_rank == 2
    # retrieval miss: a gold document outside the top 50 (55 tea notes outrank it)
    outside = next(d.id for d in big_kb.documents() if d.id not in ranked)
    word = big_kb.store.chunks_of(outside)[0].text.split()[-1].strip(".")
    assert cause(EvalCase(tea, (word,), (outside,)), "x [1]") == "retrieval miss"
    # knowledge gap: the base architecture has no passages
    base = Evaluator(big_kb, "base", generator=generator)
    assert cause(good, "every week", base) == "knowledge gap"
    assert cause(good, "every 300 kilometres", base) is None


def test_chunking_split_from_real_scoring(split_kb, generator) -> None:
    kb, doc_id, straddling = split_kb
    ev = Evaluator(kb, "rag", generator=generator,
                   policy=RefusalPolicy(min_similarity=None, min_confidence=None), k=1)
    question = f"Which words follow '{straddling.split()[0]}'?"
    result = ev.score(EvalCase(question, (straddling,), (doc_id,)),
                      answered(ev, question, "topic [1]"))
    assert result.attribution.cause == "chunking split"
