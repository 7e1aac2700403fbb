"""The PostgreSQL + pgvector backend on a real server (pgserver: PostgreSQL 16, pgvector 0.6):
the conformance suite, plus what is specific to a shared database."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from ragtune import KnowledgeBase, Settings
from ragtune.cli import app
from ragtune.config import StoreSettings
from ragtune.documents.chunking import chunk_document
from ragtune.documents.terms import term_frequencies
from ragtune.errors import ConfigError, InputError, StoreError, StoreUnavailable
from ragtune.retrieval import search
from ragtune.retrieval.search import Searcher
from ragtune.store import Store, open_store
from ragtune.store.copy import copy_store
from ragtune.store.postgres import PostgresStore, schema_name
from ragtune.store.postgres.database import Database, redact
from ragtune.store.postgres.migrations import MIGRATIONS
from ragtune.testing.postgres import TemporaryPostgres
from ragtune.testing.store import (
    CHUNKING,
    LONG_TEXT,
    StoreTests,
    VectorSearchTests,
    WordCounter,
    make_doc,
    make_trace,
    write,
)

runner = CliRunner()


def pg_settings(server: TemporaryPostgres, folder: Path) -> StoreSettings:
    """Settings whose schema is this folder's own (each test a fresh knowledge base)."""
    prefix = "t" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return StoreSettings(backend="postgres", dsn=server.dsn, schema_prefix=prefix)


class TestPostgresConformance(StoreTests, VectorSearchTests):
    @pytest.fixture(autouse=True)
    def _server(self, postgres: TemporaryPostgres) -> None:
        self.server = postgres

    def make_store(self, folder: Path) -> Store:
        return open_store("postgres", folder, pg_settings(self.server, folder))


def kb_settings(server: TemporaryPostgres, home: Path, **store: object) -> Settings:
    return Settings.load(home=home, store={"backend": "postgres", "dsn": server.dsn,
                                           "schema_prefix": "kb", **store})


TREES = ("alder", "birch", "cedar", "elm", "fir", "hazel", "larch", "maple", "oak", "pine",
         "rowan", "willow")


def write_corpus(folder: Path, n: int) -> Path:
    """`n` one-chunk notes, each about its own tree."""
    folder.mkdir(parents=True)
    for i, tree in enumerate(TREES[:n]):
        (folder / f"note{i:02d}.md").write_text(
            f"# Note {i}\n\nThe door code of the {tree} room is {1000 + i}.\n", encoding="utf-8")
    return folder


