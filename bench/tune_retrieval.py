"""Retrieval levers on SciFact: chosen on the 809 train queries, reported on the 300 test queries.

    .venv/bin/python bench/tune_retrieval.py [--epochs 1] [--negatives 1] [--learning-rate 2e-5]
        [--no-embedder] [--no-chunking] [--json OUT]
    .venv/bin/python bench/tune_retrieval.py --subset 40   # a quick run on a small corpus

Runs `ragtune.lab.levers.tune_retrieval` (what `ragtune tune-retrieval` runs) with SciFact's own
split as the training / held-out split: every ranking, two other chunkings (trial copies of the
knowledge base), the bundled embedder fine-tuned on train queries (hard negatives mined from the
knowledge base; its ranking chosen on train queries it did not learn from), and the prompt's k.
Uses the knowledge base in --home (default .bench-home/, the one bench/retrieval.py builds).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import BENCH_HOME, SCIFACT, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.cases import EvalCase
from ragtune.evaluation import load_beir
from ragtune.lab.levers import CHUNKINGS, EmbedderTuning, tune_retrieval


def cases(root: Path, split: str, only: set[str] | None = None) -> list[EvalCase]:
    data = load_beir(root, split)
    return [EvalCase(data.queries[q], gold_doc_ids=tuple(sorted(d for d, r in rels.items()
                                                               if r > 0)), id=q)
            for q, rels in sorted(data.qrels.items()) if only is None or q in only]


def subset_corpus(root: Path, n: int, out: Path) -> tuple[set[str], set[str]]:
    """A corpus of the gold documents of n train and n/2 test queries plus 3n others."""
    rng = random.Random(0)
    train, test = load_beir(root, "train"), load_beir(root, "test")
    train_q = set(rng.sample(sorted(train.qrels), n))
    test_q = set(rng.sample(sorted(test.qrels), max(2, n // 2)))
    keep = {d for q in train_q for d in train.qrels[q]} | {d for q in test_q
                                                            for d in test.qrels[q]}
    rows = (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    others = [r for r in rows if json.loads(r)["_id"] not in keep]
    picked = [r for r in rows if json.loads(r)["_id"] in keep] + rng.sample(others, 3 * n)
    out.write_text("\n".join(picked) + "\n", encoding="utf-8")
    return train_q, test_q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--negatives", type=int, default=1, help="mined per training pair")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--no-embedder", action="store_true")
    parser.add_argument("--no-chunking", action="store_true")
    parser.add_argument("--subset", type=int, help="n train queries on a small corpus")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    only_train = only_test = None
    corpus = args.dataset / "corpus.jsonl"
    home = args.home
    if args.subset:
        home = Path(tempfile.mkdtemp(prefix="ragtune-levers-"))
        corpus = home / "corpus.jsonl"
        only_train, only_test = subset_corpus(args.dataset, args.subset, corpus)
    kb = KnowledgeBase("scifact", Settings.load(home=home))
    report = kb.ingest([corpus], sync=True)
    log(f"knowledge base: {kb.store.stats().documents} documents ({report.added} added)")
    train = cases(args.dataset, "train", only_train)
    heldout = cases(args.dataset, "test", only_test)
    tuning = tune_retrieval(
        kb, train, heldout, chunkings=() if args.no_chunking else CHUNKINGS,
        embedder=None if args.no_embedder else EmbedderTuning(
            epochs=args.epochs, batch_size=args.batch_size, negatives=args.negatives,
            learning_rate=args.learning_rate),
        progress=log)
    print(f"{'lever':9} {'setting':52} {'train nDCG':>10} {'test nDCG':>9} {'test R@10':>9}")
    for row in tuning.rows:
        t, h = row.train, row.heldout
        metric = "ndcg@10" if "ndcg@10" in t else "prompt_recall"
        print(f"{row.lever:9} {row.setting[:52]:52} {t[metric]:10.4f} {h[metric]:9.4f} "
              f"{h.get('recall@10', float('nan')):9.4f}{'  *' if row.chosen else ''}")
    print(f"before (test): {json.dumps({k: round(v, 4) for k, v in tuning.before.items()})}")
    print(f"after  (test): {json.dumps({k: round(v, 4) for k, v in tuning.after.items()})}")
    for note in tuning.notes:
        print(f"note: {note}")
    write_json(args.json, {"machine": machine(), "versions": versions(),
                           "epochs": args.epochs, "negatives": args.negatives,
                           "learning_rate": args.learning_rate, "subset": args.subset,
                           **tuning.to_dict()})


if __name__ == "__main__":
    main()
