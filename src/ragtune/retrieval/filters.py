"""Metadata filters: equality, `in`, and ranges on numbers and ISO dates.

A filter maps a metadata key to a condition:

    {"lang": "en"}                       equality (a list value matches if any element equals)
    {"lang": {"in": ["en", "fr"]}}       membership
    {"year": {"gte": 2019, "lt": 2023}}  ranges: gt, gte, lt, lte (numbers, or ISO dates)
    {"lang": {"ne": "de"}}               inequality

On the command line: `--filter lang=en`, `--filter lang=en,fr`, `--filter year>=2019`,
`--filter date<2024-01-01`, `--filter lang!=de`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from ragtune.errors import InputError

OPERATORS = ("eq", "ne", "in", "gt", "gte", "lt", "lte")
_ARG = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*$")
_SYMBOL = {"=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}

Filters = Mapping[str, Any]


def parse_filter_args(args: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Turn `key=value`, `key=a,b`, `key>=v` ... into a filter mapping."""
    out: dict[str, dict[str, Any]] = {}
    for arg in args:
        m = _ARG.match(arg)
        if not m or not m.group(3):
            raise InputError(
                f"filter {arg!r}: expected KEY=VALUE, KEY=A,B, KEY!=V, KEY>=V, KEY<V ..."
            )
        key, symbol, raw = m.groups()
        op = _SYMBOL[symbol]
        if op == "eq" and "," in raw:
            out.setdefault(key, {})["in"] = [_scalar(v) for v in raw.split(",") if v.strip()]
        else:
            out.setdefault(key, {})[op] = _scalar(raw)
    return out


def validate_filters(filters: Filters) -> dict[str, dict[str, Any]]:
    """Normalize a filter mapping to {key: {op: value}}; unknown operators are errors."""
    out: dict[str, dict[str, Any]] = {}
    for key, cond in filters.items():
        if isinstance(cond, Mapping):
            for op, value in cond.items():
                if op not in OPERATORS:
                    raise InputError(
                        f"filter on {key!r}: unknown operator {op!r} (use {', '.join(OPERATORS)})"
                    )
                if op == "in" and not isinstance(value, list | tuple | set):
                    raise InputError(f"filter on {key!r}: 'in' needs a list, got {value!r}")
            out[key] = dict(cond)
        else:
            out[key] = {"eq": cond}
    return out


def matches(metadata: Mapping[str, Any], filters: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a document's metadata satisfies every condition (a missing key never matches)."""
    for key, cond in filters.items():
        if key not in metadata:
            return False
        value = metadata[key]
        for op, wanted in cond.items():
            if not _holds(value, op, wanted):
                return False
    return True


def _holds(value: Any, op: str, wanted: Any) -> bool:
    if isinstance(value, list):
        if op == "ne":
            return all(_holds(v, "ne", wanted) for v in value)
        return any(_holds(v, op, wanted) for v in value)
    if op == "in":
        return any(_equal(value, w) for w in wanted)
    if op == "eq":
        return _equal(value, wanted)
    if op == "ne":
        return not _equal(value, wanted)
    a, b = _comparable(value, wanted)
    if a is None or b is None:
        return False
    try:
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
    except TypeError:
        return False


def _equal(a: Any, b: Any) -> bool:
    x, y = _comparable(a, b)
    return x == y if x is not None else str(a) == str(b)


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na, nb
    da, db = _date(a), _date(b)
    if da is not None and db is not None:
        return da, db
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None, None


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _date(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    if isinstance(v, str) and len(v) >= 10 and v[4] == "-":
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            return None
    return None


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if re.fullmatch(r"-?\d+\.\d*", raw):
        return float(raw)
    return raw
