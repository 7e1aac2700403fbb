"""Where ranking runs with the PostgreSQL store, measured on BEIR SciFact (test split, 300 queries).

    .venv/bin/python bench/store_ranking.py [--home DIR] [--ef 40,100,200] [--json OUT]

One run, one machine, the same corpus, queries and query vectors:
- in process (the default): ragtune's bm25 / dense / hybrid over the index snapshot each replica
  holds, on the SQLite store and on the PostgreSQL store (the SciFact knowledge base of --home,
  copied into a fresh PostgreSQL 16 + pgvector 0.6 server from pgserver: `ragtune kb migrate`'s
  copy); nDCG@10, recall@100, latency p50/p95, and the memory the index takes in a replica;
  and the same searches with `store.dense = "database"` (`postgres_dense_in_database`: the
  replica holds no vectors, dense candidates come from the HNSW index at `store.ef_search`);
- in the database: dense by the HNSW index (cosine, m=16, ef_construction=64) at several
  `ef_search`: recall@10 of its top-10 chunks against exact cosine over the same vectors, and
  the latency of that top-10 search; nDCG@10 from its top 100 chunks (for which `ef_search`
  is raised to 100: pgvector returns at most `ef_search` rows);
  lexical by PostgreSQL full-text search (a GIN index over to_tsvector('english', ...), the
  query's lexemes OR-ed, ranked by ts_rank_cd); and both fused by reciprocal rank (k=60).

Documents are ranked by their best chunk in the database variants (top 100 chunks fetched);
the in-process numbers are `ragtune bench beir` exactly.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from common import BENCH_HOME, SCIFACT, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.evaluation import evaluate_run, load_beir, run_beir
from ragtune.evaluation.ir import percentile
from ragtune.retrieval.search import Searcher
from ragtune.store.copy import copy_store
from ragtune.store.postgres import PostgresStore
from ragtune.testing.postgres import temporary_postgres

FETCH = 100
FTS = "to_tsvector('english', title || ' ' || heading || ' ' || text)"


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2)}


def doc_run(rows: list[tuple[str, str, float]]) -> dict[str, float]:
    """Chunk hits as a document run: each document scored by its best chunk."""
    run: dict[str, float] = {}
    for _, doc_id, score in rows:
        run[doc_id] = max(score, run.get(doc_id, -1e9))
    return run


def rrf(*runs: dict[str, float], k: int = 60) -> dict[str, float]:
    fused: dict[str, float] = {}
    for run in runs:
        for rank, doc_id in enumerate(sorted(run, key=run.__getitem__, reverse=True), 1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
    return fused


def index_memory(kb: KnowledgeBase) -> tuple[float, float]:
    """MiB held by the in-process index of `kb` (snapshot + BM25 statistics, traced; with
    `store.dense = "database"` no vectors, but the sample that estimates score spreads), and
    the seconds to read and build it."""
    tracemalloc.start()
    started = time.perf_counter()
    index = Searcher(kb).index()
    if not index.holds_vectors:
        _ = index.vector_sample
    seconds = time.perf_counter() - started
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index
    return current / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--ef", default="40,100,200")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    data = load_beir(args.dataset, "test")
    qids = sorted(data.qrels)
    lite = KnowledgeBase.open_existing("scifact", Settings.load(home=args.home))
    results: dict = {"command": "python bench/store_ranking.py", "date": time.strftime("%Y-%m-%d"),
                     "machine": machine(), "versions": versions(), "queries": len(qids),
                     "in_process": {}, "in_database": {}}
    with temporary_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(home=Path(tmp), store={"backend": "postgres", "dsn": server.dsn})
        pg = KnowledgeBase("scifact", settings, embedder=lite.embedder)
        log("copying the SciFact knowledge base into PostgreSQL ...")
        started = time.perf_counter()
        copied = copy_store(lite.store, pg.store)
        results["copy"] = {"seconds": round(time.perf_counter() - started, 1),
                           "chunks": copied.counts["chunks"][1], "verified": copied.verified}
        store = pg.store
        assert isinstance(store, PostgresStore)
        in_database = Settings.load(home=Path(tmp), store={
            "backend": "postgres", "dsn": server.dsn, "dense": "database"})
        hnsw = KnowledgeBase("scifact", in_database, embedder=lite.embedder)
        stores = (("sqlite", lite), ("postgres", pg), ("postgres_dense_in_database", hnsw))
        for name, kb in stores:
            mib, build_s = index_memory(kb)
            entry: dict = {"index_mib_per_replica": round(mib, 1),
                           "index_build_s": round(build_s, 2)}
            for mode in ("bm25", "dense", "hybrid"):
                log(f"in process, {name} store, {mode} ...")
                report = run_beir(args.dataset, mode, kb)
                entry[mode] = {"ndcg@10": round(report.metrics["ndcg@10"], 4),
                               "recall@100": round(report.metrics["recall@100"], 4),
                               **percentiles(report.latencies_ms)}
            results["in_process"][name] = entry

        vectors = {q: lite.embedder.embed_query(data.queries[q]) for q in qids}
        snapshot = lite.store.index_snapshot()
        exact_top = {q: {snapshot.chunk_ids[i] for i in
                         np.argsort(-(snapshot.matrix @ vectors[q]))[:10]} for q in qids}
        sizes = dict(store._read(lambda c: c.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s", (store.schema,)).fetchall()))
        results["in_database"]["hnsw_index_mib"] = round(
            sizes.get("chunks_embedding_hnsw", 0) / 2**20, 1)
        dense_runs = {}
        for ef in (int(x) for x in args.ef.split(",")):
            log(f"in the database, HNSW dense, ef_search={ef} ...")
            run, ms, recall = {}, [], []
            for q in qids:
                started = time.perf_counter()
                top10 = store.nearest_chunks(vectors[q], 10, ef_search=ef)
                ms.append((time.perf_counter() - started) * 1000)
                recall.append(len({r[0] for r in top10} & exact_top[q]) / 10)
                # the document run needs 100 chunks: ef_search is raised to 100 for it
                run[q] = doc_run(store.nearest_chunks(vectors[q], FETCH, ef_search=ef))
            metrics = evaluate_run(data.qrels, run)
            dense_runs[ef] = run
            results["in_database"][f"dense_hnsw_ef{ef}"] = {
                "ndcg@10": round(metrics["ndcg@10"], 4),
                "recall@100": round(metrics["recall@100"], 4),
                "hnsw_recall@10_vs_exact": round(float(np.mean(recall)), 4),
                **percentiles(ms)}

        log("in the database, full-text search (GIN) ...")
        started = time.perf_counter()
        store._run(lambda c: c.execute(f"CREATE INDEX chunks_fts ON chunks USING gin ({FTS})"))
        fts_build = time.perf_counter() - started
        run, ms = {}, []
        for q in qids:
            started = time.perf_counter()
            rows = store._read(lambda c, text=data.queries[q]: c.execute(
                "WITH q AS (SELECT to_tsquery('english', replace(plainto_tsquery('english', %s)"
                "::text, '&', '|')) AS query) "
                f"SELECT id, doc_id, ts_rank_cd({FTS}, q.query) AS rank FROM chunks, q "
                f"WHERE {FTS} @@ q.query ORDER BY rank DESC LIMIT %s", (text, FETCH)
            ).fetchall())
            ms.append((time.perf_counter() - started) * 1000)
            run[q] = doc_run([(r[0], r[1], float(r[2])) for r in rows])
        metrics = evaluate_run(data.qrels, run)
        results["in_database"]["lexical_fts"] = {
            "ndcg@10": round(metrics["ndcg@10"], 4),
            "recall@100": round(metrics["recall@100"], 4), "gin_build_s": round(fts_build, 1),
            **percentiles(ms)}
        middle = sorted(dense_runs)[len(dense_runs) // 2]
        fused = {q: rrf(dense_runs[middle][q], run[q]) for q in qids}
        metrics = evaluate_run(data.qrels, fused)
        results["in_database"][f"hybrid_rrf_hnsw_ef{middle}_fts"] = {
            "ndcg@10": round(metrics["ndcg@10"], 4),
            "recall@100": round(metrics["recall@100"], 4)}
        hnsw.close()
        pg.close()
    lite.close()
    write_json(args.json, results)
    import json

    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
