"""Ingestion benchmark on BEIR SciFact: end-to-end throughput against the embedder's own ceiling.

    .venv/bin/python bench/ingest.py [--limit N] [--batch-size B] [--json OUT]

Measures, in one run on this machine:
- documents/s and chunks/s of `KnowledgeBase.ingest` (load, hash, chunk, embed, write), model
  load excluded (the embedder is warmed up first);
- the embedder's own throughput on exactly the same chunk texts (one `embed` call): the ceiling;
- re-sync of the unchanged corpus, and of the corpus with 1% of documents changed (and how many
  chunks that re-embedded);
- the second `ragtune ingest` as a user runs it (a fresh process, CLI included);
- the store's size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SCIFACT, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.config import EmbedderSettings

CORPUS = SCIFACT / "corpus.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-ingest-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    write_json(args.json, results)


def run(args: argparse.Namespace, work: Path) -> dict:
    lines = args.corpus.read_text(encoding="utf-8").splitlines()
    if args.limit:
        lines = lines[: args.limit]
    corpus = work / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    home = work / "home"
    settings = Settings.load(home=home, embedder=EmbedderSettings(batch_size=args.batch_size))
    kb = KnowledgeBase("scifact", settings)
    log(f"{len(lines)} documents; warming up the embedder")
    t = time.perf_counter()
    kb.embedder.warm_up()
    load_s = time.perf_counter() - t

    log("first ingest ...")
    t = time.perf_counter()
    first = kb.ingest([corpus])
    first_s = time.perf_counter() - t
    assert not first.failed, first.failed[:3]
    chunks = first.chunks_written

    log("embedder ceiling on the same chunk texts ...")
    vm = kb.store.index_snapshot()
    texts = [c.embedding_text for c in kb.store.get_chunks(vm.chunk_ids)]
    t = time.perf_counter()
    kb.embedder.embed(texts)
    ceiling_s = time.perf_counter() - t

    log("re-sync, unchanged ...")
    t = time.perf_counter()
    again = kb.ingest([corpus], sync=True)
    resync_s = time.perf_counter() - t

    log("re-sync, 1% changed ...")
    rng = random.Random(13)
    rows = [json.loads(line) for line in lines]
    changed = rng.sample(range(len(rows)), max(1, len(rows) // 100))
    for i in changed:
        rows[i]["text"] = rows[i]["text"] + " (Revised: this abstract was amended.)"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                      encoding="utf-8")
    t = time.perf_counter()
    one_pct = kb.ingest([corpus], sync=True)
    one_pct_s = time.perf_counter() - t
    changed_chunks = sum(d.chunks for d in kb.documents() if d.version == 2)

    stats = kb.store.stats()
    kb.close()

    log("second ingest as a user runs it (fresh process) ...")
    cli = [sys.executable, "-m", "ragtune", "ingest", str(corpus), "--kb", "scifact", "--json"]
    env = {**os.environ, "RAGTUNE_HOME": str(home)}
    t = time.perf_counter()
    proc = subprocess.run(cli, env=env, capture_output=True, text=True, check=True)
    cli_resync_s = time.perf_counter() - t
    cli_report = json.loads(proc.stdout)

    docs = len(lines)
    return {
        "command": "python bench/ingest.py" + (f" --limit {args.limit}" if args.limit else "")
        + (f" --batch-size {args.batch_size}" if args.batch_size != 16 else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(),
        "documents": docs,
        "chunks": chunks,
        "embedder_load_s": round(load_s, 2),
        "first_ingest_s": round(first_s, 2),
        "docs_per_s": round(docs / first_s, 2),
        "chunks_per_s": round(chunks / first_s, 2),
        "embedder_ceiling_s": round(ceiling_s, 2),
        "embedder_chunks_per_s": round(chunks / ceiling_s, 2),
        "ratio_to_ceiling": round(ceiling_s / first_s, 3),
        "resync_unchanged_s": round(resync_s, 3),
        "resync_unchanged_report": {k: again.to_dict()[k] for k in
                                    ("added", "updated", "unchanged", "deleted")},
        "speedup_first_vs_resync": round(first_s / resync_s, 1),
        "cli_resync_unchanged_s": round(cli_resync_s, 2),
        "cli_resync_report": {k: cli_report[k] for k in ("added", "updated", "unchanged")},
        "resync_1pct_s": round(one_pct_s, 2),
        "resync_1pct_changed_docs": len(changed),
        "resync_1pct_report": {k: one_pct.to_dict()[k] for k in
                               ("added", "updated", "unchanged", "deleted", "chunks_embedded",
                                "chunks_reused")},
        "resync_1pct_chunks_of_changed_docs": changed_chunks,
        "store_bytes": stats.bytes_on_disk,
        "store_mib": round(stats.bytes_on_disk / 2**20, 1),
    }


if __name__ == "__main__":
    main()
