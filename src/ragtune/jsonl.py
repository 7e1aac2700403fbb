"""JSONL files: written one record a line, and read with every bad line reported at once.

    >>> write_jsonl([{"question": "q", "answers": []}], Path("cases.jsonl"))
    >>> raise errors_found("invalid cases", ["cases.jsonl:3: invalid JSON (...)"])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ragtune.errors import InputError

MAX_ERRORS_SHOWN = 20


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write each row as one line of JSON (UTF-8, not ASCII-escaped), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def errors_found(header: str, errors: list[str]) -> InputError:
    """One error for many bad lines: the header, then the first `MAX_ERRORS_SHOWN` of them."""
    more = len(errors) - MAX_ERRORS_SHOWN
    shown = errors[:MAX_ERRORS_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
    return InputError(header + ":\n" + "\n".join(shown))
