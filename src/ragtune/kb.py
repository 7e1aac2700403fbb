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

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.access import OPERATOR, Access
from ragtune.config import Settings
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
from ragtune.store import SQLiteStore, Store, StoredDocument

# Chunks collected before one embedding call: large enough that sorting by length keeps padding
# low, small enough that progress and commits stay frequent.
EMBED_FLUSH_CHUNKS = 512
INJECTION_RULES_KEY = "injection_rules"

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
        self.settings = settings
        self.path = settings.kb_path(name)
        self._store = store
        self._embedder = embedder
        self._counter = counter

    @classmethod
    def open(cls, name: str | None = None, settings: Settings | None = None) -> KnowledgeBase:
        """The knowledge base `name` under the settings' home (created on first write)."""
        settings = settings or Settings.load()
        return cls(name or settings.kb, settings)

    # --- lazily built parts -----------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = SQLiteStore(self.path / "store.sqlite")
        return self._store

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
        return self._store is not None or (self.path / "store.sqlite").exists()

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
        from ragtune import __version__

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
        report = IngestReport()
        access = access or OPERATOR
        group_tuple = access.write_groups(groups, "ingest")
        exclude = self.settings.ingest.exclude if exclude is None else tuple(exclude)
        for path in paths:
            if not Path(path).exists():
                raise InputError(f"{path}: no such file or folder")
        self._check_provenance()
        known = self.store.document_hashes()
        seen: dict[str, str] = {}
        failed_sources: set[str] = set()
        pending: list[_Pending] = []
        pending_chunks = 0
        notify = progress or (lambda done, total: None)
        total = 0

        for root in paths:
            for file in iter_source_files(Path(root), include, exclude):
                name = (source_name(file) if source_name is not None
                        else root_relative_name(Path(root), file))
                if escapes_root(Path(root), file):
                    failed_sources.add(name)
                    report.failed.append(LoadFailure(
                        name, "a link to a file outside the ingest root: not followed"))
                    total += 1
                    notify(0, total)
                    notify(1, None)
                    continue
                result = relabel(load_path(file, self.settings.ingest, group_tuple), name)
                if result.failures:
                    failed_sources.add(result.source)
                    report.failed.extend(result.failures)
                total += max(1, len(result.documents))
                notify(0, total)
                if not result.documents:
                    notify(1, None)
                for loaded in result.documents:
                    doc, refusal = self._admit(loaded, access, known)
                    if refusal is not None:
                        report.failed.append(LoadFailure(loaded.source, refusal))
                        notify(1, None)
                        continue
                    if doc.id in seen:
                        report.failed.append(
                            LoadFailure(doc.source, f"duplicate document id {doc.id!r} "
                                                    f"(also in {seen[doc.id]})")
                        )
                        notify(1, None)
                        continue
                    seen[doc.id] = doc.source
                    old_hash = known.get(doc.id)
                    if old_hash == doc.content_hash:
                        report.unchanged += 1
                        report.documents.append({"id": doc.id, "outcome": "unchanged"})
                        notify(1, None)
                        continue
                    chunks = chunk_document(doc, 0, self.counter, self.settings.chunking)
                    pending.append(_Pending(doc, chunks, old_hash is not None))
                    pending_chunks += len(chunks)
                    if pending_chunks >= EMBED_FLUSH_CHUNKS:
                        self._flush(pending, report, notify)
                        pending, pending_chunks = [], 0
        self._flush(pending, report, notify)

        if sync:
            # the roots' names, and their absolute paths (how knowledge bases built before
            # root-relative names named files: a sync moves them over)
            roots = [root_relative_name(Path(p), Path(p)) for p in paths] + [
                normalized_source(Path(p)) for p in paths]
            for stored in self.store.list_documents(sources=roots):
                if (
                    stored.id not in seen
                    and stored.source not in failed_sources
                    and access.may_write(stored.groups)
                    and self.store.delete_document(stored.id)
                ):
                    report.deleted += 1
        report.seconds = time.perf_counter() - started
        return report

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

    def _flush(self, pending: list[_Pending], report: IngestReport, notify: ProgressCallback
               ) -> None:
        if not pending:
            return
        wanted = {c.text_hash: c.embedding_text for p in pending for c in p.chunks}
        vectors = self.store.vectors_by_text_hash(wanted)
        missing = [h for h in wanted if h not in vectors]
        missing_set = set(missing)
        if missing:
            embedded = self.embedder.embed([wanted[h] for h in missing])
            vectors.update(zip(missing, embedded, strict=True))
        report.chunks_embedded += len(missing)
        for item in pending:
            matrix = np.stack([vectors[c.text_hash] for c in item.chunks])
            terms = [term_frequencies(c.embedding_text) for c in item.chunks]
            doc = item.document
            doc_terms = term_frequencies(f"{doc.title}\n{doc.text}")
            try:
                self.store.write_document(doc, item.chunks, matrix, terms, doc_terms)
            except StoreUnavailable:
                raise  # disk full, read-only, corrupt: every later write would fail too
            except StoreError as exc:
                report.failed.append(LoadFailure(item.document.source, str(exc)))
                notify(1, None)
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
            notify(1, None)

    # --- health -----------------------------------------------------------------------------

    def check(self, repair: bool = False) -> CheckReport:
        """Check the store (SQLite's and FTS5's integrity checks, our invariants); with
        `repair`, mend it: first in place (indexes rebuilt from the tables), and when tables
        themselves are damaged, into a new file built from every row still readable — chunks,
        vectors and the lexical index re-derived from the documents' text — with the damaged
        file kept beside it. Nothing is deleted; what could not be read is counted."""
        path = self.path / "store.sqlite"
        if not path.exists():
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
        self._rebuild(path, report)
        report.remaining = self.store.check()
        report.documents = self._count_documents()
        return report

    def _count_documents(self) -> int:
        try:
            return self.store.stats().documents
        except StoreError:
            return 0

    def _rebuild(self, path: Path, report: CheckReport) -> None:
        import json

        from ragtune.documents.records import Page
        from ragtune.store.repair import salvage, set_aside

        aside = set_aside(path)
        report.action, report.set_aside = "rebuilt", str(aside)
        rows = salvage(aside)
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
        store = self.store  # a new, empty file at `path`
        meta = {k: v for k, v in rows.meta.items() if k != "generation"}
        store.set_meta({**wanted, "created_at": str(time.time()),
                        INJECTION_RULES_KEY: RULES_VERSION, **meta})
        vectors = {h: np.frombuffer(b, dtype="<f4") for h, b in rows.vectors.items()}
        for row in rows.documents:
            try:
                pages = tuple(Page(*p) for p in json.loads(str(row["pages"])))
                doc = Document(
                    id=str(row["id"]), text=str(row["text"]), source=str(row["source"]),
                    format=str(row["format"]), title=str(row["title"]),
                    metadata=json.loads(str(row["metadata"])), pages=pages,
                    groups=tuple(json.loads(str(row["groups"]))))
            except (ValueError, TypeError):
                report.lost["documents"] = report.lost.get("documents", 0) + 1
                continue
            chunks = chunk_document(doc, 0, self.counter, self.settings.chunking)
            missing = [c for c in chunks if c.text_hash not in vectors]
            if missing:
                embedded = self.embedder.embed([c.embedding_text for c in missing])
                vectors.update(zip((c.text_hash for c in missing), embedded, strict=True))
            store.write_document(
                doc, chunks, np.stack([vectors[c.text_hash] for c in chunks]),
                [term_frequencies(c.embedding_text) for c in chunks],
                term_frequencies(f"{doc.title}\n{doc.text}"),
                restore=(int(row["version"]), float(row["created_at"]),
                         float(row["updated_at"])))
        if isinstance(store, SQLiteStore):
            store.restore_history(rows.versions, rows.traces)

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
