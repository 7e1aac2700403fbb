"""Evaluation cases: JSONL, one question per line, validated with line-numbered errors.

    {"question": "How often are keys rotated?", "answers": ["every 90 days"],
     "gold_doc_ids": ["security.md"], "metadata": {"topic": "security"}}

`answers` lists acceptable answers; an empty list means the question is unanswerable from the
knowledge base (the right behaviour is to refuse). `gold_doc_ids`, `schema` (a JSON schema the
answer must satisfy) and `metadata` are optional; any other key is an error.

    >>> cases = load_cases(Path("cases.jsonl"))
    >>> cases[0].answerable
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import InputError
from ragtune.jsonl import errors_found, parse_lines

KEYS = {"id", "question", "answers", "gold_doc_ids", "schema", "metadata"}


@dataclass(frozen=True)
class EvalCase:
    question: str
    answers: tuple[str, ...] = ()
    gold_doc_ids: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "question": self.question,
                               "answers": list(self.answers)}
        if self.gold_doc_ids:
            out["gold_doc_ids"] = list(self.gold_doc_ids)
        if self.schema is not None:
            out["schema"] = self.schema
        if self.metadata:
            out["metadata"] = self.metadata
        return out


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def parse_case(row: Any, where: str) -> EvalCase:
    """One case from a decoded JSON object; `where` prefixes error messages."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object")
    unknown = sorted(set(row) - KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(sorted(KEYS))}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string")
    if "answers" not in row:
        raise InputError(f"{where}: 'answers' is missing (use [] for an unanswerable question)")
    answers = _strings(row["answers"], "answers", where)
    if any(not a.strip() for a in answers):
        raise InputError(f"{where}: 'answers' has an empty string")
    schema = row.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise InputError(f"{where}: 'schema' must be a JSON object")
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InputError(f"{where}: 'metadata' must be a JSON object")
    return EvalCase(question.strip(), answers, _strings(row.get("gold_doc_ids", []),
                                                        "gold_doc_ids", where),
                    schema, metadata, str(row.get("id", "")))


def load_cases(path: Path) -> list[EvalCase]:
    """Read and validate a cases file; every bad line is reported, not just the first."""
    parsed, errors = parse_lines(path, lambda row, where, _: parse_case(row, where))
    cases = [case if case.id else EvalCase(case.question, case.answers, case.gold_doc_ids,
                                           case.schema, case.metadata, f"line-{number}")
             for number, case in parsed]
    if errors:
        raise errors_found("invalid cases", errors)
    if not cases:
        raise InputError(f"{path}: no cases")
    return cases
