"""JSONL files: written one record a line, and read with every bad line reported at once.

    >>> write_jsonl([{"question": "q", "answers": []}], Path("cases.jsonl"))
    >>> raise errors_found("invalid cases", ["cases.jsonl:3: invalid JSON (...)"])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ragtune.errors import InputError

MAX_ERRORS_SHOWN = 20
T = TypeVar("T")


def read_lines(path: Path) -> list[str]:
    """A JSONL file's lines (UTF-8); an unreadable or undecodable file is an `InputError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def parse_lines(path: Path, parse: Callable[[Any, str, int], T]
                ) -> tuple[list[tuple[int, T]], list[str]]:
    """Decode every non-blank line and `parse(row, "path:line", line)` it. Returns the parsed
    records with their line numbers, and one message per bad line (invalid JSON, or the
    `InputError` the parser raised) instead of stopping at the first."""
    records: list[tuple[int, T]] = []
    errors: list[str] = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            records.append((number, parse(json.loads(line), where, number)))
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
        except InputError as exc:
            errors.append(str(exc))
    return records, errors


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
