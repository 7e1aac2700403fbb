"""`KnowledgeBase`: a named store plus the ingestion pipeline that keeps it in sync with files.

    >>> kb = KnowledgeBase.open("docs")
    >>> report = kb.ingest([Path("handbook/")], sync=True)
    >>> report.added, report.unchanged
    (12, 0)

Ingestion loads each file, skips documents whose content hash is unchanged (no chunking, no
embedding), chunks the rest, reuses stored vectors for chunk texts already embedded, embeds the
remainder in large batches, and writes each document in its own transaction. With `sync=True`,
documents whose source lies under the given paths but was not seen are deleted.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.access import OPERATOR, Access
from ragtune.config import ChunkingSettings, Settings, deep_merge
from ragtune.documents import (
    Chunk,
    Document,
    LoadFailure,
    chunk_document,
    iter_source_files,
    load_path,
    load_token_counter,
)
from ragtune.documents.chunking import TokenCounter
from ragtune.documents.injection import RULES_VERSION, instruction_flags
from ragtune.documents.loaders import escapes_root, normalized_source, relabel
from ragtune.documents.terms import term_frequencies
from ragtune.errors import ConfigError, InputError, StoreError, StoreUnavailable
from ragtune.models.embedders import Embedder, get_embedder
from ragtune.store import Store, StoreBackend, StoredDocument, backend_of, store_backend
from ragtune.store.copy import CopyReport, copy_store

# Chunks collected before one embedding call: large enough that sorting by length keeps padding
# low, small enough that progress and commits stay frequent.
EMBED_FLUSH_CHUNKS = 512
INJECTION_RULES_KEY = "injection_rules"
ADOPTED_KEY = "adopted_settings"

ProgressCallback = Callable[[int, int | None], None]
"""Called with (documents done in this step, new total or None)."""


@dataclass
class IngestReport:
    """What an ingest did; `to_dict()` is the `ragtune ingest --json` shape."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[LoadFailure] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)
    """Chunks with instruction-like text: doc_id, source, chunk index, flags."""
    seconds: float = 0.0
    documents: list[dict[str, str]] = field(default_factory=list)
    """Each document written or found unchanged: its stored id and what happened to it."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [{"path": f.path, "error": f.error} for f in self.failed]
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class MigrationReport:
    """What `ragtune kb migrate` did; `to_dict()` is its `--json` shape."""

    kb: str
    source: str
    target: str
    where: str
    """The target store (a file, or a server and schema; no password)."""
    copy: CopyReport
    set_aside: str | None = None
    """Where the old store was kept (None: the copy was not verified, nothing moved)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kb": self.kb, "from": self.source, "to": self.target, "where": self.where,
                "set_aside": self.set_aside, **self.copy.to_dict()}


@dataclass
class CheckReport:
    """What `ragtune kb check [--repair]` found and did; `to_dict()` is its `--json` shape."""

    path: str
    problems: list[str] = field(default_factory=list)
    """What was wrong before any repair (empty: the store is healthy)."""
    repaired: bool = False
    action: str = "none"
    """"none", "reindexed" (indexes rebuilt in place) or "rebuilt" (a new file from the rows
    still readable; the damaged one kept as `set_aside`)."""
    set_aside: str | None = None
    documents: int = 0
    """Documents in the store after the check (and repair)."""
    lost: dict[str, int] = field(default_factory=dict)
    """Per table, rowids that could not be read: at most that many rows lost."""
    unreadable: list[str] = field(default_factory=list)
    """Tables of which not one row could be read (documents: re-ingest the sources)."""
    remaining: list[str] = field(default_factory=list)
    """Problems still there after the repair (empty when it worked)."""

    @property
    def ok(self) -> bool:
        """Healthy, and (after a repair) nothing lost: otherwise the user has work to do."""
        if not self.repaired:
            return not self.problems
        return not (self.remaining or self.lost or self.unreadable)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class _Pending:
    document: Document
    chunks: list[Chunk]
    existed: bool


