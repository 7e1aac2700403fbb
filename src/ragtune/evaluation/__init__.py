"""Evaluation: metrics, judges, test-set generation, failure attribution, and the runners.

IR metrics are shared with `ragtune bench beir`. The answer-level pieces (`Evaluator`, judges,
`generate_testset`) are loaded on first use: they build on `ragtune.answering`, which itself
reads evaluation cases from here.
"""

from importlib import import_module
from typing import Any

from ragtune.evaluation.beir import BeirDataset, BeirReport, load_beir, run_beir
from ragtune.evaluation.cases import EvalCase, load_cases
from ragtune.evaluation.ir import evaluate_run, mrr_at_k, ndcg_at_k, percentile, recall_at_k

_LAZY = {
    "Evaluator": "runner", "EvalRun": "runner", "CaseResult": "runner",
    "compare_runs": "runner", "load_run": "runner",
    "Judge": "judges", "OfflineJudge": "judges", "LLMJudge": "judges", "Claim": "judges",
    "Verdict": "judges",
    "generate_testset": "testset", "write_cases": "testset",
    "attribute": "attribution", "CaseEvidence": "attribution", "CAUSES": "attribution",
    "REMEDIES": "attribution",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"ragtune.evaluation.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ragtune.evaluation' has no attribute {name!r}")


__all__ = [
    "BeirDataset",
    "BeirReport",
    "EvalCase",
    "evaluate_run",
    "load_beir",
    "load_cases",
    "mrr_at_k",
    "ndcg_at_k",
    "percentile",
    "recall_at_k",
    "run_beir",
    *_LAZY,
]
