"""Terms for BM25: lowercase words of two or more characters, English stopwords removed
(the Lucene list), Snowball-stemmed. Queries and chunks go through the same function.

    >>> analyze("The running dogs ran to the parks")
    ['run', 'dog', 'ran', 'park']
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

# Lucene's English stop set (also used by Elasticsearch and bm25s).
STOPWORDS_EN = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
        "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
        "these", "they", "this", "to", "was", "will", "with",
    ]
)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def analyze(text: str) -> list[str]:
    """The BM25 terms of `text`, in order (repeats kept)."""
    words = [w for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS_EN]
    return _stemmer().stemWords(words)


def term_frequencies(text: str) -> dict[str, int]:
    """Term → count for one text (what the store keeps per chunk)."""
    return dict(Counter(analyze(text)))
