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
    # an answer that broke the format (free decoding) is still read as a plain cited answer
    assert parse_json_citations("not json [1]", {1}) == ("not json [1]", [1], [], "not json")


def test_a_sources_list_names_the_cited_documents() -> None:
    import json

    from ragtune.answering.ask import parse_json_citations

    raw = '{"answer": "21 days", "sources": ["returns.md", "nowhere.md", 2]}'
    text, cited, invalid, plain = parse_json_citations(raw, {1, 2, 3},
                                                       {"returns.md": 3, "faq.md": 1})
    assert json.loads(text)["sources"] == ["returns.md", "nowhere.md", 2]
    assert cited == [3, 2] and len(invalid) == 1
    assert plain == "21 days"  # document ids are citations, not answer text


def test_a_prompt_style_writes_examples_and_passages_in_the_schema_format() -> None:
    import json

    from ragtune.answering.prompt import PromptStyle, build_closed_book_prompt, build_prompt

    schema = {"type": "object", "properties": {"answer": {"type": "string"},
                                               "sources": {"type": "array"}}}
    style = PromptStyle(schema=schema)
    hits = [type("H", (), {"chunk_id": "c1", "doc_id": "returns.md", "text": "Within 21 days.",
                           "score": 1.0, "metadata": {"title": "Returns"}})()]
    prompt = build_prompt("How long?", hits, lambda t: len(t.split()), 1000, style=style)
    assert 'source="returns.md"' in prompt.messages[-1]["content"]
    example = json.loads(prompt.messages[2]["content"])
    assert example == {"answer": "1886", "sources": ["porto.md"]}
    assert "JSON schema" in prompt.messages[0]["content"]
    terse = PromptStyle(system="Answer as JSON.", examples=False, schema=schema,
                        tell_schema=False)
    closed = build_closed_book_prompt("How long?", style=terse)
    assert [m["role"] for m in closed.messages] == ["system", "user"]
    assert closed.messages[0]["content"] == "Answer as JSON."
    assert terse.render_answer("I don't know.", None, None) == \
        '{"answer": "I don\'t know.", "sources": []}'
    # no schema: the classic format, and no document ids shown
    plain = build_prompt("How long?", hits, lambda t: len(t.split()), 1000, style=PromptStyle())
    assert plain.messages[2]["content"] == "1886 [2]" and "source=" not in plain.messages[-1][
        "content"]


def test_the_schema_is_told_to_the_model() -> None:
    from ragtune.answering.prompt import SYSTEM_PROMPT, with_schema

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    told = with_schema(SYSTEM_PROMPT, schema)
    assert told.startswith(SYSTEM_PROMPT)
    assert '{"type":"object","properties":{"answer":{"type":"string"}}}' in told
    assert with_schema(SYSTEM_PROMPT, None) == SYSTEM_PROMPT
