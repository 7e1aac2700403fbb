"""Typed records for what goes into the knowledge store: documents and their chunks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def sha256_text(*parts: str) -> str:
    """Hex SHA-256 of the parts joined by NUL (so ("ab", "c") and ("a", "bc") differ)."""
    h = hashlib.sha256()
    for i, part in enumerate(parts):
        if i:
            h.update(b"\0")
        h.update(part.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@dataclass(frozen=True)
class Page:
    """A page of a paginated source: its number (1-based) and its span in the document text."""

    number: int
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    """One document as read from a source, before chunking.

    `id` is stable: the normalized path of a file, or the `_id` of a JSONL row.
    """

    id: str
    text: str
    source: str
    format: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    pages: tuple[Page, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        """Hash of everything that, when changed, makes a new version of the document."""
        meta = json.dumps(dict(self.metadata), sort_keys=True, ensure_ascii=False, default=str)
        return sha256_text(self.title, self.text, meta, ",".join(sorted(self.groups)))

    def page_at(self, offset: int) -> int | None:
        """The page number holding character `offset`, or None for unpaginated documents."""
        for page in self.pages:
            if page.start <= offset < page.end or (offset == page.end == len(self.text)):
                return page.number
        return None


@dataclass(frozen=True)
class Chunk:
    """A contiguous span of a document's text: `document.text[start:end] == text`."""

    id: str
    doc_id: str
    version: int
    index: int
    start: int
    end: int
    text: str
    tokens: int
    heading: str = ""
    page: int | None = None
    title: str = ""
    flags: tuple[str, ...] = ()
    """Instruction-like content found at ingest (`ragtune.documents.injection`)."""

    @property
    def embedding_text(self) -> str:
        """What the embedder sees: the document title and heading path give the chunk context."""
        parts = [self.title] if self.title else []
        if self.heading and self.heading != self.title:
            parts.append(self.heading)
        parts.append(self.text)
        return "\n".join(parts)

    @property
    def text_hash(self) -> str:
        """Hash of `embedding_text`; chunks with equal hashes share one embedding."""
        return sha256_text(self.embedding_text)
