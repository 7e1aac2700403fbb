"""Failure attribution on constructed cases: every cause, its precedence, and the summary."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ragtune.evaluation.attribution import (
    ADVICE,
    CAUSES,
    REMEDIES,
    CaseEvidence,
    attribute,
    summarize,
)

# An answerable case whose gold passage was retrieved at rank 1 and put in the prompt.
GOOD = dict(answerable=True, refused=False, correct=True, gold_rank=1, gold_in_prompt=True,
            faithfulness=1.0)

CONSTRUCTED = {
    "missed refusal": dict(answerable=False, refused=False, faithfulness=1.0),
    "format violation": GOOD | dict(schema_error="(root): 'answer' is a required property"),
    "knowledge gap": GOOD | dict(retrieves=False, correct=False, gold_rank=None,
                                 gold_in_prompt=False, faithfulness=None),
    "chunking split": GOOD | dict(correct=False, split_answer=True, gold_rank=None,
                                  gold_in_prompt=False),
    "retrieval miss": GOOD | dict(correct=False, gold_rank=None, gold_in_prompt=False),
    "ranking miss": GOOD | dict(correct=False, gold_rank=7, gold_in_prompt=False),
    "false refusal": GOOD | dict(refused=True, correct=False, faithfulness=None),
    "unfaithful": GOOD | dict(correct=False, faithfulness=0.0),
    "context ignored": GOOD | dict(correct=False, faithfulness=1.0),
}


@pytest.mark.parametrize("cause", CAUSES)
def test_every_cause_on_a_constructed_case(cause: str) -> None:
    got = attribute(CaseEvidence(**CONSTRUCTED[cause]))
    assert got is not None
    assert (got.cause, got.remedy) == (cause, REMEDIES[cause])
    assert got.evidence


def test_passing_cases_have_no_cause() -> None:
    assert attribute(CaseEvidence(**GOOD)) is None
    assert attribute(CaseEvidence(answerable=False, refused=True)) is None
    # a refusal is not a format violation
    assert attribute(CaseEvidence(answerable=False, refused=True, schema_error="x")) is None


def test_evidence_names_what_decided() -> None:
    assert attribute(CaseEvidence(**CONSTRUCTED["ranking miss"])).evidence == (
        "first gold passage at rank 7, not in the prompt")
    assert "0.00" in attribute(CaseEvidence(**CONSTRUCTED["unfaithful"])).evidence


def test_precedence() -> None:
    # a split answer is a chunking problem even though no gold passage was retrieved
    assert attribute(CaseEvidence(**CONSTRUCTED["chunking split"])).cause == "chunking split"
    # a refusal caused by a retrieval miss is a retrieval miss, not a false refusal
    missed = GOOD | dict(refused=True, correct=False, gold_rank=None, gold_in_prompt=False)
    assert attribute(CaseEvidence(**missed)).cause == "retrieval miss"
    # a correct answer the context does not support still fails, as unfaithful
    lucky = GOOD | dict(faithfulness=0.25)
    assert attribute(CaseEvidence(**lucky)).cause == "unfaithful"
    assert attribute(CaseEvidence(**lucky), min_faithfulness=0.2) is None
    # a format violation outranks a wrong answer
    both = CONSTRUCTED["format violation"] | dict(correct=False)
    assert attribute(CaseEvidence(**both)).cause == "format violation"


def test_summary_counts_every_cause_and_maps_remedies() -> None:
    attributions = [attribute(CaseEvidence(**CONSTRUCTED[c])) for c in
                    ("retrieval miss", "false refusal", "missed refusal", "false refusal")]
    attributions.append(None)
    summary = summarize(attributions)
    assert list(summary["failure_causes"]) == list(CAUSES)
    assert summary["failure_causes"]["false refusal"] == 2
    assert summary["failure_causes"]["context ignored"] == 0
    assert summary["remedies"][0] == {"remedy": "add refusal training", "cases": 3,
                                      "advice": ADVICE["add refusal training"]}
    assert {r["remedy"] for r in summary["remedies"]} == {"add refusal training",
                                                          "fix retrieval"}
    assert set(REMEDIES.values()) <= set(ADVICE)


def test_a_draft_refused_as_unsupported_is_unfaithful_not_a_false_refusal() -> None:
    refused = CaseEvidence(answerable=True, refused=True, correct=False, gold_rank=1,
                           gold_in_prompt=True)
    assert attribute(refused).cause == "false refusal"
    unsupported = replace(refused, refusal_reason="unsupported")
    assert attribute(unsupported).cause == "unfaithful"
    assert attribute(unsupported).remedy == "fine-tune behaviour"
