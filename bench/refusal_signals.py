"""How well each refusal signal separates answerable from unanswerable questions (AUROC),
from the per-question trace `bench/answer_squad.py --cases` writes.

    .venv/bin/python bench/refusal_signals.py bench/results/answer_squad_cases.jsonl

AUROC 0.5 is chance; 1.0 means a threshold separates the two kinds perfectly. The confidence
signal exists only for questions that reached generation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def auroc(positive: list[float], negative: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos = np.asarray(positive, dtype=float)[:, None]
    neg = np.asarray(negative, dtype=float)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", type=Path)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.cases.read_text().splitlines() if line.strip()]
    out = {}
    for signal in ("similarity", "confidence"):
        pos = [r[signal] for r in rows if r["answers"] and r[signal] is not None]
        neg = [r[signal] for r in rows if not r["answers"] and r[signal] is not None]
        out[signal] = {"auroc": round(auroc(pos, neg), 4), "answerable": len(pos),
                       "unanswerable": len(neg)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
