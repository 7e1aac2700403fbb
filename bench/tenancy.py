"""What the statistics policy costs: search as a tenant, with BM25 statistics over its own view.

    .venv/bin/python bench/tenancy.py [--home DIR] [--tenants N] [--json OUT]

On the SciFact knowledge base in --home (default .bench-home/, built by bench/retrieval.py), its
5,183 documents are dealt to N tenants (document i to group t<i mod N>, every tenth public)
in an in-memory index built from the stored snapshot (nothing is re-embedded). Then, one query
at a time over the 300 test queries, medians and p95 in ms (best of 3 rounds):
- BM25 (`per_doc=1`, top 100) and hybrid (z-score, `per_doc=1`, top 100; query embedding
  included) for the operator (unrestricted statistics) and for a tenant holding one group
  (statistics over its view: the scoped index);
- building a scoped index (first use of a group set, once per index generation) and what it
  keeps (bytes), for 1, 16 and 256 distinct group sets (tracemalloc);
- a tenant's BM25 search when more distinct group sets are in use than the cache keeps
  (`SCOPES_KEPT`), so every search rebuilds its scope: the worst case.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

from common import BENCH_HOME, SCIFACT, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.evaluation import load_beir
from ragtune.retrieval import BM25Retriever
from ragtune.retrieval.index import SCOPES_KEPT, SearchIndex
from ragtune.retrieval.retrievers import DenseRetriever, HybridRetriever


def timed(fn, items, rounds: int = 3) -> dict[str, float]:
    """p50/p95 in ms of `fn` over `items`, the round with the lowest median of `rounds` (the
    machine is shared: the other rounds measure its neighbours)."""
    fn(items[0])  # warm
    runs = []
    for _ in range(rounds):
        ms = []
        for item in items:
            t = time.perf_counter()
            fn(item)
            ms.append((time.perf_counter() - t) * 1000)
        runs.append(ms)
    ms = min(runs, key=statistics.median)
    return {"p50": round(statistics.median(ms), 3),
            "p95": round(float(np.percentile(ms, 95)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    kb = KnowledgeBase("scifact", Settings.load(home=args.home))
    if not kb.exists():
        raise SystemExit(f"no SciFact knowledge base in {args.home}: run bench/retrieval.py")
    snapshot = kb.store.index_snapshot()
    docs = sorted(snapshot.documents)
    dealt = {d: ((() if i % 10 == 0 else (f"t{i % args.tenants}",)), meta)
             for i, (d, (_, meta)) in enumerate(
                 (d, snapshot.documents[d]) for d in docs)}
    index = SearchIndex(snapshot._replace(documents=dealt))
    data = load_beir(SCIFACT)
    queries = [data.queries[q] for q in sorted(data.qrels)]
    kb.embedder.warm_up()
    bm25 = BM25Retriever()
    hybrid = HybridRetriever(bm25, DenseRetriever(kb.embedder))
    tenant = ("t1",)
    log(f"{len(index)} chunks, {len(docs)} documents, {args.tenants} tenants")

    def search(retriever, groups):
        def run(query):
            view = index.scoped(groups)
            return retriever.retrieve(query, view, 100, view.mask(groups, None), per_doc=1)
        return run

    results: dict[str, object] = {
        "machine": machine(), "versions": versions(), "chunks": len(index),
        "documents": len(docs), "tenants": args.tenants, "queries": len(queries)}
    latency = {}
    for name, retriever in (("bm25", bm25), ("hybrid", hybrid)):
        for who, groups in (("operator", None), ("tenant", tenant)):
            latency[f"{name} {who}"] = timed(search(retriever, groups), queries)
            log(f"{name} {who}: {latency[f'{name} {who}']}")
    results["latency_ms"] = latency

    scopes = {}
    for count in (1, 16, 256):
        fresh = SearchIndex(snapshot._replace(documents=dealt))
        sets = [(f"t{i % args.tenants}", f"x{i}") for i in range(count)]
        tracemalloc.start()
        t = time.perf_counter()
        for groups in sets:
            fresh.scoped(groups)
        seconds = time.perf_counter() - t
        kept, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        scopes[str(count)] = {"build_ms_each": round(seconds / count * 1000, 3),
                              "kept_bytes_each": int(kept / count)}
        log(f"{count} group sets: {scopes[str(count)]}")
    results["scopes"] = scopes

    thrash = SearchIndex(snapshot._replace(documents=dealt))
    many = [(f"t{i % args.tenants}", f"y{i}") for i in range(SCOPES_KEPT + 44)]
    turn = iter(range(10**9))

    def rebuilding(query):
        groups = many[next(turn) % len(many)]
        view = thrash.scoped(groups)
        return bm25.retrieve(query, view, 100, view.mask(groups, None), per_doc=1)

    latency["bm25 tenant, scope rebuilt every query"] = timed(rebuilding, queries)
    log(f"rebuilt every query: {latency['bm25 tenant, scope rebuilt every query']}")
    write_json(args.json, results)
    print(results)


if __name__ == "__main__":
    main()
