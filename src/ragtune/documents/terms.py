"""Terms for BM25: lowercase words of two or more characters, English stopwords removed
(the Lucene list), Snowball-stemmed (the stop list and the stemmer are `ragtune.text`'s). Queries
and chunks go through the same function.

    >>> analyze("The running dogs ran to the parks")
    ['run', 'dog', 'ran', 'park']
"""

from __future__ import annotations

import re
from collections import Counter

from ragtune.text import STOPWORDS_EN, stem

__all__ = ["STOPWORDS_EN", "analyze", "term_frequencies"]

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def analyze(text: str) -> list[str]:
    """The BM25 terms of `text`, in order (repeats kept)."""
    return stem([w for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS_EN])


def term_frequencies(text: str) -> dict[str, int]:
    """Term → count for one text (what the store keeps per chunk)."""
    return dict(Counter(analyze(text)))
