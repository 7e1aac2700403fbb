"""SQuAD answer scoring against hand-worked values."""

from __future__ import annotations

import pytest

from ragtune.text import exact_match, normalize_answer, token_f1


def test_normalization_matches_the_official_script() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an Apple, a day") == "apple day"


def test_exact_match_takes_the_best_reference() -> None:
    assert exact_match("the Tagus", ["Tagus river", "Tagus"]) == 1.0
    assert exact_match("Tagus river estuary", ["Tagus"]) == 0.0


def test_token_f1_by_hand() -> None:
    # prediction "in paris france" vs "paris": 1 common; P=1/3, R=1 -> F1=0.5
    assert token_f1("in Paris, France", ["Paris"]) == pytest.approx(0.5)
    # "ten horsepower engine" vs "tenhorsepower": no common tokens
    assert token_f1("ten horsepower engine", ["ten-horsepower"]) == 0.0
    # best of several references
    assert token_f1("January 18 1974", ["January 18, 1974,", "1974"]) == pytest.approx(1.0)
    assert token_f1("anything", []) == 0.0
    assert token_f1("the", ["a"]) == 1.0  # both normalize to empty
