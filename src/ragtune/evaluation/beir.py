"""Run a BEIR data set (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) through ragtune search.

    >>> report = run_beir(Path("scifact"), mode="hybrid", kb=KnowledgeBase.open("scifact"))
    >>> report.metrics["ndcg@10"]

Documents are ranked by their best chunk (one hit per document); each query is one `search` call,
timed end to end (query embedding included, model load excluded by a warm-up query).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import InputError
from ragtune.evaluation.ir import Qrels, evaluate_run, percentile
from ragtune.kb import IngestReport, KnowledgeBase


@dataclass(frozen=True)
class BeirDataset:
    """The paths and parsed queries/qrels of a BEIR folder."""

    root: Path
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass
class BeirReport:
    """Metrics and latencies of one mode on one split; `to_dict()` is the `--json` shape."""

    mode: str
    metrics: dict[str, float]
    latencies_ms: list[float]
    queries: int
    documents: int
    ingest: IngestReport | None = None
    run: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            **{k: round(v, 4) for k, v in self.metrics.items()},
            "latency_ms": {"p50": round(percentile(self.latencies_ms, 50), 2),
                           "p95": round(percentile(self.latencies_ms, 95), 2)},
            "queries": self.queries,
            "documents": self.documents,
        }


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder; tolerant of CRLF line ends and of a header line in the qrels."""
    corpus = root / "corpus.jsonl"
    queries_path = root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (corpus, queries_path, qrels_path):
        if not path.is_file():
            raise InputError(f"{path}: missing (a BEIR folder has corpus.jsonl, queries.jsonl, "
                             f"qrels/{split}.tsv)")
    queries: dict[str, str] = {}
    for lineno, line in enumerate(queries_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            queries[str(row["_id"])] = str(row["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{queries_path}:{lineno}: bad query row ({exc})") from exc
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.strip().split("\t") if "\t" in line else line.split()
        if not parts or (lineno == 1 and parts[0] in ("query-id", "query_id", "qid")):
            continue
        if len(parts) == 4:  # TREC format: qid 0 docid rel
            parts = [parts[0], parts[2], parts[3]]
        try:
            qid, did, rel = parts[0], parts[1], int(parts[2])
        except (IndexError, ValueError) as exc:
            raise InputError(f"{qrels_path}:{lineno}: bad qrels line {line.strip()!r}") from exc
        qrels.setdefault(qid, {})[did] = rel
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InputError(f"{qrels_path}: {len(missing)} query ids not in queries.jsonl "
                         f"(first: {missing[0]!r})")
    return BeirDataset(root, corpus, queries, qrels)


def run_beir(
    root: Path,
    mode: str,
    kb: KnowledgeBase,
    split: str = "test",
    depth: int = 100,
    progress: Callable[[int, int | None], None] | None = None,
    fusion: str = "zscore",
    ingest_progress: Callable[[int, int | None], None] | None = None,
) -> BeirReport:
    """Ingest (incrementally) the corpus into `kb`, search every judged query, score the run.

    `ingest_progress` and `progress` receive (done, total) for ingestion and for the queries.
    """
    from ragtune.retrieval import searcher_for

    dataset = load_beir(root, split)
    ingest = kb.ingest([dataset.corpus], sync=True, progress=ingest_progress)
    if ingest.failed:
        first = ingest.failed[0]
        raise InputError(f"{len(ingest.failed)} corpus rows failed ({first.path}: {first.error})")
    searcher = searcher_for(kb)
    query_ids = sorted(dataset.qrels)
    searcher.search(dataset.queries[query_ids[0]], k=depth, mode=mode, fusion=fusion)  # warm-up
    run: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    notify = progress or (lambda done, total: None)
    notify(0, len(query_ids))
    for qid in query_ids:
        t = time.perf_counter()
        result = searcher.search(dataset.queries[qid], k=depth, mode=mode, per_doc=1,
                                 dedupe=False, fusion=fusion)
        latencies.append((time.perf_counter() - t) * 1000)
        if result.degraded:
            raise InputError(f"search degraded: {result.degraded}")
        run[qid] = {h.doc_id: h.score for h in result.hits}
        notify(1, None)
    qrels: Qrels = dataset.qrels
    metrics = evaluate_run(qrels, run, ndcg_ks=(10,), recall_ks=(100,), mrr_ks=(10,))
    label = f"hybrid-{fusion}" if mode == "hybrid" and fusion != "zscore" else mode
    return BeirReport(label, metrics, latencies, len(query_ids), kb.store.stats().documents,
                      ingest, run)
