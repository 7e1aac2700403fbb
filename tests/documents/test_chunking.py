"""Chunking: coverage, exact offsets, the token budget and stable ids, as properties."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.config import ChunkingSettings
from ragtune.documents import Document, Page, chunk_document
from ragtune.documents.chunking import count_tokens

words = st.sampled_from(
    ["alpha", "beta", "gamma", "delta", "enzyme", "protein", "Zürich", "naïve", "l'été",
     "co-operate", "3.14", "x", "supercalifragilisticexpialidocious", "東京", "🙂", "e.g."]
)
sentence = st.lists(words, min_size=1, max_size=30).map(lambda ws: " ".join(ws) + ".")
paragraph = st.lists(sentence, min_size=1, max_size=8).map(" ".join)
heading = st.tuples(st.integers(1, 3), st.lists(words, min_size=1, max_size=4)).map(
    lambda t: "#" * t[0] + " " + " ".join(t[1])
)
block = st.one_of(paragraph, paragraph, heading, st.text(min_size=1, max_size=400))
markdown_text = st.lists(block, min_size=1, max_size=12).map("\n\n".join)
budgets = st.sampled_from([(16, 0), (24, 4), (64, 8), (128, 16)])

PROPS = settings(max_examples=80, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_doc(text: str, fmt: str = "md") -> Document:
    return Document(id="doc-1", text=text, source="/x/doc.md", format=fmt, title="Doc")


def covered(text: str, chunks) -> bool:
    mask = [False] * len(text)
    for c in chunks:
        for i in range(c.start, c.end):
            mask[i] = True
    return all(mask[i] or text[i].isspace() for i in range(len(text)))


@PROPS
@given(text=markdown_text, budget=budgets, fmt=st.sampled_from(["md", "txt"]))
def test_chunking_properties(counter, text: str, budget: tuple[int, int], fmt: str) -> None:
    max_tokens, overlap = budget
    cfg = ChunkingSettings(max_tokens=max_tokens, overlap_tokens=overlap)
    doc = make_doc(text, fmt)
    chunks = chunk_document(doc, 1, counter, cfg)
    for c in chunks:
        assert text[c.start : c.end] == c.text  # offsets slice back to the chunk
        assert c.text.strip() == c.text and c.text  # no empty or padded chunks
        assert count_tokens(counter, c.text) <= max_tokens  # the budget holds, re-tokenized
        assert c.doc_id == "doc-1"
    assert covered(text, chunks)  # every non-space character lies in some chunk
    assert [c.index for c in chunks] == list(range(len(chunks)))
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    again = chunk_document(doc, 1, counter, cfg)
    assert [c.id for c in again] == [c.id for c in chunks]  # same input, same ids
    assert len({c.id for c in chunks}) == len(chunks)


def test_markdown_headings_give_sections_and_paths(counter) -> None:
    text = ("# Manual\n\nIntro line.\n\n## Install\n\nRun the installer.\n\n"
            "### Linux\n\nUse the package.\n\n## Usage\n\nStart it.")
    chunks = chunk_document(make_doc(text), 1, counter, ChunkingSettings())
    assert [c.heading for c in chunks] == [
        "Manual", "Manual > Install", "Manual > Install > Linux", "Manual > Usage"]
    assert chunks[1].text == "## Install\n\nRun the installer."


def test_heading_only_section_joins_the_next(counter) -> None:
    text = "# Title\n\n## Part\n\nBody of the part."
    chunks = chunk_document(make_doc(text), 1, counter, ChunkingSettings())
    assert len(chunks) == 1 and chunks[0].text == text


def test_headings_inside_code_fences_are_not_sections(counter) -> None:
    text = "# Real\n\n```\n# not a heading\n```\n\nAfter."
    chunks = chunk_document(make_doc(text), 1, counter, ChunkingSettings())
    assert {c.heading for c in chunks} == {"Real"}


def test_long_paragraph_splits_at_sentences_with_overlap(counter) -> None:
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(40)]
    text = " ".join(sentences)
    cfg = ChunkingSettings(max_tokens=40, overlap_tokens=12)
    chunks = chunk_document(make_doc(text, "txt"), 1, counter, cfg)
    assert len(chunks) > 3
    for c in chunks:
        assert re.fullmatch(r"(Sentence number \d+ talks about topic \d+\. ?)+", c.text)
    # consecutive chunks overlap by whole sentences
    assert any(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_prefers_paragraph_breaks(counter) -> None:
    para = "Short sentence here. " * 5
    text = "\n\n".join([para.strip()] * 4)
    cfg = ChunkingSettings(max_tokens=40, overlap_tokens=0)
    chunks = chunk_document(make_doc(text, "txt"), 1, counter, cfg)
    for c in chunks:
        assert c.text == para.strip() or "\n\n" in c.text


def test_run_on_text_without_spaces_is_cut_within_budget(counter) -> None:
    text = "x" * 5000 + " " + "word" * 800
    cfg = ChunkingSettings(max_tokens=32, overlap_tokens=0)
    chunks = chunk_document(make_doc(text, "txt"), 1, counter, cfg)
    assert all(count_tokens(counter, c.text) <= 32 for c in chunks)
    assert covered(text, chunks)


def test_pdf_chunks_carry_pages_and_never_cross_them(counter) -> None:
    p1, p2 = "Page one has words.", "Page two has more words."
    text = p1 + "\n\n" + p2
    doc = Document(id="p", text=text, source="/x/p.pdf", format="pdf",
                   pages=(Page(1, 0, len(p1)), Page(2, len(p1) + 2, len(text))))
    chunks = chunk_document(doc, 1, counter, ChunkingSettings())
    assert [(c.text, c.page) for c in chunks] == [(p1, 1), (p2, 2)]


def test_embedding_text_carries_title_and_heading(counter) -> None:
    text = "# Manual\n\n## Install\n\nRun it."
    doc = Document(id="m", text=text, source="/m.md", format="md", title="Manual")
    (chunk,) = chunk_document(doc, 1, counter, ChunkingSettings())
    assert chunk.embedding_text == "Manual\nManual > Install\n" + text
