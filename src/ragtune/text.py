"""Text, one way: words, stems, figures and answer normalization.

Every part of ragtune that compares texts reads them through this module, so that the BM25
terms, the offline judge, the metrics, the generated test sets and the lab agree on what a
word, a stem, a figure and a normalized answer are (bm25s keeps its tokenization in one module
for the same reason).

    >>> words("The U.S. Army, in 1,234 words")
    ['the', 'u', 's', 'army', 'in', '1', '234', 'words']
    >>> stem(["running", "parks"])
    ['run', 'park']
    >>> figure_spans("EUR 1,234,567 for v2.1.3, from -5 to 15%")
    ['1,234,567', 'v2.1.3', '-5', '15']
    >>> sorted(figures("EUR 1,234,567 for v2.1.3, from -5 to 15%"))
    ['-5', '1234567', '15', '2.1.3']
    >>> normalize_answer("The Eiffel-Tower!")
    'eiffeltower'
    >>> contains_answer("Three members (ADAR1-3) are known.", ["3"])
    True
    >>> exact_match("The Eiffel Tower!", ["eiffel tower"])
    1.0
    >>> round(token_f1("in Paris", ["Paris"]), 3)
    0.667

Exact match and token F1 are SQuAD's (its official normalization; the best reference counts).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

# --- words and stems ---------------------------------------------------------------------------

# Lucene's English stop set (also used by Elasticsearch and bm25s).
STOPWORDS_EN = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
        "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
        "these", "they", "this", "to", "was", "will", "with",
    ]
)
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The lowercase words of `text` (runs of letters, digits and underscores), in order."""
    return _WORD.findall(text.lower())


def normalize_words(text: str) -> str:
    """`text` as its lowercase words joined by single spaces: case and punctuation aside, two
    phrasings that read the same compare equal ("What's new?" and "what s new")."""
    return " ".join(words(text))


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: the C Snowball stemmer, loaded once

    return Stemmer.Stemmer("english")


def stem(tokens: Sequence[str]) -> list[str]:
    """The Snowball (Porter 2) English stem of each token, in order: the one stemmer BM25
    terms and the offline judge share."""
    return list(_stemmer().stemWords(list(tokens)))


# --- figures -----------------------------------------------------------------------------------

# A figure: digits with inner thousands or decimal separators (1,234,567  12.50  2.1.3), led by
# a minus sign that is not a hyphen inside a word or a range (-5, but not the - of 5-10 or
# ADAR1-3), or by the v of a dotted version (v2.1.3). A unit around it (EUR, %, days) is not
# part of it: "15%" and "15 %" are both the figure 15.
FIGURE = re.compile(
    r"(?:(?<![\w.,])[-\u2212]|(?<![\w.,])[vV](?=\d+\.\d))?"
    r"\d(?:[\d,.]*\d)?"
)


def figure_spans(text: str, standalone: bool = False) -> list[str]:
    """The figures of `text` as written, in order. `standalone` keeps only those that are a
    word of their own (not glued to letters or dots, as the 1 of ADAR1 or a figure ending a
    sentence), the ones a question can blank out whole."""
    spans = []
    for m in FIGURE.finditer(text):
        if standalone and (_GLUE.match(text, m.end()) or
                           (m.start() > 0 and _GLUE.match(text, m.start() - 1))):
            continue
        spans.append(m.group(0))
    return spans


_GLUE = re.compile(r"[\w.]")


def figure_value(span: str) -> str:
    """A figure in one spelling, to compare figures written differently: thousands commas
    dropped, a Unicode minus made ASCII, a version's v dropped ("1,234" -> "1234",
    "v2.1.3" -> "2.1.3", "\u22125" -> "-5")."""
    return span.lstrip("vV").replace("\u2212", "-").replace(",", "")


def figures(text: str) -> set[str]:
    """The values of every figure in `text` (see `figure_value`)."""
    return {figure_value(s) for s in figure_spans(text)}


# --- answers -----------------------------------------------------------------------------------

ARTICLES = frozenset({"a", "an", "the"})
_ARTICLE = re.compile(r"\b(" + "|".join(sorted(ARTICLES)) + r")\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """An answer as the official SQuAD script normalizes it before exact match and token F1:
    lower case, ASCII punctuation removed (not split on: "Eiffel-Tower" -> "eiffeltower"),
    the articles removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLE.sub(" ", text).split())


def _answer_words(text: str) -> str:
    return " ".join(w for w in words(text) if w not in ARTICLES)


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether `text` contains one of `answers` as a run of whole words (lower case, articles
    and punctuation aside: "ADAR1-3" contains "3", "catalogue" does not contain "cat")."""
    padded = f" {_answer_words(text)} "
    return any(f" {a} " in padded for a in map(_answer_words, answers) if a)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals a normalized reference."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """The best token-overlap F1 against any reference (0.0 with no references)."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for ref in references:
        gold = normalize_answer(ref).split()
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
