"""Retrieval benchmark on BEIR SciFact (test split): quality, latency and BM25 speed.

    .venv/bin/python bench/retrieval.py [--home DIR] [--json OUT]

In one run on this machine, on the same corpus and queries:
- nDCG@10, recall@100, MRR@10 and latency p50/p95 of ragtune's bm25, dense and hybrid search
  (z-score fusion, the default, and reciprocal rank fusion), each BEIR query one
  `search(k=100, per_doc=1)` call; and the interactive `search(k=10)` latency per mode;
  (each query one `search` call, query embedding included, model load excluded), with nDCG@10
  re-checked by pytrec_eval on the same run;
- BM25 queries/s, single thread: ragtune (analysis + scoring + top-100 documents, one query at a
  time) against bm25s (batch retrieval, n_threads=1) and rank_bm25 (get_scores + sort), and their
  nDCG@10 with the same tokenization (Snowball stemming, English stopwords, title + text).

The knowledge base is kept in --home (default .bench-home/) and synced incrementally, so a second
run does not re-embed the corpus.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import BENCH_HOME, SCIFACT, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.documents.terms import analyze
from ragtune.evaluation import evaluate_run, load_beir, run_beir
from ragtune.retrieval import BM25Retriever, searcher_for

DATASET = SCIFACT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--modes", default="bm25,dense,hybrid,hybrid-rrf",
                        help="hybrid-rrf = hybrid with reciprocal rank fusion (k=60)")
    parser.add_argument("--skip-peers", action="store_true", help="skip bm25s and rank_bm25")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = Settings.load(home=args.home)
    kb = KnowledgeBase("scifact", settings)
    results: dict = {
        "command": "python bench/retrieval.py",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(),
        "modes": {},
    }
    data = load_beir(args.dataset, "test")
    for mode in args.modes.split(","):
        log(f"ragtune {mode} ...")
        base_mode, _, fusion = mode.partition("-")
        report = run_beir(args.dataset, base_mode, kb, fusion=fusion or "zscore")
        row = report.to_dict()
        row["ndcg@10_pytrec_eval"] = round(_pytrec_ndcg(data.qrels, report.run), 4)
        results["modes"][mode] = row
        log(json.dumps(row))

    searcher = searcher_for(kb)
    query_ids = sorted(data.qrels)
    texts = [data.queries[q] for q in query_ids]
    log("interactive latency: search(k=10), one query at a time ...")
    results["query_backend"] = getattr(kb.embedder, "query_backend", "?")
    results["search_k10_latency_ms"] = {}
    for mode in ("bm25", "dense", "hybrid"):
        ms = []
        for text in texts:
            t = time.perf_counter()
            searcher.search(text, k=10, mode=mode)
            ms.append((time.perf_counter() - t) * 1000)
        results["search_k10_latency_ms"][mode] = {
            "p50": round(float(np.percentile(ms, 50)), 2),
            "p95": round(float(np.percentile(ms, 95)), 2)}
    log(json.dumps(results["search_k10_latency_ms"]))

    log("BM25 speed, ragtune ...")
    index = searcher.index()
    bm25 = BM25Retriever()
    timings = []
    for _ in range(5):
        t = time.perf_counter()
        for text in texts:
            bm25.retrieve(text, index, 100, None, 1)
        timings.append(time.perf_counter() - t)
    ours_qps = len(texts) / float(np.median(timings))
    results["bm25_speed"] = {"ragtune_qps": round(ours_qps, 1),
                             "ragtune_index_chunks": len(index)}
    if not args.skip_peers:
        results["bm25_speed"].update(_peers(args.dataset, data, query_ids, texts))
        results["bm25_speed"]["ragtune_vs_bm25s"] = round(
            ours_qps / results["bm25_speed"]["bm25s_qps"], 3)
    kb.close()
    print(json.dumps(results, indent=2))
    write_json(args.json, results)


def _peers(dataset: Path, data, query_ids: list[str], texts: list[str]) -> dict:
    import bm25s
    import Stemmer
    from rank_bm25 import BM25Okapi

    rows = [json.loads(line) for line in (dataset / "corpus.jsonl").read_text().splitlines()
            if line.strip()]
    doc_ids = [str(r["_id"]) for r in rows]
    corpus = [(r.get("title") or "") + " " + r["text"] for r in rows]
    stemmer = Stemmer.Stemmer("english")
    out: dict = {}

    log("bm25s ...")
    tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False)
    model = bm25s.BM25()
    model.index(tokens, show_progress=False)
    timings = []
    for _ in range(5):
        t = time.perf_counter()
        q_tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        docs, scores = model.retrieve(q_tokens, k=100, n_threads=1, show_progress=False)
        timings.append(time.perf_counter() - t)
    out["bm25s_qps"] = round(len(texts) / float(np.median(timings)), 1)
    run = {q: {doc_ids[int(d)]: float(s) for d, s in zip(docs[i], scores[i], strict=True)}
           for i, q in enumerate(query_ids)}
    out["bm25s_ndcg@10"] = round(evaluate_run(data.qrels, run)["ndcg@10"], 4)

    log("rank_bm25 ...")
    okapi = BM25Okapi([analyze(c) for c in corpus])
    t = time.perf_counter()
    run = {}
    for q, text in zip(query_ids, texts, strict=True):
        s = okapi.get_scores(analyze(text))
        top = np.argsort(-s)[:100]
        run[q] = {doc_ids[i]: float(s[i]) for i in top}
    out["rank_bm25_qps"] = round(len(texts) / (time.perf_counter() - t), 1)
    out["rank_bm25_ndcg@10"] = round(evaluate_run(data.qrels, run)["ndcg@10"], 4)
    return out


def _pytrec_ndcg(qrels, run) -> float:
    import pytrec_eval

    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    judged = [q for q, r in qrels.items() if any(g > 0 for g in r.values())]
    return sum(scores.get(q, {}).get("ndcg_cut_10", 0.0) for q in judged) / len(judged)


if __name__ == "__main__":
    main()
