"""Salvage a damaged SQLite knowledge store: every row still readable, and a count of the lost.

A damaged file is never changed or deleted: `set_aside` renames it (with its WAL, which holds
committed transactions not yet copied into the main file) to `store.corrupt-<time>.sqlite`, and
`salvage` reads rows out of that copy one table at a time. Where a table's pages are damaged the
scan goes on row by row past the damage, so one bad page costs the rows on it, not the table.
Chunks, vectors and term counts are derived data: `KnowledgeBase.check(repair=True)` rebuilds
them from the salvaged documents' text (reusing salvaged vectors by text hash), then writes the
history back (`Store.restore_history`).

    >>> aside, rows = set_aside_and_salvage(Path("kb/handbook/store.sqlite"))
    >>> len(rows.documents), rows.lost
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from ragtune.documents.records import Document, Page
from ragtune.errors import StoreError
from ragtune.store.base import DocumentVersion, Trace
from ragtune.store.sqlite import trace_from_row

Record = TypeVar("Record")

DOCUMENT_COLUMNS = ("id", "source", "title", "format", "text", "version", "groups",
                    "metadata", "pages", "created_at", "updated_at")
VERSION_COLUMNS = ("doc_id", "version", "event", "content_hash", "chars", "chunk_count",
                   "created_at")
TRACE_COLUMNS = ("id", "created_at", "route", "key_id", "question", "answer", "refused",
                 "refusal_reason", "groundedness", "latency_ms", "prompt_tokens",
                 "output_tokens", "doc_groups", "detail")
PROBE_PAST_DAMAGE = 100_000
"""How many rowids past the last readable one a scan probes, one at a time, when a table's
pages are damaged and it cannot learn the largest rowid."""


@dataclass(frozen=True)
class SalvagedDocument:
    """A document read back from a damaged store, with what `Store.write_document(...,
    restore=...)` needs to write it back as it was: (version, created_at, updated_at)."""

    document: Document
    restore: tuple[int, float, float]


@dataclass
class Salvaged:
    """What a damaged store still gave: records by table, and how many rows were lost where."""

    meta: dict[str, str] = field(default_factory=dict)
    documents: list[SalvagedDocument] = field(default_factory=list)
    versions: list[DocumentVersion] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # chunk text hash -> vector
    lost: dict[str, int] = field(default_factory=dict)  # table -> rowids that could not be read
    unreadable: list[str] = field(default_factory=list)  # tables not one row could be read of


def set_aside(path: Path) -> Path:
    """Rename a store file and its WAL/SHM to `<stem>.corrupt-<time><suffix>`; the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    for extra in ("", "-wal", "-shm"):
        source = Path(f"{path}{extra}")
        if source.exists():
            source.rename(Path(f"{target}{extra}"))
    return target


def set_aside_and_salvage(path: Path) -> tuple[Path, Salvaged]:
    """`set_aside` a damaged store, then `salvage` the copy: where it now lies, and its rows."""
    aside = set_aside(path)
    return aside, salvage(aside)


def salvage(path: Path) -> Salvaged:
    """Every readable row of the tables a rebuild needs (see the module docstring)."""
    try:
        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open for salvage ({exc})") from exc
    out = Salvaged()
    try:
        tables = _tables(db)
        if "kb_meta" in tables:
            out.meta = {str(k): str(v) for k, v in _rows(db, "kb_meta", ("key", "value"), out)}
        if "documents" in tables:
            out.documents = _records(_rows(db, "documents", DOCUMENT_COLUMNS, out),
                                     _salvaged_document, "documents", out)
        if "document_versions" in tables:
            out.versions = _records(_rows(db, "document_versions", VERSION_COLUMNS, out),
                                    lambda row: DocumentVersion(*row), "document_versions", out)
        if "traces" in tables:
            out.traces = _records(_rows(db, "traces", TRACE_COLUMNS, out), trace_from_row,
                                  "traces", out)
        if "chunks" in tables and "vectors" in tables:
            hashes = dict(_rows(db, "chunks", ("rowid", "text_hash"), out))
            for rowid, blob in _rows(db, "vectors", ("chunk_rowid", "vector"), out):
                if rowid in hashes:
                    out.vectors[hashes[rowid]] = np.frombuffer(blob, dtype="<f4")
    finally:
        db.close()
    return out


def _salvaged_document(row: tuple) -> SalvagedDocument:
    """A `documents` row (`DOCUMENT_COLUMNS`) as the document it holds."""
    values = dict(zip(DOCUMENT_COLUMNS, row, strict=True))
    document = Document(
        id=str(values["id"]), text=str(values["text"]), source=str(values["source"]),
        format=str(values["format"]), title=str(values["title"]),
        metadata=json.loads(str(values["metadata"])),
        pages=tuple(Page(*p) for p in json.loads(str(values["pages"]))),
        groups=tuple(json.loads(str(values["groups"]))))
    return SalvagedDocument(document, (int(values["version"]), float(values["created_at"]),
                                       float(values["updated_at"])))


def _records(rows: Iterable[tuple], record: Callable[[tuple], Record], table: str,
             out: Salvaged) -> list[Record]:
    """Rows as typed records; a row that does not make one (damaged JSON, say) is lost."""
    records = []
    for row in rows:
        try:
            records.append(record(row))
        except (ValueError, TypeError):
            out.lost[table] = out.lost.get(table, 0) + 1
    return records


def _tables(db: sqlite3.Connection) -> set[str]:
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        # the schema page itself is damaged: try the tables we know by name
        return {"kb_meta", "documents", "document_versions", "traces", "chunks", "vectors"}


def _rows(db: sqlite3.Connection, table: str, columns: tuple[str, ...], out: Salvaged
          ) -> Iterator[tuple]:
    """The readable rows of `table` in rowid order (rowid excluded unless asked for); rows on
    damaged pages are skipped and counted in `out.lost`."""
    cols = ", ".join(c if c in ("rowid", "chunk_rowid") else f'"{c}"' for c in columns)
    last = None
    try:
        for row in db.execute(f"SELECT rowid, {cols} FROM {table} ORDER BY rowid"):
            last = row[0]
            yield row[1:]
        return
    except sqlite3.DatabaseError:
        pass
    # Damage: probe rowid by rowid past the last row read (up to the largest rowid, when the
    # table can still say it).
    try:
        high = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        high = None
    if high is None and last is None:  # not one row, nor the table's extent: nothing to probe
        out.unreadable.append(table)
        return
    start = (last or 0) + 1
    stop = high if high is not None else start + PROBE_PAST_DAMAGE
    misses = 0
    for rowid in range(start, stop + 1):
        try:
            row = db.execute(f"SELECT rowid, {cols} FROM {table} WHERE rowid = ?",
                             (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            out.lost[table] = out.lost.get(table, 0) + 1
            continue
        if row is None:
            misses += 1
            if high is None and misses > 10_000:
                break  # well past the end of the table
            continue
        misses = 0
        yield row[1:]
