"""Documents: list, read (with history and passages), ingest JSON records or upload files,
delete. A document the key may not read answers 404, exactly like one that does not exist; a
write goes only where the key may write (`ragtune.access`), under the key's namespace."""

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from ragtune.access import Access
from ragtune.kb import IngestReport, KnowledgeBase
from ragtune.service.deps import IngestAccess, ReadAccess, State
from ragtune.service.errors import ApiError
from ragtune.service.metrics import Metrics
from ragtune.service.schemas import UPLOAD_PATH, IngestRequest
from ragtune.store import StoredDocument

router = APIRouter(tags=["documents"])


@router.get("/v1/documents")
def list_documents(access: ReadAccess, state: State, kb: str | None = None) -> dict[str, Any]:
    base = state.open_kb(kb)
    docs = [d for d in base.documents() if access.may_read(d.groups)]
    return {"kb": base.name, "documents": [_doc(d) for d in docs]}


@router.get("/v1/documents/{doc_id:path}")
def get_document(doc_id: str, access: ReadAccess, state: State, kb: str | None = None,
                 text: bool = False) -> dict[str, Any]:
    """One document's current version (`text=true`: with its full text) and history."""
    base = state.open_kb(kb)
    doc = base.store.get_document(doc_id)
    if doc is None or not access.may_read(doc.groups):  # hidden reads exactly as missing
        raise ApiError(404, "not_found", f"no document {doc_id!r}")
    out = _doc(doc) | {"versions": [
        {"version": v.version, "event": v.event, "chars": v.chars, "chunks": v.chunks,
         "created_at": v.created_at} for v in base.store.versions(doc_id)]}
    if text:
        out["text"] = base.store.document_text(doc_id) or ""
    return out


@router.get("/v1/chunks/{chunk_id:path}")
def get_chunk(chunk_id: str, access: ReadAccess, state: State,
              kb: str | None = None) -> dict[str, Any]:
    """One passage (what a citation's `chunk_id` points at), if the key may see it."""
    base = state.open_kb(kb)
    found = base.store.get_chunks([chunk_id])
    doc = base.store.get_document(found[0].doc_id) if found else None
    if doc is None or not access.may_read(doc.groups):  # hidden reads exactly as missing
        raise ApiError(404, "not_found", f"no passage {chunk_id!r}")
    chunk = found[0]
    return {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "title": doc.title,
            "heading": chunk.heading, "text": chunk.text, "index": chunk.index,
            "start": chunk.start, "end": chunk.end, "version": chunk.version,
            "page": chunk.page, "flags": list(chunk.flags)}


@router.delete("/v1/documents/{doc_id:path}")
def delete_document(doc_id: str, access: IngestAccess, state: State,
                    kb: str | None = None) -> dict[str, Any]:
    """Delete a document the key may write (`ragtune.access`); any other is a 404,
    exactly like a missing one."""
    deleted = state.open_kb(kb).remove([doc_id], access)
    if not deleted:
        raise ApiError(404, "not_found", f"no document {doc_id!r}")
    return {"deleted": deleted}


@router.post("/v1/documents")
def ingest_documents(body: IngestRequest, access: IngestAccess, state: State
                     ) -> dict[str, Any]:
    """JSON records in (source `api`); each document goes into the groups it names, else
    the key's, under the key's namespace (`documents` in the answer: the stored ids)."""
    base = state.open_kb(body.kb)
    rows = [doc.record() for doc in body.documents]
    report = base.ingest_records(rows, source="api", access=access)
    return _ingest_summary(base, [report], state.metrics)


@router.post(UPLOAD_PATH)
def upload_documents(
    access: IngestAccess, state: State,
    files: Annotated[list[UploadFile], File(description="one or more files: .md .txt "
                                            ".html .pdf .docx .json, or .jsonl rows")],
    groups: Annotated[str | None, Form(max_length=2000, description="comma-separated "
                                       "access groups (default: the key's)")] = None,
    kb: Annotated[str | None, Form(max_length=200)] = None,
) -> dict[str, Any]:
    """Upload files (multipart). Each is recorded as `upload:<file name>` (its document id,
    so uploading the same name again makes a new version); JSONL files hold records. The
    whole request is limited by `service.max_upload_bytes`, each file by
    `ingest.max_file_bytes`."""
    base = state.open_kb(kb)
    target = access.write_groups(groups.split(",") if groups is not None else None,
                                 "upload")  # refused before anything is read
    report = _ingest_uploads(base, files, target, access)
    return _ingest_summary(base, [report], state.metrics)


def _doc(d: StoredDocument) -> dict[str, Any]:
    return {"id": d.id, "title": d.title, "source": d.source, "format": d.format,
            "version": d.version, "chunks": d.chunks, "groups": list(d.groups),
            "metadata": dict(d.metadata)}


def _ingest_summary(base: KnowledgeBase, reports: list[IngestReport], metrics: Metrics
                    ) -> dict[str, Any]:
    """The reports added up (what an ingest route answers), counted in the metrics."""
    total: dict[str, Any] = {"kb": base.name}
    for name in ("added", "updated", "unchanged", "chunks_written", "chunks_embedded"):
        total[name] = sum(getattr(r, name) for r in reports)
    total["failed"] = [{"document": f.path, "error": f.error} for r in reports
                       for f in r.failed]
    total["documents"] = [d for r in reports for d in r.documents]
    for outcome in ("added", "updated", "unchanged"):
        metrics.observe_ingest(outcome, total[outcome])
    metrics.observe_ingest("failed", len(total["failed"]))
    return total


def _ingest_uploads(base: KnowledgeBase, files: Sequence[UploadFile], groups: tuple[str, ...],
                    access: Access) -> IngestReport:
    """Ingest uploaded files under their own names (`upload:<name>`), into `groups`."""
    names = [_upload_name(f.filename) for f in files]
    if len(set(names)) != len(names):
        raise ApiError(422, "invalid_request", "two uploaded files have the same name")
    with _saved(files, names) as folder:
        return base.ingest([folder / n for n in names], groups=groups,
                           source_name=_upload_source, access=access)


@contextmanager
def _saved(files: Sequence[UploadFile], names: list[str]) -> Iterator[Path]:
    """The uploads written into a temporary folder under `names` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="ragtune-upload-") as tmp:
        folder = Path(tmp)
        for name, upload in zip(names, files, strict=True):
            with (folder / name).open("wb") as out:
                shutil.copyfileobj(upload.file, out)
        yield folder


def _upload_source(path: Path) -> str:
    return f"upload:{path.name}"


def _upload_name(filename: str | None) -> str:
    """An uploaded file's own name, never a path: the client's folders are dropped."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or name.startswith(".") or len(name) > 200 or any(
            ord(c) < 32 for c in name):
        raise ApiError(422, "invalid_request", f"unusable file name {filename!r}")
    return name
