"""Citation markers: parsing, invalid-number removal, stripping, attribution."""

from __future__ import annotations

from ragtune.answering.citations import best_supporting, parse_citations, strip_citations


def test_valid_markers_are_kept_and_invalid_ones_removed_and_counted() -> None:
    text, cited, invalid = parse_citations("Paris [1][3]. Also Lyon [2, 7].", valid={1, 2})
    assert text == "Paris [1]. Also Lyon [2]."
    assert cited == [1, 2]
    assert invalid == [3, 7]


def test_marker_variants_are_normalized() -> None:
    text, cited, invalid = parse_citations("Yes [Passage 2] and [1; 2].", valid={1, 2})
    assert text == "Yes [2] and [1] [2]."
    assert cited == [2, 1] and invalid == []


def test_no_markers() -> None:
    assert parse_citations("Plain answer.", valid={1}) == ("Plain answer.", [], [])


def test_strip_citations() -> None:
    assert strip_citations("Every 90 days [1] [2].") == "Every 90 days."
    assert strip_citations("[3] 1886") == "1886"


def test_best_supporting_prefers_verbatim_then_overlap() -> None:
    passages = {1: "Lisbon lies on the Tagus.", 2: "The bridge opened in 1886 in Porto."}
    assert best_supporting("1886", passages) == 2
    assert best_supporting("the bridge opened 1886", passages) == 2
    assert best_supporting("Madrid", passages) is None
    assert best_supporting("", passages) is None
    assert best_supporting("18", passages) is None  # inside "1886" is not support


def test_support_needs_every_number_of_the_answer() -> None:
    passages = {1: "Backups are encrypted and kept for 35 days.", 2: "Invoices are due in 30 days."}
    assert best_supporting("The backups are kept for 35 days.", passages) == 1
    # most words match passage 1, but the figure is invented
    assert best_supporting("The backups are kept for 90 days.", passages) is None


def test_json_answers_take_citations_from_string_values_only() -> None:
    import json

    from ragtune.answering.ask import parse_json_citations

    raw = '{"answer": "every 90 days [2]", "ids": [1], "note": "see [passage 7]", "n": 3}'
    text, cited, invalid, plain = parse_json_citations(raw, valid={1, 2, 3})
    data = json.loads(text)
    assert data == {"answer": "every 90 days [2]", "ids": [1], "note": "see", "n": 3}
    assert (cited, invalid) == ([2], [7])
    assert plain == "every 90 days see"
    assert parse_json_citations("not json [1]", {1}) == ("not json [1]", [], [], "not json")


def test_the_schema_is_told_to_the_model() -> None:
    from ragtune.answering.prompt import SYSTEM_PROMPT, with_schema

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    told = with_schema(SYSTEM_PROMPT, schema)
    assert told.startswith(SYSTEM_PROMPT)
    assert '{"type":"object","properties":{"answer":{"type":"string"}}}' in told
    assert with_schema(SYSTEM_PROMPT, None) == SYSTEM_PROMPT
