"""Property: random sequences of writes, uploads and deletes by random keys, against
`ragtune serve` over a real socket, never let any key see, change or delete a document outside
its rights. The rights are written here on their own (the README's security section), not
taken from `ragtune.access`: the test is the specification the service is held to.

Each example starts from the same operator-made knowledge base "prop" (one document public,
one per group, one in both groups); after every operation the answer must be the one the
rules give, and after the sequence every key's listing and search results, and every
document's groups and text, must be exactly the model's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from security_stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.integration]

KB = "prop"
# key -> (groups it holds, may it write)
RIGHTS: dict[str, tuple[frozenset[str], bool]] = {
    "alpha": (frozenset({"alpha"}), True),
    "beta": (frozenset({"beta"}), True),
    "alphabeta": (frozenset({"alpha", "beta"}), True),
    "public-writer": (frozenset(), True),
    "alpha-reader": (frozenset({"alpha"}), False),
}
SEED = {"op-public": (), "op-alpha": ("alpha",), "op-beta": ("beta",),
        "op-both": ("alpha", "beta")}
TEXTS = ["red kettle manual", "blue kettle warranty", "green tea opening hours"]
NAMES = ["a", "b", "op-beta", "op-both", "@alpha/a", "@beta/b", "@public/a"]
GROUPS = st.none() | st.lists(st.sampled_from(["alpha", "beta"]), unique=True, max_size=2)
# an upload form's groups field: absent or named groups (an empty field is an absent one)
FORM_GROUPS = st.none() | st.lists(st.sampled_from(["alpha", "beta"]), unique=True,
                                   min_size=1, max_size=2)


def may_read(key: str, groups: tuple[str, ...]) -> bool:
    held, _ = RIGHTS[key]
    return not groups or bool(held & set(groups))


def may_write(key: str, groups: tuple[str, ...]) -> bool:
    held, writes = RIGHTS[key]
    if not writes:
        return False
    return (bool(groups) and set(groups) <= held) if held else not groups


def stored_id(name: str, groups: tuple[str, ...]) -> str:
    prefix = f"@{'+'.join(groups) or 'public'}/"
    return name if name.startswith(prefix) else prefix + name


@dataclass
class Model:
    docs: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)  # id -> groups, text

    def write(self, key: str, name: str, groups: tuple[str, ...], text: str) -> str:
        """The outcome the rules give for writing `name` into `groups` (allowed groups)."""
        doc_id = stored_id(name, groups)
        old = self.docs.get(doc_id)
        if old is not None and not may_write(key, old[0]):
            return "failed"
        self.docs[doc_id] = (groups, text)
        if old is None:
            return "added"
        return "unchanged" if old == (groups, text) else "updated"


post = st.tuples(st.just("post"), st.sampled_from(sorted(RIGHTS)), st.sampled_from(NAMES),
                 GROUPS, st.sampled_from(TEXTS))
upload = st.tuples(st.just("upload"), st.sampled_from(sorted(RIGHTS)), st.sampled_from(NAMES),
                   GROUPS, st.sampled_from(TEXTS), FORM_GROUPS)
delete = st.tuples(st.just("delete"), st.sampled_from(sorted(RIGHTS)), st.integers(0, 40))
operations = st.lists(st.one_of(post, upload, delete), min_size=1, max_size=8)


def reset(stack: Stack) -> Model:
    """The knowledge base back to the operator's seed (through the admin key)."""
    with stack.client("admin") as c:
        for doc in c.get("/v1/documents", params={"kb": KB}).json()["documents"]:
            if doc["id"] not in SEED:
                c.delete(f"/v1/documents/{doc['id']}", params={"kb": KB}).raise_for_status()
        c.post("/v1/documents", json={"kb": KB, "documents": [
            {"id": i, "text": f"operator note {i}", "groups": list(g)}
            for i, g in SEED.items()]}).raise_for_status()
    return Model({i: (g, f"operator note {i}") for i, g in SEED.items()})


@pytest.fixture(scope="module")
def prop_stack(stack: Stack) -> Stack:
    from ragtune import KnowledgeBase

    kb = KnowledgeBase.open(KB, stack.kb.settings)
    kb.ingest_records([{"_id": "op-public", "text": "operator note op-public"}])
    kb.close()
    return stack


