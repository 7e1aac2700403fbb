"""How cost grows with the knowledge base: both store backends at 10k, 100k and 1M chunks.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--json OUT] [--svg OUT]

The corpus is synthetic above SciFact's 9,069 chunks, and says so: documents of 10 chunks, each
chunk 60 words drawn from a 50,000-word vocabulary by a Zipf law (s = 1.1), its BM25 term counts
computed by ragtune's analyzer as in ingestion, and a unit vector of 384 float32s (the bundled
embedder's size) near one of 1,000 random centres (Gaussian noise, sigma 0.05 per dimension:
clustered like real embeddings; uniformly random vectors are the worst case for HNSW and would
understate its recall). Embedding is excluded from every figure. For each size and backend, on one
machine in one run:

- ingest: chunks/s through `Store.write_document` (one transaction per document, 10 chunks);
  on PostgreSQL inside `bulk_load()`, as a first ingest or `kb migrate` runs: the HNSW index
  is built once after the load (`hnsw_build_s`);
- the in-process index (what every replica holds): seconds to read the snapshot and build it,
  and its memory (traced by tracemalloc);
- store size on disk (the SQLite file; the schema's tables and indexes in PostgreSQL);
- search p50/p95 over 200 queries of 4 vocabulary words: in-process bm25, dense (exact) and
  hybrid, top 10 documents; and on PostgreSQL dense by HNSW in the database (`ef_search` 40 and
  100) with its recall@10 against exact cosine.

A size whose PostgreSQL index does not build within --max-build-minutes (30 by default) is
stopped there, and the curve is fitted from the sizes before it.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from common import log, machine, versions, write_json
from ragtune.documents.records import Chunk, Document
from ragtune.documents.terms import term_frequencies
from ragtune.evaluation.ir import percentile
from ragtune.retrieval import BM25Retriever, DenseRetriever, HybridRetriever
from ragtune.retrieval.index import SearchIndex
from ragtune.store import SQLiteStore, Store
from ragtune.store.postgres import PostgresStore
from ragtune.testing.postgres import temporary_postgres

DIM, CHUNKS_PER_DOC, WORDS, VOCABULARY, QUERIES = 384, 10, 60, 50_000, 200


class QueryVectors:
    """The query side of dense search with the vectors given (embedding is not measured)."""

    name, dim = "synthetic", DIM

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}

    def embed_query(self, text: str) -> np.ndarray:
        return self.vectors[text]


CENTRES = np.random.default_rng(7).normal(size=(1000, DIM)).astype(np.float32) / math.sqrt(DIM)


def near_centres(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` unit vectors, each near a random one of `CENTRES`."""
    v = CENTRES[rng.integers(0, len(CENTRES), n)] + rng.normal(
        scale=0.05, size=(n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def corpus(n_chunks: int, seed: int = 0):
    """Documents with their chunks, vectors and term counts, generated lazily."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(VOCABULARY)])
    for d in range(n_chunks // CHUNKS_PER_DOC):
        texts = [" ".join(words[np.minimum(rng.zipf(1.1, WORDS), VOCABULARY) - 1])
                 for _ in range(CHUNKS_PER_DOC)]
        text = "\n\n".join(texts)
        doc = Document(id=f"doc{d}", text=text, source=f"/synthetic/doc{d}.md", format="md",
                       title=f"Document {d}")
        chunks, start = [], 0
        for i, t in enumerate(texts):
            chunks.append(Chunk(id=f"doc{d}-{i}", doc_id=doc.id, version=1, index=i,
                                start=start, end=start + len(t), text=t, tokens=WORDS,
                                title=doc.title))
            start += len(t) + 2
        vectors = near_centres(rng, CHUNKS_PER_DOC)
        yield doc, chunks, vectors, [term_frequencies(c.embedding_text) for c in chunks]


def ingest(store: Store, n_chunks: int) -> float:
    """Chunks per second written."""
    started, written = time.perf_counter(), 0
    for doc, chunks, vectors, terms in corpus(n_chunks):
        store.write_document(doc, chunks, vectors, terms, term_frequencies(doc.text))
        written += len(chunks)
        if written % 100_000 == 0:
            log(f"  {written:,} chunks, {written / (time.perf_counter() - started):,.0f}/s")
    return written / (time.perf_counter() - started)


def stats(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2)}


def searches(index: SearchIndex, queries: dict[str, np.ndarray]) -> dict[str, Any]:
    """In-process search latency per mode (top 10 documents)."""
    vectors = QueryVectors()
    vectors.vectors = queries
    bm25, dense = BM25Retriever(), DenseRetriever(vectors)  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for name, retriever in (("bm25", bm25), ("dense", dense),
                            ("hybrid", HybridRetriever(bm25, dense))):
        ms = []
        for text in queries:
            started = time.perf_counter()
            retriever.retrieve(text, index, 10, None, 1)
            ms.append((time.perf_counter() - started) * 1000)
        out[name] = stats(ms)
    return out


def in_process(store: Store, queries: dict[str, np.ndarray]) -> tuple[dict[str, Any], Any]:
    tracemalloc.start()
    started = time.perf_counter()
    index = SearchIndex(store.index_snapshot())  # the snapshot is garbage once built
    seconds = time.perf_counter() - started
    memory, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    entry = {"index_build_s": round(seconds, 1), "index_mib_per_replica": round(memory / 2**20),
             "search": searches(index, queries)}
    return entry, index


def measure(size: int, folder: Path, dsn: str, max_build_s: float) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(1, 200)]
    queries: dict[str, np.ndarray] = {}
    for q, vector in enumerate(near_centres(rng, QUERIES)):
        queries[" ".join(rng.choice(words, 4)) + f" q{q}"] = vector
    out: dict[str, Any] = {"chunks": size}

    log(f"{size:,} chunks, SQLite ...")
    lite = SQLiteStore(folder / f"lite-{size}" / "store.sqlite")
    rate = ingest(lite, size)
    entry, index = in_process(lite, queries)
    out["sqlite"] = {"ingest_chunks_per_s": round(rate), **entry,
                     "store_mib": round(lite.stats().bytes_on_disk / 2**20)}
    lite.close()

    log(f"{size:,} chunks, PostgreSQL ...")
    pg = PostgresStore(dsn, f"scale_{size}", index_build_mb=4096)  # 1M vectors fit
    with pg.bulk_load():  # what a first ingest or a migration does: the index once, after
        rate = ingest(pg, size)
        started = time.perf_counter()
    build = time.perf_counter() - started
    if build > max_build_s:
        raise TimeoutError(f"the HNSW index took {build / 60:.0f} min to build")
    entry, index = in_process(pg, queries)
    out["postgres"] = {"ingest_chunks_per_s": round(rate), "hnsw_build_s": round(build, 1),
                       **entry, "store_mib": round(pg.stats().bytes_on_disk / 2**20)}
    matrix, ids = index.matrix, index.chunk_ids
    for ef in (40, 100):
        ms, recall = [], []
        for vector in queries.values():
            started = time.perf_counter()
            rows = pg.nearest_chunks(vector, 10, ef_search=ef)
            ms.append((time.perf_counter() - started) * 1000)
            exact = {ids[i] for i in np.argpartition(-(matrix @ vector), 10)[:10]}
            recall.append(len({r[0] for r in rows} & exact) / 10)
        out["postgres"][f"hnsw_ef{ef}"] = {**stats(ms),
                                           "recall@10_vs_exact": round(float(np.mean(recall)), 4)}
    pg.close()
    return out


def loglog_svg(results: list[dict[str, Any]], path: Path) -> None:
    """Index build seconds, memory per replica and search p50 against chunks, log-log."""
    series = {
        "SQLite ingest s": [(r["chunks"], r["chunks"] / r["sqlite"]["ingest_chunks_per_s"])
                            for r in results],
        "PostgreSQL ingest s": [(r["chunks"], r["chunks"] / r["postgres"]["ingest_chunks_per_s"])
                                for r in results],
        "HNSW build s": [(r["chunks"], r["postgres"]["hnsw_build_s"]) for r in results],
        "in-process index MiB": [(r["chunks"], r["sqlite"]["index_mib_per_replica"])
                                 for r in results],
        "hybrid p50 ms (in process)": [(r["chunks"], r["sqlite"]["search"]["hybrid"]["p50_ms"])
                                       for r in results],
        "HNSW p50 ms (ef 100)": [(r["chunks"], r["postgres"]["hnsw_ef100"]["p50_ms"])
                                 for r in results]}
    colours = ["#1f6feb", "#8250df", "#d1242f", "#2da44e", "#bf8700", "#57606a"]
    w, h, pad = 560, 360, 50
    xs = [math.log10(x) for s in series.values() for x, _ in s]
    ys = [math.log10(max(y, 1e-3)) for s in series.values() for _, y in s]
    x0, x1, y0, y1 = min(xs), max(xs) or 1, math.floor(min(ys)), math.ceil(max(ys))

    def at(x: float, y: float) -> str:
        fx = (math.log10(x) - x0) / ((x1 - x0) or 1)
        fy = (math.log10(max(y, 1e-3)) - y0) / ((y1 - y0) or 1)
        return f"{pad + fx * (w - 2 * pad - 150):.1f},{h - pad - fy * (h - 2 * pad):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             'font-family="sans-serif" font-size="11">',
             "<title>How cost grows with the number of chunks (log-log)</title>",
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{(w - 150) / 2}" y="{h - 10}" text-anchor="middle">chunks (log)</text>']
    for e in range(int(y0), int(y1) + 1):
        x, y = at(10 ** x0, 10 ** e).split(",")
        parts.append(f'<text x="{float(x) - 4}" y="{y}" text-anchor="end">1e{e}</text>')
    for r in results:
        x, y = at(r["chunks"], 10 ** y0).split(",")
        parts.append(f'<text x="{x}" y="{float(y) + 14}" text-anchor="middle">'
                     f'{r["chunks"]:,}</text>')
    for i, (label, points) in enumerate(series.items()):
        line = " ".join(at(x, y) for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{colours[i]}" stroke-width="2" '
                     f'points="{line}"/>')
        parts.append(f'<text x="{w - 190}" y="{pad + 16 * i}" fill="{colours[i]}">{label}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--max-build-minutes", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--svg", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "command": "python bench/scale.py", "date": time.strftime("%Y-%m-%d"),
        "machine": machine(), "versions": versions(), "synthetic": True, "sizes": []}
    with temporary_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            try:
                results["sizes"].append(measure(size, Path(tmp), server.dsn,
                                                args.max_build_minutes * 60))
            except Exception as exc:  # the index did not build in time: stop, keep the rest
                log(f"{size:,}: stopped ({exc})")
                results["stopped_at"] = {"chunks": size, "reason": str(exc)}
                break
            write_json(args.json, results)
    write_json(args.json, results)
    if args.svg and results["sizes"]:
        loglog_svg(results["sizes"], args.svg)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
