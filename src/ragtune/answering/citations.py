"""Citations: `[n]` markers in a model's output, resolved to stored chunks.

    >>> text, cited, invalid = parse_citations("Paris [1][3].", valid={1, 2})
    >>> text, cited, invalid
    ('Paris [1].', [1], [3])

A marker naming a passage that was not in the prompt is removed from the text and counted; the
rest resolve to the chunk, document, version and character span behind the passage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

_BODY = r"\[\s*(?:passages?\s*)?(\d+(?:\s*[,;]\s*(?:passages?\s*)?\d+)*)\s*\]"
CITATION_LIKE = re.compile(_BODY, re.IGNORECASE)
"""Every marker `parse_citations` accepts; the prompt neutralizes these inside passages."""
_MARKER = re.compile(r"\s*" + _BODY, re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Citation:
    """One cited passage, resolved to what is stored.

    `start`/`end` are the chunk's character span in version `version` of document `doc_id`:
    `document.text[start:end]` is the cited text. `inferred` marks a citation the model did not
    write but that was attributed afterwards (the passage containing the answer).
    """

    number: int
    chunk_id: str
    doc_id: str
    version: int
    start: int
    end: int
    title: str
    source: str
    page: int | None
    snippet: str
    flags: tuple[str, ...] = ()
    inferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The contract's names (`n`, `quote`) and the record's own (`number`, `snippet`)."""
        out = asdict(self)
        out["flags"] = list(self.flags)
        return {"n": self.number, "quote": self.snippet} | out


def parse_citations(text: str, valid: Iterable[int]) -> tuple[str, list[int], list[int]]:
    """Normalize `[n]`, `[n, m]`, `[passage n]` markers; drop numbers not in `valid`.

    Returns (text, cited numbers in order of first use, invalid numbers in order seen).
    """
    allowed = set(valid)
    cited: list[int] = []
    invalid: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = [int(n) for n in _NUMBER.findall(match.group(1))]
        keep = [n for n in numbers if n in allowed]
        invalid.extend(n for n in numbers if n not in allowed)
        for n in keep:
            if n not in cited:
                cited.append(n)
        return "".join(f" [{n}]" for n in dict.fromkeys(keep))

    out = _MARKER.sub(replace, text)
    out = re.sub(r"\s+([.,;:!?])", r"\1", out).strip()
    return out, cited, invalid


def strip_citations(text: str) -> str:
    """The answer without any citation markers (what exact match and F1 are scored on)."""
    out = _MARKER.sub("", text)
    return re.sub(r"\s+([.,;:!?])", r"\1", out).strip()


def best_supporting(answer: str, passages: dict[int, str]) -> int | None:
    """The passage that contains the answer: verbatim if one does, else the one sharing most
    of the answer's words (more than half of them, and every number in it: a wrong figure is
    the commonest invention). None when no passage supports it."""
    plain = strip_citations(answer).strip(" .").lower()
    if not plain:
        return None
    verbatim = re.compile(rf"(?<!\w){re.escape(plain)}(?!\w)")
    for number, text in passages.items():
        if verbatim.search(text.lower()):
            return number
    words = set(_WORD.findall(plain))
    if not words:
        return None
    figures = {w for w in words if any(ch.isdigit() for ch in w)}
    best, best_share = None, 0.5
    for number, text in passages.items():
        found = set(_WORD.findall(text.lower()))
        share = len(words & found) / len(words)
        if share > best_share and figures <= found:
            best, best_share = number, share
    return best
