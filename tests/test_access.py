"""The access policy, tested directly (no HTTP): who reads and writes what, and the three
evaluations of the read rule (`may_read`, the SQL filter, the index mask) agreeing on a
two-tenant corpus."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragtune.access import OPERATOR, Access, check_group_names
from ragtune.errors import AccessDenied, InputError
from ragtune.retrieval.index import SearchIndex
from ragtune.store import SQLiteStore
from ragtune.testing.store import TENANT_CALLERS, TENANT_CORPUS, make_doc, write

ALPHA, BETA, NOBODY = Access.of(["alpha"]), Access.of(["beta"]), Access.of([])


def test_reads_public_or_a_shared_group() -> None:
    assert ALPHA.may_read(()) and ALPHA.may_read(("alpha",)) and ALPHA.may_read(("beta", "alpha"))
    assert not ALPHA.may_read(("beta",))
    assert NOBODY.may_read(()) and not NOBODY.may_read(("alpha",))
    assert OPERATOR.may_read(("anything",))
    assert ALPHA.may_read(iter(["alpha"]))  # any iterable, read once


def test_may_read_every_needs_each_document_readable_and_known() -> None:
    assert ALPHA.may_read_every([("alpha",), (), ("alpha", "beta")])
    assert not ALPHA.may_read_every([("alpha",), ("beta",)])
    assert not ALPHA.may_read_every([("alpha",), None])  # a document no longer stored
    assert OPERATOR.may_read_every([None, ("beta",)])
    assert ALPHA.may_read_every([])


def test_holds_all_needs_every_group() -> None:
    both = Access.of(["alpha", "beta"])
    assert both.holds_all(("alpha", "beta")) and both.holds_all(())
    assert not ALPHA.holds_all(("alpha", "beta"))
    assert OPERATOR.holds_all(("x", "y"))


def test_writes_are_narrower_than_reads() -> None:
    assert ALPHA.may_write(("alpha",))
    assert not ALPHA.may_write(("alpha", "beta"))  # readable, not writable
    assert not ALPHA.may_write(())  # public: only a caller without groups writes it
    assert NOBODY.may_write(()) and not NOBODY.may_write(("alpha",))
    assert OPERATOR.may_write(("alpha", "beta")) and OPERATOR.may_write(())


def test_write_groups_default_to_the_callers_and_refuse_others() -> None:
    both = Access.of(["beta", "alpha"])
    assert both.write_groups(None) == ("alpha", "beta")
    assert both.write_groups(["beta", " beta "]) == ("beta",)
    with pytest.raises(AccessDenied, match=r"upload: this key may only write into its groups "
                                           r"\(alpha\)"):
        ALPHA.write_groups(["beta"], "upload")
    with pytest.raises(AccessDenied, match="no groups, so it may only write documents visible"):
        NOBODY.write_groups(["alpha"])
    with pytest.raises(InputError, match="'public' is reserved"):
        OPERATOR.write_groups(["public"])


def test_document_ids_are_namespaced_by_their_groups() -> None:
    assert ALPHA.document_id("report.pdf", ("alpha",)) == "@alpha/report.pdf"
    assert ALPHA.document_id("@alpha/report.pdf", ("alpha",)) == "@alpha/report.pdf"
    assert Access.of(["a", "b"]).document_id("x", ("a", "b")) == "@a+b/x"
    assert NOBODY.document_id("x", ()) == "@public/x"
    assert OPERATOR.document_id("x", ("alpha",)) == "x"


def test_group_names_are_checked() -> None:
    assert check_group_names([" b", "a", "", "a"]) == ("a", "b")
    for bad in (["../x"], ["-x"], ["x" * 65], [3]):
        with pytest.raises(InputError):
            check_group_names(bad)


def test_a_view_and_back() -> None:
    for access in TENANT_CALLERS.values():
        assert Access.from_view(access.view) == access
    assert Access.from_view(None).everything
    assert Access.from_view(["b", "a", "a"]) == Access(("a", "b"))
    assert Access.from_view([" a"]).groups == (" a",)  # as given: searches never cleaned them


def readers_by_policy(access: Access) -> set[str]:
    return {doc_id for doc_id, groups in TENANT_CORPUS.items() if access.may_read(groups)}


@pytest.mark.parametrize("caller", sorted(TENANT_CALLERS))
def test_sql_filter_selects_what_may_read_selects(caller: str, tmp_path: Path) -> None:
    access = TENANT_CALLERS[caller]
    store = SQLiteStore(tmp_path / "store.sqlite")
    try:
        for doc_id, groups in TENANT_CORPUS.items():
            write(store, make_doc(doc_id, f"text of {doc_id}", groups=groups))
        assert store.visible_documents(access) == readers_by_policy(access)
    finally:
        store.close()
    # the same condition over another table of groups, as a backend may name it
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE docs (id TEXT)")
    db.execute("CREATE TABLE doc_groups (doc_id TEXT, grp TEXT)")
    for doc_id, groups in TENANT_CORPUS.items():
        db.execute("INSERT INTO docs VALUES (?)", (doc_id,))
        db.executemany("INSERT INTO doc_groups VALUES (?, ?)", [(doc_id, g) for g in groups])
    condition, params = access.sql_filter("docs.id", groups_table="doc_groups")
    rows = db.execute(f"SELECT id FROM docs WHERE {condition}", params).fetchall()
    assert {r[0] for r in rows} == readers_by_policy(access)


@pytest.mark.parametrize("caller", sorted(TENANT_CALLERS))
def test_index_mask_selects_what_may_read_selects(caller: str, tmp_path: Path) -> None:
    access = TENANT_CALLERS[caller]
    ids = list(TENANT_CORPUS)
    public = np.array([not TENANT_CORPUS[d] for d in ids])
    by_group = {g: np.array([g in TENANT_CORPUS[d] for d in ids]) for g in ("alpha", "beta")}
    mask = access.document_mask(public, by_group)
    assert {d for d, seen in zip(ids, mask, strict=True) if seen} == readers_by_policy(access)
    assert public.tolist() == [not TENANT_CORPUS[d] for d in ids]  # inputs left as they were

    # and through the search index, as search uses it: scoped by the policy or by its view
    store = SQLiteStore(tmp_path / "store.sqlite")
    try:
        for doc_id, groups in TENANT_CORPUS.items():
            write(store, make_doc(doc_id, f"text of {doc_id}", groups=groups))
        index = SearchIndex(store.index_snapshot())
    finally:
        store.close()
    for caller_as in (access, access.view):
        rows = index.mask(caller_as, None)
        seen = set(index.doc_ids) if rows is None else {
            index.doc_ids[index.chunk_doc[r]] for r in np.flatnonzero(rows)}
        assert seen == readers_by_policy(access)
        scoped = index.scoped(caller_as)
        assert scoped.visible_chunks == sum(
            1 for d in index.chunk_doc if index.doc_ids[d] in readers_by_policy(access))
    assert index.scoped(access) is index.scoped(access.view)  # one cached scope per group set
