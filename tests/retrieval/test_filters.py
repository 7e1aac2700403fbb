"""Metadata filters: parsing from the command line and matching."""

from __future__ import annotations

import pytest

from ragtune import InputError
from ragtune.retrieval.filters import matches, parse_filter_args, validate_filters


def test_parse_cli_forms() -> None:
    assert parse_filter_args(["lang=en", "year>=2019", "year<2023", "tag=a,b", "x!=1"]) == {
        "lang": {"eq": "en"}, "year": {"gte": 2019, "lt": 2023}, "tag": {"in": ["a", "b"]},
        "x": {"ne": 1}}


@pytest.mark.parametrize("bad", ["novalue=", "=x", "bad key=1", "just-a-key", ">=5"])
def test_bad_cli_filters(bad: str) -> None:
    with pytest.raises(InputError, match="filter"):
        parse_filter_args([bad])


def test_unknown_operator() -> None:
    with pytest.raises(InputError, match="unknown operator 'like'"):
        validate_filters({"a": {"like": "x"}})


@pytest.mark.parametrize(
    ("metadata", "filters", "expected"),
    [
        ({"lang": "en"}, {"lang": {"eq": "en"}}, True),
        ({"lang": "en"}, {"lang": {"eq": "fr"}}, False),
        ({}, {"lang": {"eq": "en"}}, False),
        ({"year": 2020}, {"year": {"eq": "2020"}}, True),
        ({"year": 2020}, {"year": {"gte": 2019, "lt": 2021}}, True),
        ({"year": 2021}, {"year": {"gte": 2019, "lt": 2021}}, False),
        ({"year": "n/a"}, {"year": {"gte": 2019}}, False),
        ({"date": "2024-03-01"}, {"date": {"lt": "2024-04-01"}}, True),
        ({"date": "2024-03-01T10:00:00Z"}, {"date": {"gte": "2024-03-01"}}, True),
        ({"tags": ["a", "b"]}, {"tags": {"eq": "b"}}, True),
        ({"tags": ["a", "b"]}, {"tags": {"ne": "b"}}, False),
        ({"lang": "de"}, {"lang": {"in": ["en", "fr"]}}, False),
        ({"lang": "fr"}, {"lang": {"in": ["en", "fr"]}}, True),
        ({"flag": True}, {"flag": {"eq": True}}, True),
    ],
)
def test_matches(metadata: dict, filters: dict, expected: bool) -> None:
    assert matches(metadata, validate_filters(filters)) is expected
