"""Evaluation: metrics, judges, test-set generation, failure attribution, and the runners.

IR metrics are shared with `ragtune bench beir`. Evaluation sits above answering and tuning: it
runs their pipelines and adapters; nothing below imports it (the cases it reads are
`ragtune.cases`).
"""

from ragtune.answering.judges import Claim, Judge, LLMJudge, OfflineJudge, Verdict
from ragtune.cases import EvalCase, load_cases
from ragtune.evaluation.attribution import CAUSES, REMEDIES, CaseEvidence, attribute
from ragtune.evaluation.beir import BeirDataset, BeirReport, load_beir, run_beir
from ragtune.evaluation.ir import evaluate_run, mrr_at_k, ndcg_at_k, percentile, recall_at_k
from ragtune.evaluation.runner import CaseResult, EvalRun, Evaluator, compare_runs, load_run
from ragtune.evaluation.testset import generate_testset, write_cases

__all__ = [
    "CAUSES",
    "REMEDIES",
    "BeirDataset",
    "BeirReport",
    "CaseEvidence",
    "CaseResult",
    "Claim",
    "EvalCase",
    "EvalRun",
    "Evaluator",
    "Judge",
    "LLMJudge",
    "OfflineJudge",
    "Verdict",
    "attribute",
    "compare_runs",
    "evaluate_run",
    "generate_testset",
    "load_beir",
    "load_cases",
    "load_run",
    "mrr_at_k",
    "ndcg_at_k",
    "percentile",
    "recall_at_k",
    "run_beir",
    "write_cases",
]