def apply(stack: Stack, model: Model, op: tuple) -> None:
    kind, key = op[0], op[1]
    with stack.client(key) as c:
        if kind == "post":
            _, _, name, groups, text = op
            effective = tuple(sorted(RIGHTS[key][0] if groups is None else groups))
            doc = {"id": name, "text": text} | ({} if groups is None else {"groups": groups})
            r = c.post("/v1/documents", json={"kb": KB, "documents": [doc]})
            if not may_write(key, effective):
                assert r.status_code == 403, (op, r.text)
                return
            assert r.status_code == 200, (op, r.text)
            outcome = model.write(key, name, effective, text)
            got = r.json()
            if outcome == "failed":
                assert got["documents"] == [] and len(got["failed"]) == 1, (op, got)
            else:
                assert got["documents"] == [{"id": stored_id(name, effective),
                                             "outcome": outcome}], (op, got)
        elif kind == "upload":
            _, _, name, row_groups, text, form_groups = op
            row = {"_id": name, "text": text} | ({} if row_groups is None
                                                  else {"groups": row_groups})
            form = {"kb": KB} | ({} if form_groups is None
                                 else {"groups": ",".join(form_groups)})
            r = c.post("/v1/documents/files", data=form, files=[(
                "files", ("rows.jsonl", (json.dumps(row) + "\n").encode(),
                          "application/jsonl"))])
            target = tuple(sorted(RIGHTS[key][0] if form_groups is None else form_groups))
            if not may_write(key, target):
                assert r.status_code == 403, (op, r.text)
                return
            assert r.status_code == 200, (op, r.text)
            effective = target if row_groups is None else tuple(sorted(row_groups))
            got = r.json()
            if not may_write(key, effective):
                assert got["documents"] == [] and len(got["failed"]) == 1, (op, got)
                return
            outcome = model.write(key, name, effective, text)
            if outcome == "failed":
                assert got["documents"] == [] and len(got["failed"]) == 1, (op, got)
            else:
                assert got["documents"] == [{"id": stored_id(name, effective),
                                             "outcome": outcome}], (op, got)
        else:
            universe = sorted({*model.docs, *SEED, "@alpha/ghost", "@beta/a"})
            doc_id = universe[op[2] % len(universe)]
            r = c.delete(f"/v1/documents/{doc_id}", params={"kb": KB})
            if not RIGHTS[key][1]:
                assert r.status_code == 403, (op, r.text)
            elif doc_id in model.docs and may_write(key, model.docs[doc_id][0]):
                assert r.status_code == 200, (op, r.text)
                del model.docs[doc_id]
            else:
                assert r.status_code == 404, (op, r.text)
                assert r.json()["error"]["message"] == f"no document {doc_id!r}"


def check(stack: Stack, model: Model) -> None:
    with stack.client("admin") as c:
        docs = c.get("/v1/documents", params={"kb": KB}).json()["documents"]
        assert {d["id"]: tuple(d["groups"]) for d in docs} == {
            i: g for i, (g, _) in model.docs.items()}
        for doc_id, (_, text) in model.docs.items():
            shown = c.get(f"/v1/documents/{doc_id}", params={"kb": KB, "text": "true"}).json()
            assert shown["text"] == text, doc_id
    for key in RIGHTS:
        visible = {i for i, (g, _) in model.docs.items() if may_read(key, g)}
        with stack.client(key) as c:
            listed = {d["id"] for d in c.get("/v1/documents", params={"kb": KB}
                                             ).json()["documents"]}
            assert listed == visible, key
            hits = c.post("/v1/search", json={"kb": KB, "query": "kettle tea note", "k": 20,
                                              "mode": "bm25"}).json()["hits"]
            assert {h["doc_id"] for h in hits} <= visible, key


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_no_key_ever_sees_changes_or_deletes_outside_its_rights(prop_stack: Stack,
                                                               ops: list[tuple]) -> None:
    model = reset(prop_stack)
    for op in ops:
        apply(prop_stack, model, op)
    check(prop_stack, model)
