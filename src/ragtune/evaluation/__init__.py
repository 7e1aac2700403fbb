"""Evaluation: IR metrics (shared with `ragtune bench beir`) and the BEIR runner."""

from ragtune.evaluation.beir import BeirDataset, BeirReport, load_beir, run_beir
from ragtune.evaluation.ir import evaluate_run, mrr_at_k, ndcg_at_k, percentile, recall_at_k

__all__ = [
    "BeirDataset",
    "BeirReport",
    "evaluate_run",
    "load_beir",
    "mrr_at_k",
    "ndcg_at_k",
    "percentile",
    "recall_at_k",
    "run_beir",
]
