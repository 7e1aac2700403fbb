"""Grounded answering: prompts with delimited passages, citations, refusal (`ask`)."""

from ragtune.answering.ask import (
    Answer,
    AnswerCalibration,
    Answerer,
    ask,
    calibrate_answers,
    generator_for,
    stored_policy,
)
from ragtune.answering.citations import Citation, parse_citations, strip_citations
from ragtune.answering.prompt import REFUSAL, Passage, Prompt, build_prompt, escape_passage
from ragtune.answering.refusal import Calibration, RefusalPolicy, Signal, calibrate, model_refused
from ragtune.answering.verify import ClaimCheck, Verification, Verifier, split_claims

__all__ = [
    "REFUSAL",
    "Answer",
    "AnswerCalibration",
    "Answerer",
    "Calibration",
    "Citation",
    "ClaimCheck",
    "Passage",
    "Prompt",
    "RefusalPolicy",
    "Signal",
    "Verification",
    "Verifier",
    "ask",
    "build_prompt",
    "calibrate_answers",
    "calibrate",
    "escape_passage",
    "generator_for",
    "model_refused",
    "parse_citations",
    "split_claims",
    "stored_policy",
    "strip_citations",
]