@dataclass
class _Ingestion:
    """One ingest's running state, shared by its steps (`KnowledgeBase.ingest`)."""

    access: Access
    groups: tuple[str, ...]
    """The groups a file's documents go into (a JSONL row's own `groups` aside)."""
    known: dict[str, str]
    """Every stored document id with its content hash, read once at the start."""
    notify: ProgressCallback
    report: IngestReport = field(default_factory=IngestReport)
    seen: dict[str, str] = field(default_factory=dict)
    """Document ids met in this ingest, with their source (duplicates fail; sync keeps them)."""
    failed_sources: set[str] = field(default_factory=set)
    """Sources that failed to load: a sync keeps their stored documents."""
    pending: list[_Pending] = field(default_factory=list)
    pending_chunks: int = 0
    total: int = 0
    reuse: Store | None = None
    """Another store whose vectors (same embedder) stand in for embedding (`copy_documents`)."""
    fresh: bool = False
    """Embed every chunk anew, reusing no stored vector (a new embedder: `rebuild`)."""


class KnowledgeBase:
    """A named knowledge base: its store, its embedder, and ingestion into it."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        self.name = name
        self._given = settings
        self._adopted: Settings | None = None
        self.path = settings.kb_path(name)
        self._store = store
        self._embedder = embedder
        self._counter = counter

    @classmethod
    def open(cls, name: str | None = None, settings: Settings | None = None) -> KnowledgeBase:
        """The knowledge base `name` under the settings' home (created on first write)."""
        settings = settings or Settings.load()
        return cls(name or settings.kb, settings)

    @classmethod
    def open_existing(cls, name: str | None = None,
                      settings: Settings | None = None) -> KnowledgeBase:
        """The knowledge base `name`, which must hold something: for the commands that read
        one (search, ask, eval, ...), where an empty one would only give empty answers.

        Raises `InputError` naming it when nothing was ever ingested into it.
        """
        kb = cls.open(name, settings)
        if not kb.exists():
            raise InputError(f"knowledge base {kb.name!r} is empty: run `ragtune ingest` first")
        return kb

    # --- settings ---------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings this knowledge base runs with: those it was opened with, and over them
        the sections it adopted (`adopt_settings`, e.g. `ragtune tune-retrieval --apply`)."""
        if self._adopted is None:
            if self._store is None and not self._backend.exists(self.path, self._given.store):
                return self._given
            recorded = self.store.get_meta().get(ADOPTED_KEY)
            self._adopted = (self._given.adopting(json.loads(recorded)) if recorded
                             else self._given)
        return self._adopted

    @property
    def adopted_settings(self) -> dict[str, dict[str, Any]]:
        """The settings sections this knowledge base adopted (empty: none)."""
        if not self.exists():
            return {}
        return dict(json.loads(self.store.get_meta().get(ADOPTED_KEY) or "{}"))

    def adopt_settings(self, sections: Mapping[str, Mapping[str, Any]]) -> Settings:
        """Record settings sections (`{"retrieval": {...}, "answer": {"k": 5}}`) that this
        knowledge base uses from now on, over the configured ones; validated first. Chunking
        and embedder sections are applied by `rebuild`, which records them itself."""
        merged = {**self.adopted_settings}
        for section, values in sections.items():
            merged[section] = {**merged.get(section, {}), **dict(values)}
        settings = self._given.adopting(merged)  # a bad value fails here, before it is stored
        # the generation moves so that other processes' searchers (a running `serve`) reload
        self.store.set_meta({ADOPTED_KEY: json.dumps(merged, sort_keys=True),
                             "generation": str(self.store.generation() + 1)})
        self._adopted = settings
        return settings

    def reload_settings(self) -> None:
        """Read the adopted settings again: another process may have adopted or rebuilt
        (searchers call this when the store's generation moves)."""
        before = self._adopted
        self._adopted = None
        if before is not None and self.settings.embedder != before.embedder:
            self._embedder = None

    # --- lazily built parts -----------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store, opened by the backend the settings name (`store.backend`)."""
        if self._store is None:
            self._store = self._backend.open(self.path, self._given.store)
        return self._store

    @property
    def _backend(self) -> StoreBackend:
        return backend_of(self.path, self._given.store)

    @property
    def store_path(self) -> Path:
        """Where the store lies (for SQLite, `<kb folder>/store.sqlite`)."""
        return self._backend.path(self.path)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings.embedder
            self._embedder = get_embedder(s.name, s.batch_size, self.settings.cache_dir,
                                          s.base_url, s.api_key_env)
        return self._embedder

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = load_token_counter()
        return self._counter

    def exists(self) -> bool:
        """Whether anything was ever written to this knowledge base."""
        return self._store is not None or self._backend.exists(self.path, self._given.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- provenance -------------------------------------------------------------------------

    def provenance(self) -> dict[str, str]:
        """What this knowledge base's index depends on; a mismatch makes ingestion refuse."""
        from ragtune.version import __version__

        c = self.settings.chunking
        return {
            "embedder": self.embedder.name,
            "embedding_dim": str(self.embedder.dim),
            "tokenizer": self.counter.name,
            "chunk_max_tokens": str(c.max_tokens),
            "chunk_overlap_tokens": str(c.overlap_tokens),
            "embedding_text": "title\\nheading\\ntext",
            "lexical_terms": "lucene-stop+snowball-en",
            "ragtune_version": __version__,
        }

    def _check_provenance(self) -> None:
        wanted = self.provenance()
        recorded = self.store.get_meta()
        if "embedder" not in recorded:
            self.store.set_meta({**wanted, "created_at": str(time.time()),
                                 INJECTION_RULES_KEY: RULES_VERSION})
            return
        for key, value in wanted.items():
            if key == "ragtune_version" or key not in recorded:
                continue  # a key newer than the knowledge base is recorded below
            if recorded[key] != value:
                raise ConfigError(
                    f"knowledge base {self.name!r} was built with {key}={recorded[key]!r}, "
                    f"but the settings give {value!r}; use another --kb or the same settings"
                )
        missing = {k: v for k, v in wanted.items() if k not in recorded}
        if missing:
            self.store.set_meta(missing)
        if recorded.get(INJECTION_RULES_KEY) != RULES_VERSION:
            self.store.reflag_chunks(instruction_flags)
            self.store.set_meta({INJECTION_RULES_KEY: RULES_VERSION})

    # --- ingestion --------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[Path],
        *,
        sync: bool = False,
        groups: Iterable[str] | None = None,
        include: Iterable[str] = (),
        exclude: Iterable[str] | None = None,
        progress: ProgressCallback | None = None,
        source_name: Callable[[Path], str] | None = None,
        access: Access | None = None,
    ) -> IngestReport:
        """Bring the knowledge base in line with `paths` (files, folders, BEIR corpus.jsonl).

        A file is named (its source, and its document id) by its path under the ingest root,
        prefixed by the root's own name (`handbook/hr/leave.md` for `ingest /srv/handbook`),
        never by the machine's absolute path; `source_name(file)` names it otherwise (uploads:
        `upload:<file name>`).

        `access` is the caller's rights (None: the operator). Everything written goes through
        it (`ragtune.access`): the groups asked for must be the caller's, a JSONL row's own
        `groups` too, ids are namespaced by their groups, and a document the caller may not
        write is never replaced (reported as failed, in the same words as a missing one)."""
        started = time.perf_counter()
        access = access or OPERATOR
        group_tuple = access.write_groups(groups, "ingest")
        exclude = self.settings.ingest.exclude if exclude is None else tuple(exclude)
        for path in paths:
            if not Path(path).exists():
                raise InputError(f"{path}: no such file or folder")
        self._check_provenance()
        run = _Ingestion(access, group_tuple, self.store.document_hashes(),
                         progress or (lambda done, total: None))
        # a first ingest builds the store's deferrable indexes once, at its end
        with self.store.bulk_load() if not run.known else contextlib.nullcontext():
            for root in paths:
                for file in iter_source_files(Path(root), include, exclude):
                    self._ingest_file(run, Path(root), file, source_name)
            self._flush(run)
        if sync:
            run.report.deleted = self._delete_unseen(run, paths)
        run.report.seconds = time.perf_counter() - started
        return run.report

    def _ingest_file(self, run: _Ingestion, root: Path, file: Path,
                     source_name: Callable[[Path], str] | None) -> None:
        """Load one file and take in its documents; a link leading out of the root fails."""
        name = source_name(file) if source_name is not None else root_relative_name(root, file)
        if escapes_root(root, file):
            run.failed_sources.add(name)
            run.report.failed.append(LoadFailure(
                name, "a link to a file outside the ingest root: not followed"))
            run.total += 1
            run.notify(0, run.total)
            run.notify(1, None)
            return
        result = relabel(load_path(file, self.settings.ingest, run.groups), name)
        if result.failures:
            run.failed_sources.add(result.source)
            run.report.failed.extend(result.failures)
        run.total += max(1, len(result.documents))
        run.notify(0, run.total)
        if not result.documents:
            run.notify(1, None)
        for loaded in result.documents:
            self._ingest_document(run, loaded)

    def _ingest_document(self, run: _Ingestion, loaded: Document) -> None:
        """Admit one loaded document, skip it when unchanged, else chunk it into the pending
        batch (embedded and written once the batch holds `EMBED_FLUSH_CHUNKS` chunks)."""
        doc, refusal = self._admit(loaded, run.access, run.known)
        if refusal is None and doc.id in run.seen:
            refusal = f"duplicate document id {doc.id!r} (also in {run.seen[doc.id]})"
        if refusal is not None:
            run.report.failed.append(LoadFailure(doc.source, refusal))
            run.notify(1, None)
            return
        run.seen[doc.id] = doc.source
        old_hash = run.known.get(doc.id)
        if old_hash == doc.content_hash:
            run.report.unchanged += 1
            run.report.documents.append({"id": doc.id, "outcome": "unchanged"})
            run.notify(1, None)
            return
        chunks = chunk_document(doc, 0, self.counter, self.settings.chunking)
        if not chunks:  # nothing but control characters or markup: nothing to search or cite
            run.report.failed.append(LoadFailure(doc.source, f"document {doc.id!r}: no text "
                                                 "left to index once cleaned"))
            run.notify(1, None)
            return
        run.pending.append(_Pending(doc, chunks, old_hash is not None))
        run.pending_chunks += len(chunks)
        if run.pending_chunks >= EMBED_FLUSH_CHUNKS:
            self._flush(run)

    def _delete_unseen(self, run: _Ingestion, paths: Sequence[Path]) -> int:
        """Delete the stored documents under `paths` this ingest did not meet (a sync), except
        those of sources that failed to load and those the caller may not write; how many."""
        # the roots' names, and their absolute paths (how knowledge bases built before
        # root-relative names named files: a sync moves them over)
        roots = [root_relative_name(Path(p), Path(p)) for p in paths] + [
            normalized_source(Path(p)) for p in paths]
        deleted = 0
        for stored in self.store.list_documents(sources=roots):
            if (
                stored.id not in run.seen
                and stored.source not in run.failed_sources
                and run.access.may_write(stored.groups)
                and self.store.delete_document(stored.id)
            ):
                deleted += 1
        return deleted

    def _admit(self, doc: Document, access: Access, known: Mapping[str, str]
               ) -> tuple[Document, str | None]:
        """The document as the caller may write it (id namespaced), or why not: its groups
        (a JSONL row's own) are not the caller's to write, or its id holds a document the
        caller may not write. Both refusals read the same whether that document is hidden
        or not, so a refusal is no existence oracle. `known` (the stored ids, already read for
        the content hashes) spares a read for every new id."""
        if access.everything:
            return doc, None
        try:
            groups = access.write_groups(doc.groups, f"document {doc.id!r}")
        except InputError as exc:
            return doc, str(exc)
        doc = replace(doc, id=access.document_id(doc.id, groups), groups=groups)
        existing = self.store.get_document(doc.id) if doc.id in known else None
        if existing is not None and not access.may_write(existing.groups):
            return doc, f"document {doc.id!r}: not writable by this key"
        return doc, None

    def _flush(self, run: _Ingestion) -> None:
        """Embed the pending batch's chunks (reusing stored vectors of equal texts) and write
        each of its documents in its own transaction."""
        pending, run.pending, run.pending_chunks = run.pending, [], 0
        if not pending:
            return
        report = run.report
        wanted = {c.text_hash: c.embedding_text for p in pending for c in p.chunks}
        vectors = {} if run.fresh else self.store.vectors_by_text_hash(wanted)
        if run.reuse is not None:
            vectors.update(run.reuse.vectors_by_text_hash([h for h in wanted
                                                           if h not in vectors]))
        missing_set = set(self._embed_missing(wanted, vectors))
        report.chunks_embedded += len(missing_set)
        for item in pending:
            doc = item.document
            try:
                self._write(doc, item.chunks, vectors)
            except StoreUnavailable:
                raise  # disk full, read-only, corrupt: every later write would fail too
            except StoreError as exc:
                report.failed.append(LoadFailure(doc.source, str(exc)))
                run.notify(1, None)
                continue
            if item.existed:
                report.updated += 1
            else:
                report.added += 1
            report.documents.append({"id": doc.id,
                                     "outcome": "updated" if item.existed else "added"})
            report.chunks_written += len(item.chunks)
            report.flagged.extend(
                {"doc_id": doc.id, "source": doc.source, "chunk": c.index, "flags": list(c.flags)}
                for c in item.chunks if c.flags
            )
            report.chunks_reused += sum(1 for c in item.chunks if c.text_hash not in missing_set)
            run.notify(1, None)

    def _embed_missing(self, texts: Mapping[str, str], vectors: dict[str, np.ndarray]
                       ) -> list[str]:
        """Embed the texts (keyed by text hash) that `vectors` lacks, adding their vectors to
        it; the hashes embedded."""
        missing = [h for h in texts if h not in vectors]
        if missing:
            embedded = self.embedder.embed([texts[h] for h in missing])
            vectors.update(zip(missing, embedded, strict=True))
        return missing

    def _write(self, doc: Document, chunks: Sequence[Chunk], vectors: Mapping[str, np.ndarray],
               restore: tuple[int, float, float] | None = None) -> None:
        """Write a document with its chunks, their vectors (by text hash) and the BM25 term
        counts of each chunk and of the whole document."""
        self.store.write_document(
            doc, chunks, np.stack([vectors[c.text_hash] for c in chunks]),
            [term_frequencies(c.embedding_text) for c in chunks],
            term_frequencies(f"{doc.title}\n{doc.text}"), restore=restore)

    # --- moving between backends -------------------------------------------------------------

    def migrate(self, to: str, progress: ProgressCallback | None = None) -> MigrationReport:
        """Copy this knowledge base into backend `to` (`ragtune kb migrate --to postgres`):
        documents with their chunks, vectors and term counts as stored, versions, history,
        traces and provenance (`ragtune.store.copy`), then verify the copy. Verified, the
        knowledge base moves to it, and the old store is kept beside it, renamed
        (`store.sqlite.migrated-<time>`); otherwise nothing changes and the report says what
        differs. Run again after an interruption: what was copied is skipped."""
        if not self.exists():
            raise InputError(f"no knowledge base {self.name!r} to migrate")
        source_backend, target_backend = self._backend, store_backend(to)
        if source_backend.name == to:
            raise InputError(f"knowledge base {self.name!r} is already on {to}")
        marker = target_backend.path(self.path)
        had_marker = marker.exists()
        target = target_backend.open(self.path, self.settings.store.model_copy(
            update={"backend": to}))
        try:
            copied = copy_store(self.store, target, progress)
        except BaseException:
            target.close()
            if not had_marker:
                marker.unlink(missing_ok=True)
            raise
        report = MigrationReport(self.name, source_backend.name, to, str(target.path), copied)
        if not copied.verified:
            target.close()
            if not had_marker:
                marker.unlink(missing_ok=True)
            return report
        self.close()
        aside = source_backend.path(self.path)
        kept = aside.with_name(f"{aside.name}.migrated-{time.strftime('%Y%m%d-%H%M%S')}")
        aside.rename(kept)
        report.set_aside = str(kept)
        self._store = target
        return report

    # --- health -----------------------------------------------------------------------------

    def check(self, repair: bool = False) -> CheckReport:
        """Check the store (the backend's integrity checks, our invariants); with `repair`,
        mend it: first in place (indexes rebuilt from the tables), and when tables themselves
        are damaged, into a new store built from every row still readable — chunks, vectors
        and term counts re-derived from the documents' text — with the damaged one kept
        beside it. Nothing is deleted; what could not be read is counted."""
        path = self.store_path
        if not self.exists():
            raise InputError(f"no knowledge base {self.name!r} (no {path})")
        report = CheckReport(str(path))
        try:
            report.problems = self.store.check()
        except StoreUnavailable as exc:  # too damaged to open
            self.close()
            report.problems = [str(exc)]
        if not report.problems or not repair:
            report.documents = self._count_documents()
            return report
        report.repaired = True
        if self._store is not None:
            try:
                self.store.repair_indexes()
                if not self.store.check():
                    report.action = "reindexed"
                    report.documents = self._count_documents()
                    return report
            except StoreError:
                pass  # table damage: rebuild below
        self.close()
        self._rebuild(report)
        report.remaining = self.store.check()
        report.documents = self._count_documents()
        return report

    def _count_documents(self) -> int:
        try:
            return self.store.stats().documents
        except StoreError:
            return 0

    def _rebuild(self, report: CheckReport) -> None:
        """Set the damaged store aside and build a new one where it was, from its readable
        rows: documents re-chunked (salvaged vectors reused by text hash, the rest embedded),
        written back with their versions and timestamps, then their history and the traces."""
        aside, rows = self._backend.salvage(self.store_path)
        report.action, report.set_aside = "rebuilt", str(aside)
        # chunks and vectors are derived (rebuilt below from the documents): only lost rows of
        # what cannot be derived are reported
        derived = ("chunks", "vectors")
        report.lost = {t: n for t, n in rows.lost.items() if t not in derived}
        report.unreadable = [t for t in rows.unreadable if t not in derived]
        wanted = self.provenance()
        for key in ("embedder", "embedding_dim", "tokenizer", "chunk_max_tokens",
                    "chunk_overlap_tokens"):
            if key in rows.meta and rows.meta[key] != wanted[key]:
                raise ConfigError(
                    f"{aside} was built with {key}={rows.meta[key]!r} but the settings give "
                    f"{wanted[key]!r}: repair with the settings it was built with")
        meta = {k: v for k, v in rows.meta.items() if k != "generation"}
        self.store.set_meta({**wanted, "created_at": str(time.time()),  # a new, empty store
                             INJECTION_RULES_KEY: RULES_VERSION, **meta})
        vectors = dict(rows.vectors)
        for salvaged in rows.documents:
            chunks = chunk_document(salvaged.document, 0, self.counter, self.settings.chunking)
            self._embed_missing({c.text_hash: c.embedding_text for c in chunks}, vectors)
            self._write(salvaged.document, chunks, vectors, restore=salvaged.restore)
        self.store.restore_history(rows.versions, rows.traces)

    # --- documents --------------------------------------------------------------------------

    def ingest_records(self, records: Sequence[Mapping[str, Any]],
                       groups: Iterable[str] | None = None, source: str = "records",
                       access: Access | None = None) -> IngestReport:
        """Ingest documents given as records (`id`, `text`, optional `title`, `groups` and
        metadata fields: the JSONL corpus row shape) with the source name `source`. A record
        without `groups` goes into `groups` (default: the caller's own). The record's id is
        the document id (namespaced for a caller that is not the operator, see
        `ragtune.access`); a record with the same id and text again is unchanged.

        Every record's groups are checked before anything is written: one the caller may not
        write into refuses the whole call (`AccessDenied`)."""
        import json
        import tempfile

        access = access or OPERATOR
        for record in records:
            wanted = record.get("groups")
            access.write_groups(wanted if isinstance(wanted, list) else groups,
                                f"document {str(record.get('_id', record.get('id', '')))!r}")
        target = access.write_groups(groups, "ingest")

        with tempfile.TemporaryDirectory(prefix="ragtune-records-") as tmp:
            path = Path(tmp) / "records.jsonl"
            with path.open("w", encoding="utf-8") as fh:
                for record in records:
                    fh.write(json.dumps(dict(record), ensure_ascii=False) + "\n")
            return self.ingest([path], groups=target, source_name=lambda _: source,
                               access=access)

    def copy_documents(self, source: KnowledgeBase,
                       progress: ProgressCallback | None = None) -> IngestReport:
        """Bring this knowledge base in line with `source`'s documents, chunked and embedded by
        this one's settings: a trial copy with other chunking or another embedder. Documents
        already copied at the same content are skipped, those `source` no longer holds are
        deleted. With the same embedder, the source's vectors of equal chunk texts are reused,
        not embedded."""
        self._check_provenance()
        same = source.embedder.name == self.embedder.name
        run = _Ingestion(OPERATOR, (), self.store.document_hashes(),
                         progress or (lambda done, total: None),
                         reuse=source.store if same else None)
        started = time.perf_counter()
        stored = source.documents()
        run.notify(0, len(stored))
        with self.store.bulk_load() if not run.known else contextlib.nullcontext():
            for doc in stored:
                exported = source.store.export_document(doc.id)
                if exported is not None:
                    self._ingest_document(run, exported)
            self._flush(run)
        gone = set(run.known) - {doc.id for doc in stored}
        run.report.deleted = sum(self.store.delete_document(doc_id) for doc_id in gone)
        run.report.seconds = time.perf_counter() - started
        return run.report

    def rebuild(self, chunking: ChunkingSettings | None = None, embedder: str | None = None,
                progress: ProgressCallback | None = None) -> IngestReport:
        """Re-chunk (new `chunking`) and re-embed (new `embedder`, e.g. `local:FOLDER` of a
        tuned one) this knowledge base in place, from the stored document texts, and adopt the
        new settings. Only what changed is written: with a new chunking alone, a document
        whose chunks come out the same is left as it is (`unchanged`) and chunk texts already
        embedded keep their vectors; a new embedder re-embeds every chunk. A changed document
        gets a new version."""
        sections: dict[str, dict[str, Any]] = {}
        if chunking is not None and chunking != self.settings.chunking:
            sections["chunking"] = chunking.model_dump()
        if embedder is not None and embedder != self.settings.embedder.name:
            sections["embedder"] = {"name": embedder}
        report = IngestReport()
        if not sections:
            return report
        started = time.perf_counter()
        target = KnowledgeBase(self.name, self.settings.adopting(sections), store=self.store)
        target._adopted = target._given  # not what is recorded: that is about to change
        run = _Ingestion(OPERATOR, (), {}, progress or (lambda done, total: None),
                         fresh="embedder" in sections)
        stored = self.documents()
        run.notify(0, len(stored))
        for doc in stored:
            exported = self.store.export_document(doc.id)
            if exported is None:
                continue
            chunks = chunk_document(exported, 0, target.counter, target.settings.chunking)
            before = [(c.start, c.end) for c in self.store.chunks_of(doc.id)]
            if not run.fresh and before == [(c.start, c.end) for c in chunks]:
                run.report.unchanged += 1
                run.report.documents.append({"id": doc.id, "outcome": "unchanged"})
                run.notify(1, None)
                continue
            run.pending.append(_Pending(exported, chunks, True))
            run.pending_chunks += len(chunks)
            if run.pending_chunks >= EMBED_FLUSH_CHUNKS:
                target._flush(run)
        target._flush(run)
        self.store.set_meta({**target.provenance(),
                             ADOPTED_KEY: json.dumps(deep_merge(self.adopted_settings, sections),
                                                     sort_keys=True)})
        self._adopted, self._embedder = None, None
        run.report.seconds = time.perf_counter() - started
        return run.report

    def documents(self) -> list[StoredDocument]:
        """Every document's current version."""
        return self.store.list_documents()

    def document(self, doc_id: str) -> StoredDocument:
        """One document; `InputError` if there is no such id."""
        doc = self.store.get_document(doc_id)
        if doc is None:
            raise InputError(f"no document {doc_id!r} in knowledge base {self.name!r}")
        return doc

    def remove(self, doc_ids: Iterable[str], access: Access | None = None) -> list[str]:
        """Delete documents by id; returns the ids that existed and were deleted. A document
        the caller (`access`; None: the operator) may not write is left alone, exactly as a
        missing one."""
        access = access or OPERATOR
        removed = []
        for doc_id in doc_ids:
            doc = self.store.get_document(doc_id)
            if doc is None or not access.may_write(doc.groups):
                continue
            if self.store.delete_document(doc_id):
                removed.append(doc_id)
        return removed


def root_relative_name(root: Path, file: Path) -> str:
    """How a file ingested from `root` is named: its path under the root, prefixed by the
    root's own name (`handbook/hr/leave.md`); a root that is a file is named by itself. A link
    inside the root is named by where it is, not where it leads; bytes of a file name that are
    not UTF-8 become U+FFFD (the name must be text: JSON, the store)."""
    import os

    base = Path(os.path.normpath(root.expanduser().absolute()))
    here = Path(os.path.normpath(file.expanduser().absolute()))
    name = base.name if here == base else f"{base.name}/{here.relative_to(base).as_posix()}"
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