def test_migrations_are_recorded_once_when_replicas_start_together(
        postgres: TemporaryPostgres, tmp_path: Path) -> None:
    settings = pg_settings(postgres, tmp_path)
    stores: list[Store] = []
    threads = [threading.Thread(target=lambda: stores.append(
        open_store("postgres", tmp_path / "kb", settings))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(stores) == 3
    with psycopg.connect(postgres.dsn) as conn:
        names = [r[0] for r in conn.execute(
            f'SELECT name FROM "{stores[0].schema}".migrations ORDER BY name')]  # type: ignore[attr-defined]
    assert names == [name for name, _ in MIGRATIONS]
    assert json.loads((tmp_path / "kb" / "store.postgres").read_text())["schema"] == \
        stores[0].schema  # type: ignore[attr-defined]
    for s in stores:
        s.close()


def test_a_postgres_knowledge_base_searches_as_the_sqlite_one_does(
        postgres: TemporaryPostgres, tmp_path: Path, embedder) -> None:
    sample = Path(__file__).parents[2] / "examples" / "sample-kb"
    with KnowledgeBase("sample", Settings.load(home=tmp_path / "lite"),
                       embedder=embedder) as lite, \
            KnowledgeBase("sample", kb_settings(postgres, tmp_path / "pg"),
                          embedder=embedder) as pg:
        assert not pg.exists()
        lite.ingest([sample])
        pg.ingest([sample])
        assert isinstance(pg.store, PostgresStore) and pg.exists()
        assert (tmp_path / "pg" / "kb" / "sample" / "store.postgres").is_file()
        assert pg.store.stats().chunks == lite.store.stats().chunks > 0
        for query in ("How quickly must a Sev1 page be acknowledged?", "expense receipts",
                      "who approves remote work"):
            for mode in ("bm25", "dense", "hybrid"):
                got = [(h.chunk_id, round(h.score, 5)) for h in search(pg, query, mode=mode).hits]
                want = [(h.chunk_id, round(h.score, 5))
                        for h in search(lite, query, mode=mode).hits]
                assert got == want, (query, mode)


ANIMALS = ("otter", "heron", "badger", "lynx", "marten", "stoat", "vole", "wren")


def animal_records() -> list[dict]:
    """40 short documents in two groups and public, with a metadata field to filter on."""
    return [{"_id": f"n{i:02d}", "text": f"The {a} survey of site {i} counted {i + 3} "
             f"{a}s near the {('river', 'forest', 'meadow')[i % 3]}.", "site": i % 4,
             "groups": [["alpha"], ["beta"], []][i % 3]}
            for i, a in enumerate(ANIMALS * 5)]


def test_dense_ranking_in_the_database_gives_what_ranking_in_process_does(
        postgres: TemporaryPostgres, tmp_path: Path, embedder) -> None:
    """`store.dense = "database"`: the replica holds no vectors; on a knowledge base the HNSW
    index searches exactly, every mode, caller, filter and per-document cap gives the hits
    (and scores) of exact ranking in process, also when the candidates asked for are fewer
    than the chunks and the caller's rights or a filter leave fewer than k of them."""
    with KnowledgeBase("animals", kb_settings(postgres, tmp_path / "a"),
                       embedder=embedder) as process, \
            KnowledgeBase("animals", kb_settings(postgres, tmp_path / "b", dense="database",
                                                 ef_search=1),  # the index scans no more than
                          embedder=embedder) as database:  # asked: callers must ask again
        process.ingest_records(animal_records())
        exact, near, narrow = Searcher(process), Searcher(database), Searcher(database, depth=4)
        assert near.index().matrix.shape == (40, 0) and near.index().has_vector.all()
        cases = [dict(mode=m, groups=g, filters=f, per_doc=p)
                 for m in ("dense", "hybrid") for g in (None, ["alpha"], [])
                 for f in (None, {"site": 3}) for p in (None, 1)]
        for case in cases:
            for query in ("badgers by the river", "how many herons were counted"):
                want = exact.search(query, k=5, **case).hits  # type: ignore[arg-type]
                for searcher in (near, narrow) if case["mode"] == "dense" else (near,):
                    got = searcher.search(query, k=5, **case).hits  # type: ignore[arg-type]
                    assert [h.chunk_id for h in got] == [h.chunk_id for h in want], case
                    assert [h.score for h in got] == pytest.approx(
                        [h.score for h in want], abs=1e-4), case
        rrf = dict(mode="hybrid", fusion="rrf", k=5)
        assert [h.chunk_id for h in near.search("otter", **rrf).hits] == [  # type: ignore
            h.chunk_id for h in exact.search("otter", **rrf).hits]  # type: ignore[arg-type]


def test_a_caller_who_may_read_little_still_gets_k_dense_hits_from_the_hnsw_index(
        postgres: TemporaryPostgres, tmp_path: Path, embedder) -> None:
    """pgvector applies the access filter after the index scan: of the nearest chunks asked
    for, a caller who may read 2% of the knowledge base gets a few; search asks again for more
    until it has k (or asked for the most it may)."""
    query = "otter"
    target = embedder.embed_query(query)
    rng = np.random.default_rng(0)
    settings = kb_settings(postgres, tmp_path, dense="database", ef_search=1)
    with KnowledgeBase("many", settings, embedder=embedder) as kb:
        vectors = target + rng.normal(scale=0.05, size=(2000, len(target)))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        with kb.store.bulk_load():
            for i, vector in enumerate(vectors):
                doc = make_doc(f"d{i:04d}", f"note {i}",
                               groups=("alpha",) if i % 50 == 0 else ("beta",))
                chunks = chunk_document(doc, 0, WordCounter(), CHUNKING)
                kb.store.write_document(doc, chunks, vector[None],
                                        [term_frequencies(c.embedding_text) for c in chunks])
        readable = [i for i in range(2000) if i % 50 == 0]
        exact = sorted(readable, key=lambda i: -float(vectors[i] @ target))[:10]
        hits = search(kb, query, k=10, mode="dense", groups=["alpha"], dedupe=False).hits
        assert len(hits) == 10
        assert {h.doc_id for h in hits} <= {f"d{i:04d}" for i in readable}
        assert len({h.doc_id for h in hits} & {f"d{i:04d}" for i in exact}) >= 8


def test_dense_ranking_in_the_database_needs_a_backend_with_a_vector_index(
        tmp_path: Path, embedder) -> None:
    settings = Settings.load(home=tmp_path, store={"dense": "database"})
    with KnowledgeBase("lite", settings, embedder=embedder) as kb:
        kb.ingest_records([{"_id": "a", "text": "otters swim"}])
        with pytest.raises(ConfigError, match="store.dense = 'database' needs a backend"):
            search(kb, "otter")


def test_another_replica_sees_the_knowledge_base_and_its_writes(
        postgres: TemporaryPostgres, tmp_path: Path, embedder) -> None:
    corpus = write_corpus(tmp_path / "notes", 3)
    with KnowledgeBase("shared", kb_settings(postgres, tmp_path / "one"),
                       embedder=embedder) as one, \
            KnowledgeBase("shared", kb_settings(postgres, tmp_path / "two"),
                          embedder=embedder) as two:
        assert not two.exists()
        one.ingest([corpus])
        assert two.exists()  # no folder on this replica: the database has it
        assert "cedar" in search(two, "cedar room", mode="bm25").hits[0].text
        (corpus / "note03.md").write_text("# Note 3\n\nThe aquarium key hangs by the door.\n")
        one.ingest([corpus])
        assert "aquarium" in search(two, "aquarium key", mode="bm25").hits[0].text


def test_killing_the_server_mid_ingest_is_one_clear_error_and_a_rerun_completes(
        postgres: TemporaryPostgres, tmp_path: Path, embedder) -> None:
    corpus = write_corpus(tmp_path / "notes", 12)
    settings = kb_settings(postgres, tmp_path / "home", connect_retries=1)
    written = 0

    def kill_after_four(done: int, total: int | None) -> None:
        nonlocal written
        written += done if total is None else 0
        if written == 4:
            postgres.kill()

    with KnowledgeBase("outage", settings, embedder=embedder) as kb:
        try:
            with pytest.raises(StoreUnavailable) as failure:
                kb.ingest([corpus], progress=kill_after_four)
        finally:
            postgres.start()
        message = str(failure.value)
        assert "\n" not in message and "cannot be reached" in message
        assert "tried 2 times" in message and "run the command again" in message
        report = kb.ingest([corpus])
        assert report.unchanged == 4 and report.added == 8
        stats = kb.store.stats()
        assert stats.documents == 12 and stats.chunks == stats.vectors == 12
        assert not kb.store.check()
        for doc in kb.store.list_documents():
            assert [(v.version, v.event) for v in kb.store.versions(doc.id)] == [(1, "added")]


def test_kb_migrate_copies_a_sqlite_knowledge_base_verifies_and_switches(
        postgres: TemporaryPostgres, tmp_path: Path, embedder) -> None:
    corpus = write_corpus(tmp_path / "notes", 6)
    home = tmp_path / "home"
    settings = Settings.load(home=home)
    with KnowledgeBase("moving", settings, embedder=embedder) as kb:
        kb.ingest([corpus], groups=["staff"])
        (corpus / "note00.md").write_text("# Note 0\n\nThe alder room moved upstairs.\n")
        kb.ingest([corpus], groups=["staff"])  # a second version
        kb.ingest([write_corpus(tmp_path / "gone", 1)])
        kb.store.delete_document("gone/note00.md")  # history of a deleted document
        kb.store.add_trace(make_trace("t1", 1.0, doc_groups=("staff",)))
        before = {q: [(h.chunk_id, round(h.score, 5)) for h in search(kb, q).hits]
                  for q in ("alder room upstairs", "birch door code")}
        history = kb.store.history()
    result = runner.invoke(app, ["kb", "migrate", "--kb", "moving", "--to", "postgres",
                                 "--home", str(home), "--dsn", postgres.dsn, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verified"] and report["copied"] == 6 and report["problems"] == []
    assert report["counts"] == {"documents": [6, 6], "chunks": [6, 6], "vectors": [6, 6],
                                "versions": [9, 9], "traces": [1, 1]}
    assert report["vectors_compared"] == 6 and "password" not in report["where"]
    assert Path(report["set_aside"]).name.startswith("store.sqlite.migrated-")
    assert not (home / "kb" / "moving" / "store.sqlite").exists()
    pg = Settings.load(home=home, store={"dsn": postgres.dsn})
    with KnowledgeBase("moving", pg, embedder=embedder) as kb:
        assert isinstance(kb.store, PostgresStore)  # the folder's marker, not the default
        assert kb.store.history() == history
        assert kb.store.get_trace("t1") == make_trace("t1", 1.0, doc_groups=("staff",))
        assert {q: [(h.chunk_id, round(h.score, 5)) for h in search(kb, q).hits]
                for q in before} == before
        assert kb.store.get_document("notes/note00.md").version == 2  # type: ignore[union-attr]
        with pytest.raises(InputError, match="already on postgres"):
            kb.migrate("postgres")


def test_an_interrupted_copy_resumes_where_it_stopped(
        postgres: TemporaryPostgres, tmp_path: Path) -> None:
    source = open_store("sqlite", tmp_path / "src")
    for i in range(5):
        write(source, make_doc(f"d{i}", LONG_TEXT + f" Doc {i}."), seed=i)
    target = open_store("postgres", tmp_path / "dst", pg_settings(postgres, tmp_path))
    copied = 0

    def stop_after_three(done: int, total: int | None) -> None:
        nonlocal copied
        copied += done
        if copied == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(source, target, stop_after_three)
    report = copy_store(source, target)
    assert (report.copied, report.skipped, report.verified) == (2, 3, True)
    assert target.index_snapshot().chunk_ids == source.index_snapshot().chunk_ids
    source.close()
    target.close()


def test_nearest_chunks_are_found_by_the_hnsw_index(postgres: TemporaryPostgres,
                                                   tmp_path: Path) -> None:
    """The conformance suite checks what `nearest_chunks` finds; this, that the index finds it."""
    store = open_store("postgres", tmp_path / "kb", pg_settings(postgres, tmp_path))
    assert isinstance(store, PostgresStore)
    try:
        write(store, make_doc("a", LONG_TEXT, groups=("alpha",)), seed=1)
        with psycopg.connect(postgres.dsn) as conn:
            conn.execute(f'SET search_path TO "{store.schema}", public')
            conn.execute("SET enable_seqscan = off")  # a few rows: force what a large one does
            plan = "\n".join(r[0] for r in conn.execute(
                f"EXPLAIN SELECT id FROM chunks ORDER BY embedding::vector(8) <=> "
                f"'{[0.0] * 7 + [1.0]}'::vector(8) LIMIT 3").fetchall())
        assert "chunks_embedding_hnsw" in plan
    finally:
        store.close()


def test_each_knowledge_base_name_has_its_own_schema() -> None:
    assert schema_name("ragtune", "handbook") == "ragtune_handbook"
    names = {schema_name("ragtune", n) for n in ("Hand-book", "hand_book", "hand.book",
                                                  "handbook", "x" * 80)}
    assert len(names) == 5 and all(len(n) <= 63 for n in names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)


def test_the_server_comes_from_settings_or_the_environment_and_no_password_is_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGTUNE_PG_DSN", raising=False)
    settings = Settings.load(home=tmp_path, store={"backend": "postgres"})
    with pytest.raises(ConfigError, match="store.dsn in config.toml or RAGTUNE_PG_DSN"):
        KnowledgeBase("docs", settings).store  # noqa: B018
    monkeypatch.setenv("RAGTUNE_PG_DSN", "postgresql://u:s3cret@db:5432/x")
    assert Settings.load(home=tmp_path).store.dsn == "postgresql://u:s3cret@db:5432/x"
    assert redact("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("host=db user=u password=s3cret dbname=x") == \
        "host=db user=u password=*** dbname=x"


def test_an_unreachable_server_is_one_line_naming_it(tmp_path: Path) -> None:
    settings = StoreSettings(backend="postgres", connect_retries=0,
                             dsn=f"postgresql://nobody:pw@/x?host={tmp_path}")
    with pytest.raises(StoreUnavailable) as failure:
        open_store("postgres", tmp_path / "kb", settings)
    message = str(failure.value)
    assert "\n" not in message and "cannot connect" in message and "pw" not in message


def test_a_statement_past_the_timeout_is_cancelled_as_one_error(
        postgres: TemporaryPostgres) -> None:
    db = Database(postgres.dsn, "public", statement_timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"statement_timeout_s \(0.2 s\) \(sleeping\)"):
            db.run(lambda c: c.execute("SELECT pg_sleep(5)"), doing="sleeping")
        assert time.monotonic() - started < 3
        assert db.read(lambda c: c.execute("SELECT 1").fetchone()) == (1,)  # pool still fine
    finally:
        db.close()
