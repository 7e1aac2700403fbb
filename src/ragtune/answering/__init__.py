"""Grounded answering: prompts with delimited passages, citations, refusal (`ask`)."""

from ragtune.answering.ask import Answer, Answerer, ask, generator_for, stored_policy
from ragtune.answering.citations import Citation, parse_citations, strip_citations
from ragtune.answering.prompt import REFUSAL, Passage, Prompt, build_prompt, escape_passage
from ragtune.answering.refusal import Calibration, RefusalPolicy, Signal, calibrate, model_refused

__all__ = [
    "REFUSAL",
    "Answer",
    "Answerer",
    "Calibration",
    "Citation",
    "Passage",
    "Prompt",
    "RefusalPolicy",
    "Signal",
    "ask",
    "build_prompt",
    "calibrate",
    "escape_passage",
    "generator_for",
    "model_refused",
    "parse_citations",
    "stored_policy",
    "strip_citations",
]
