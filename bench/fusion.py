"""How the document scoring and the hybrid fusion were chosen: variants on SciFact train and test.

    .venv/bin/python bench/fusion.py [--home DIR] [--json OUT]

For every judged query of the train (809) and test (300) splits, scores all documents with:
BM25 chunk-level (best chunk) and document-level; dense best chunk, first chunk, and their mean;
then fuses document-level BM25 with the dense mean by RRF (k=20, 60) and by z-score (several
weights). Choose on train, report test. Uses the knowledge base in --home (default .bench-home/,
the one bench/retrieval.py builds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import BENCH_HOME, SCIFACT, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.evaluation import evaluate_run, load_beir
from ragtune.retrieval import reciprocal_rank_fusion, searcher_for

DATASET = SCIFACT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kb = KnowledgeBase("scifact", Settings.load(home=args.home))
    kb.ingest([args.dataset / "corpus.jsonl"], sync=True)
    searcher = searcher_for(kb)
    index = searcher.index()
    doc_ids = [index.doc_ids[d] for d in index.segment_doc.tolist()]
    results: dict[str, dict[str, float]] = {}
    for split in ("train", "test"):
        data = load_beir(args.dataset, split)
        scored = {}
        for qid in sorted(data.qrels):
            text = data.queries[qid]
            lex_chunks = searcher.bm25.chunk_scores(text, index)
            sem_chunks = searcher.dense.chunk_scores(text, index)
            scored[qid] = {
                "bm25 chunk-level (best chunk)": index.segment_max(lex_chunks),
                "bm25 document-level": searcher.bm25.document_scores(text, index, lex_chunks),
                "dense best chunk": index.segment_max(sem_chunks),
                "dense first chunk": index.segment_first(sem_chunks),
                "dense mean of best and first": searcher.dense.document_scores(
                    text, index, sem_chunks),
            }

        def ndcg(score_of, scored=scored, qrels=data.qrels) -> float:
            return _ndcg(scored, qrels, doc_ids, score_of)

        for name in next(iter(scored.values())):
            results.setdefault(name, {})[split] = ndcg(lambda s, n=name: s[n])
        for k in (20, 60):
            results.setdefault(f"RRF k={k}, equal weights", {})[split] = ndcg(
                lambda s, k=k: _rrf(s[LEX], s[SEM], k))
        for w in (0.5, 0.4, 0.3, 0.2):
            results.setdefault(f"z-score, weights {w} / {1 - w:.1f}", {})[split] = ndcg(
                lambda s, w=w: w * _z(s[LEX]) + (1 - w) * _z(s[SEM]))
        print(f"{split} done", file=sys.stderr)
    width = max(len(n) for n in results)
    print(f"{'variant':{width}}  train   test")
    for name, row in results.items():
        print(f"{name:{width}}  {row['train']:.4f}  {row['test']:.4f}")
    write_json(args.json, results)


LEX, SEM = "bm25 document-level", "dense mean of best and first"


def _ndcg(scored: dict, qrels: dict, doc_ids: list[str], score_of) -> float:
    run = {}
    for qid, s in scored.items():
        scores = score_of(s)
        top = np.argsort(-scores, kind="stable")[:100]
        run[qid] = {doc_ids[i]: float(scores[i]) for i in top if np.isfinite(scores[i])}
    return round(evaluate_run(qrels, run)["ndcg@10"], 4)


def _z(x: np.ndarray) -> np.ndarray:
    x = np.where(np.isfinite(x), x, 0.0)
    return (x - x.mean()) / (x.std() or 1.0)


def _rrf(lex: np.ndarray, sem: np.ndarray, k: float) -> np.ndarray:
    lists = {name: [int(i) for i in np.argsort(-s, kind="stable")[:100] if np.isfinite(s[i])]
             for name, s in (("bm25", lex), ("dense", sem))}
    out = np.full(len(lex), -np.inf)
    for item, score, _ in reciprocal_rank_fusion(lists, k=k):
        out[item] = score
    return out


if __name__ == "__main__":
    main()
