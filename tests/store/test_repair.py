"""Salvage of a damaged SQLite store: every readable row back as a typed record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from ragtune.store import SQLiteStore
from ragtune.store.repair import set_aside_and_salvage
from ragtune.testing.store import make_doc, make_trace, write


def test_salvage_gives_typed_records_and_counts_rows_that_make_none(tmp_path: Path) -> None:
    path = tmp_path / "kb" / "store.sqlite"
    with SQLiteStore(path) as store:
        a = write(store, make_doc("a", "Text about kettles.", groups=("g",)))
        write(store, make_doc("b", "Text about teapots."))
        store.add_trace(make_trace("t1", 1.0))
        store.add_trace(make_trace("t2", 2.0))
        versions = store.versions("a")
        stored = store.get_document("a")
    with sqlite3.connect(path) as db:  # rows that read fine but hold no valid record
        db.execute("UPDATE documents SET metadata = '{broken' WHERE id = 'b'")
        db.execute("UPDATE traces SET detail = 'not json' WHERE id = 't2'")

    aside, rows = set_aside_and_salvage(path)
    assert not path.exists() and aside.exists() and aside.parent == path.parent
    assert [d.document for d in rows.documents] == [make_doc("a", "Text about kettles.",
                                                             groups=("g",))]
    assert stored is not None
    assert rows.documents[0].restore == (1, stored.created_at, stored.updated_at)
    assert [v for v in rows.versions if v.doc_id == "a"] == versions
    assert rows.traces == [make_trace("t1", 1.0)]
    assert rows.lost == {"documents": 1, "traces": 1}
    assert a.vectors is not None
    np.testing.assert_array_equal(rows.vectors[a.chunks[0].text_hash], a.vectors[0])
    assert rows.meta["generation"] == "2"
