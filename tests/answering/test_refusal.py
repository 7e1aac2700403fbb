"""Refusal: the model's own words, the policy's order of checks, calibration on known data."""

from __future__ import annotations

import pytest

from ragtune.answering.refusal import (
    RefusalPolicy,
    Signal,
    calibrate,
    model_refused,
    refusal_scores,
)
from ragtune.errors import InputError


@pytest.mark.parametrize("text", [
    "I don't know.", "I do not know", "The passage doesn't mention it.",
    "The passages do not contain the answer.", "This is not mentioned in the text.",
    "There is no information about that.",
])
def test_model_refusals_are_recognised(text: str) -> None:
    assert model_refused(text)


@pytest.mark.parametrize("text", ["Paris [1]", "Knowledge is power", "in 1886"])
def test_answers_are_not_refusals(text: str) -> None:
    assert not model_refused(text)


def test_policy_checks_in_order() -> None:
    policy = RefusalPolicy(min_similarity=0.3, min_confidence=-1.0)
    assert policy.decide(None, "Paris", -0.1) == "no-passages"
    assert policy.decide(0.2, "Paris", -0.1) == "retrieval"
    assert policy.decide(0.5, "I don't know", -0.1) == "model"
    assert policy.decide(0.5, "", -0.1) == "model"
    assert policy.decide(0.5, "Paris", -2.0) == "confidence"
    assert policy.decide(0.5, "Paris", None) is None  # backend without logprobs
    assert policy.decide(0.5, "Paris", -0.5) is None
    assert RefusalPolicy(None, None).decide(0.0, "Paris", -9.0) is None


def test_confidence_threshold_applies_only_to_the_calibrated_generator() -> None:
    policy = RefusalPolicy(0.3, -0.9, "unit", "local:smollm2")
    assert policy.for_generator("local:smollm2") is policy
    other = policy.for_generator("openai:gpt-4o-mini")
    assert (other.min_similarity, other.min_confidence) == (0.3, None)
    assert RefusalPolicy(0.3, -0.9).for_generator("anything").min_confidence == -0.9


def test_policy_round_trips_through_json() -> None:
    policy = RefusalPolicy(0.25, -0.8, "unit", "local:smollm2")
    assert RefusalPolicy.from_json(policy.to_json()) == policy
    with pytest.raises(InputError):
        RefusalPolicy.from_json('{"nope": 1}')


def test_refusal_scores_by_hand() -> None:
    # 2 unanswerable (one refused), 2 answerable (one wrongly refused)
    scores = refusal_scores([True, False, True, False], [False, False, True, True])
    assert scores == {"precision": 0.5, "recall": 0.5, "balanced_accuracy": 0.5}
    never = refusal_scores([False] * 4, [False, False, True, True])
    assert never["recall"] == 0.0 and never["balanced_accuracy"] == 0.5


def test_calibration_finds_the_separating_confidence() -> None:
    # answerable: similarities 0.5..0.9, confident; unanswerable: similar retrieval, unsure
    signals = [Signal(True, 0.5 + i / 10, "x", -0.2 - i / 100) for i in range(5)]
    signals += [Signal(False, 0.6, "y", -0.9 - i / 100) for i in range(5)]
    result = calibrate(signals, keep_answerable=1.0)
    assert result.policy.min_similarity == pytest.approx(0.5)  # lets every answerable through
    assert -0.9 < result.policy.min_confidence <= -0.24
    assert result.balanced_accuracy == 1.0
    assert (result.refusal_precision, result.refusal_recall) == (1.0, 1.0)


def test_calibration_needs_both_kinds() -> None:
    with pytest.raises(InputError, match="answerable and unanswerable"):
        calibrate([Signal(True, 0.5, "x", -0.1)])
    with pytest.raises(InputError, match="keep_answerable"):
        calibrate([Signal(True, 0.5, "x", -0.1), Signal(False, 0.5, "x", -0.1)], 0.0)
