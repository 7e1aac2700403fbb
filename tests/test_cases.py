"""Evaluation cases: validation with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.cases import load_cases
from ragtune.errors import InputError


def test_valid_cases(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"question": "When?", "answers": ["1886"], "gold_doc_ids": ["d1"]}\n\n'
                    '{"id": "u1", "question": "Who?", "answers": [], "metadata": {"k": 1}}\n')
    cases = load_cases(path)
    assert [c.id for c in cases] == ["line-1", "u1"]
    assert cases[0].answerable and not cases[1].answerable
    assert cases[0].gold_doc_ids == ("d1",) and cases[1].metadata == {"k": 1}


def test_every_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join([
        '{"question": "ok", "answers": []}',
        "not json",
        '{"question": "", "answers": []}',
        '{"question": "q"}',
        '{"question": "q", "answers": "x"}',
        '{"question": "q", "answers": [], "colour": "red"}',
        "[1, 2]",
    ]))
    with pytest.raises(InputError) as info:
        load_cases(path)
    message = str(info.value)
    for number, text in [(2, "invalid JSON"), (3, "'question' must be a non-empty string"),
                         (4, "'answers' is missing"), (5, "'answers' must be a list of strings"),
                         (6, "unknown key(s) 'colour'"), (7, "expected a JSON object")]:
        assert f"cases.jsonl:{number}: {text}" in message
    assert "cases.jsonl:1" not in message


def test_empty_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no cases"):
        load_cases(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match="cannot read"):
        load_cases(tmp_path / "missing.jsonl")
