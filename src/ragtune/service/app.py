"""The HTTP API (FastAPI): thin routes over the library, keys and access groups enforced.

    >>> app = create_app(Settings.load())              # what `ragtune serve` runs
    >>> # GET /healthz; /v1/documents, /v1/search, /v1/ask with "Authorization: Bearer rt_..."

Every route under `/v1/` needs a key (`ragtune keys create`); its scope decides what the route
may do and its groups what the caller sees: retrieval, answers, citations and document listings
only ever come from documents without groups or in one of the key's groups. A document the key
may not see answers 404, exactly like one that does not exist. Errors have one shape:
`{"error": {"type": "...", "message": "..."}}`. (No `from __future__ import annotations` here:
FastAPI reads the routes' annotations at runtime, and they name closures of `create_app`.)

Routes: health and readiness; documents (list, get with history, passages, ingest JSON records
or upload files, delete); search; ask (JSON or server-sent events); the OpenAI-compatible
`/v1/models` + `/v1/chat/completions` (each knowledge base is a model `kb:<name>`); the
checklist, `assess` and the lab reports; traces (admin) and `/metrics`; the web page at `/`.
Every answer's generation goes through one queue on the shared local model (batching the
answers that wait together) and, sampled, to the trace recorder (`ragtune.evaluation.online`),
which scores it off the request path.
"""


import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from queue import Queue
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragtune.config import Settings
from ragtune.errors import (
    AccessDenied,
    ConfigError,
    InputError,
    RagtuneError,
    StoreUnavailable,
)
from ragtune.evaluation.online import TraceRecorder, trace_to_dict
from ragtune.kb import KnowledgeBase
from ragtune.lab.checklist import ChecklistAnswers
from ragtune.service.batching import GenerationQueue
from ragtune.service.keys import KeyRecord, KeyStore, key_id_of
from ragtune.service.metrics import Metrics
from ragtune.store import Trace

MAX_BODY_BYTES = 1_000_000  # the schema's bound on a text; service.max_body_bytes limits bodies
MODEL_PREFIX = "kb:"  # OpenAI model names: kb:<knowledge base>
log = logging.getLogger("ragtune.service")
UPLOAD_PATH = "/v1/documents/files"
STATIC = Path(__file__).parent / "static"  # the web page: plain files, no build step


def _page_headers() -> dict[str, str]:
    """The web page loads only its own files (no inline script, no framing by other sites);
    the one exception is a lab report's own style and print script, by hash: a report opened
    in a blob: frame or tab runs under this policy."""
    from ragtune.lab.report import inline_hashes

    style, script = inline_hashes()
    return {"Content-Security-Policy": f"default-src 'self'; style-src 'self' {style}; "
            f"script-src 'self' {script}; frame-src 'self' blob:; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


PAGE_HEADERS = _page_headers()


class ApiError(Exception):
    """An error with its HTTP status and stable `type` (and headers, e.g. `Retry-After`)."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None
           ) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status,
                        headers=headers)


MAX_JSON_DEPTH = 32  # no request of this API nests deeper; a deeper body is refused


def _json_problem(value: Any) -> str | None:
    """What makes a parsed JSON body unusable, or None. Walked without recursion, so a body
    nested thousands deep is refused, not a crash: nesting over `MAX_JSON_DEPTH`, a string
    with a lone surrogate (`"\\ud800"` is valid JSON but no Unicode text: nothing downstream
    can encode it), a number that is not finite (`NaN`, `1e999`) or an integer too large to
    use."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return "text holds a lone surrogate (not valid Unicode)"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "numbers must be finite"
        elif isinstance(item, int):
            if abs(item) >= 2**63:
                return "integer out of range"
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


class _Body(BaseModel):
    """A request body: bounded nesting, finite numbers, Unicode text (422 otherwise, never a
    server error)."""

    @model_validator(mode="before")
    @classmethod
    def _usable(cls, data: Any) -> Any:
        problem = _json_problem(data)
        if problem:
            raise ValueError(problem)
        return data


class ErrorBody(BaseModel):
    """Every error: `{"error": {"type": "...", "message": "..."}}`."""

    error: dict[str, str] = Field(description="type (stable: invalid_request, unauthorized, "
                                  "forbidden, not_found, too_large, rate_limited, ...) and a "
                                  "message for people")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in (
        (400, "bad request"), (401, "no or unknown key"),
        (403, "the key lacks the scope, or may not write there"),
        (404, "not found (or not visible to the key)"), (408, "body not received in time"),
        (413, "body too large"), (422, "invalid request"),
        (429, "rate limited (see Retry-After)"))}
STREAMED: dict[int | str, dict[str, Any]] = {200: {
    "description": "JSON, or server-sent events with `\"stream\": true`",
    "content": {"application/json": {}, "text/event-stream": {}}}}


class SearchRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000)
    kb: str | None = None
    k: int = Field(5, ge=1, le=50)
    mode: str = Field("hybrid", pattern="^(hybrid|bm25|dense)$")


class DocumentIn(_Body):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=300,
                    pattern=r"^[^\s/\\\x00-\x1f\x7f][^\\\x00-\x1f\x7f]*$",
                    description="the document's id (stored under the key's namespace, see "
                    "the README's security section)")
    text: str = Field(min_length=1, max_length=MAX_BODY_BYTES)
    title: str = Field("", max_length=500)
    groups: list[str] | None = Field(None, description="access groups (default: the key's)")
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


class IngestRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    kb: str | None = None
    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


MAX_QUESTION_CHARS = 2000  # /v1/ask's question; the chat endpoint's last user message too
MAX_MESSAGE_CHARS = 32_000


class ChatMessage(_Body):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = Field(None, max_length=MAX_MESSAGE_CHARS)

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(str(p.get("text", "")) for p in self.content
                            if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Body):
    """The OpenAI chat-completions body; fields this service does not use are ignored, as
    OpenAI clients send many (temperature, user, ...)."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(max_length=300)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False


class AssessRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    answers: ChecklistAnswers
    report: str | None = Field(None, max_length=200, description="a lab report's name "
                               "(GET /v1/reports): its measurements as evidence")


class EvaluateRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    kb: str | None = None
    arch: str = Field("rag", pattern="^(base|rag)$", description="rag: retrieval + answer; "
                      "base: the model alone (adapters are chosen server-side, by `ragtune "
                      "eval`, never by path from a client)")
    k: int | None = Field(None, ge=1, le=20)
    cases: list[dict[str, Any]] = Field(min_length=1, max_length=50, description="evaluation "
                                        "cases as in a cases.jsonl file: question, answers, "
                                        "gold_docs, ...")


class AskRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    kb: str | None = None
    k: int | None = Field(None, ge=1, le=20)
    stream: bool = Field(False, description="server-sent events: `token` events with the "
                         "checked answer (sent once generation and the checks are done: a "
                         "refused draft is never sent), then one `answer` event (the answer "
                         "with its citations: the one to show)")


class BodyLimit:
    """ASGI middleware: reads every request body whole before the app sees it, and refuses
    one over `limit_for(path)` bytes with 413 (an announced length before reading, chunks as
    they come) and one that takes over `timeout` seconds to arrive with 408, so a client that
    sends slowly holds no worker (the header read is bounded by `HeaderTimeoutH11`)."""

    def __init__(self, app: Any, limit_for: Callable[[str], int], timeout: float = 30.0
                 ) -> None:
        self.app, self.limit_for, self.timeout = app, limit_for, timeout

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_large = _error(413, "too_large", f"request body over {limit} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await too_large(scope, receive, send)
            return
        parts, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.timeout
        while more:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                await _error(408, "timeout", f"request body not received within "
                             f"{self.timeout:g} s")(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            more = message.get("more_body", False)
            if size > limit:
                await too_large(scope, receive, send)
                return
        body = b"".join(parts)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's HTTP/1.1 protocol with a bound on the header read: a connection that has not
    sent a whole request head within `seconds` of opening (or of its last response) is
    closed, so slow clients cannot hold connections open (uvicorn bounds only idle keep-alive).

        >>> uvicorn.run(app, http=header_timeout_protocol(10.0))
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(seconds, self._head_late)

        def _head_late(self) -> None:
            # IDLE: no whole request head since the timer was armed
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutH11


def check_bind(host: str, keys: KeyStore) -> None:
    """Without any active key the server only listens on a loopback address."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not keys.any_active():
        raise ConfigError(f"refusing to listen on {host}: no API key exists; create one with "
                          "`ragtune keys create --scope read` first (or bind 127.0.0.1)")


class RateLimiter:
    """A token bucket per key: `burst` requests at once, `per_minute` sustained."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate, self.burst = per_minute / 60.0, float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)
        self.lock = threading.Lock()

    def wait(self, key_id: str, count: bool = True) -> float:
        """0 when the request may go now (and counts it, unless `count` is false: a look),
        else the seconds until it may."""
        with self.lock:
            now = time.monotonic()
            tokens, then = self.buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1:
                self.buckets[key_id] = (tokens, now)
                return (1 - tokens) / self.rate
            self.buckets[key_id] = (tokens - 1 if count else tokens, now)
            if len(self.buckets) > 100_000:  # guessed ids must not grow this without bound
                self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 600}
            return 0.0


def _rate_limited(wait: float, what: str) -> ApiError:
    return ApiError(429, "rate_limited", f"{what}; retry in {wait:.1f} s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))})


def create_app(settings: Settings, keys: KeyStore | None = None, warm: bool = True
               ) -> FastAPI:
    """The service for one data home. Knowledge bases open on first use and stay open;
    `warm` loads the embedder and the generator in the background (`/readyz` says when)."""
    keys = keys or KeyStore.open(settings)
    limits = settings.service
    limiter = RateLimiter(limits.requests_per_minute, limits.burst)
    # failed logins: per key id (a guessed secret), or per client address (no usable id)
    failures = RateLimiter(limits.failed_logins_per_minute, limits.failed_logins_per_minute)
    metrics = Metrics()

    def stored(trace: Trace) -> None:
        if trace.groundedness is not None:
            metrics.observe_groundedness(trace.groundedness)

    recorder = TraceRecorder(limits.trace_sample_rate, limits.trace_retention_days,
                             limits.trace_max_rows, on_stored=stored)
    ready = threading.Event()
    # No /docs or /redoc: they load their scripts from a CDN (an offline product serves none);
    # the schema itself is at /openapi.json.
    app = FastAPI(title="ragtune", version=_version(), responses=ERRORS, docs_url=None,
                  redoc_url=None,
                  description="Grounded answers from your documents, with citations, "
                              "API keys and per-document access groups.")
    app.state.recorder = recorder  # tests and shutdown: recorder.flush()
    kbs: dict[str, KnowledgeBase] = {}
    kb_lock = threading.Lock()
    generations = GenerationQueue(limits.max_batch)  # the shared local model's one worker
    app.state.generations = generations

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(AccessDenied)
    async def _access_denied(request: Request, exc: AccessDenied) -> JSONResponse:
        return _error(403, "forbidden", str(exc))

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return _error(400, "invalid_request", str(exc))

    @app.exception_handler(ConfigError)
    async def _config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return _error(400, "invalid_request", str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # the whole store is out (disk full, read-only, corrupt): the operator's log has the
        # file and what to do; the client learns the cause, not the server's paths
        log.error("%s", exc)
        return _error(503, "store_unavailable", f"the knowledge store is unavailable "
                      f"({exc.reason}); the write that failed was rolled back")

    @app.exception_handler(RagtuneError)
    async def _ragtune_error(request: Request, exc: RagtuneError) -> JSONResponse:
        return _error(500, "server_error", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _error(422, "invalid_request", f"{where}: {first['msg']}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error")
        return _error(exc.status_code, kind, str(exc.detail))

    # registered first, so inside the observer below: refusals are counted too
    app.add_middleware(BodyLimit, limit_for=lambda path: limits.max_upload_bytes
                       if path == UPLOAD_PATH else limits.max_body_bytes,
                       timeout=limits.body_timeout_s)

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe_request(getattr(route, "path", "(unmatched)"), request.method,
                                response.status_code, time.perf_counter() - started)
        return response

    def caller(request: Request) -> KeyRecord:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "missing 'Authorization: Bearer <key>'")
        client = request.client.host if request.client else "-"
        who = key_id_of(token) or f"address {client}"
        wait = failures.wait(who, count=False)
        if wait:  # too many wrong secrets for this id: not even checked
            raise _rate_limited(wait, "too many failed logins")
        record = keys.verify(token)
        if record is None:
            failures.wait(who)
            raise ApiError(401, "unauthorized", "unknown or revoked key")
        wait = limiter.wait(record.id)
        if wait:
            raise _rate_limited(wait, "too many requests for this key")
        return record

    def needs(scope: str) -> Callable[[KeyRecord], KeyRecord]:
        def check(key: Annotated[KeyRecord, Depends(caller)]) -> KeyRecord:
            if not key.allows(scope):
                raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope")
            return key
        return check

    Reader = Annotated[KeyRecord, Depends(needs("read"))]
    Ingester = Annotated[KeyRecord, Depends(needs("ingest"))]

    def open_kb(name: str | None) -> KnowledgeBase:
        name = name or settings.kb
        with kb_lock:
            kb = kbs.get(name)
            if kb is None:
                kb = KnowledgeBase.open(name, settings)
                if not kb.exists():
                    raise ApiError(404, "not_found", f"no knowledge base {name!r}")
                kbs[name] = kb
        return kb

    def visible(key: KeyRecord, groups: tuple[str, ...]) -> bool:
        return key.access.may_read(groups)

    def groups_of(key: KeyRecord) -> list[str] | None:
        view = key.access.view
        return None if view is None else list(view)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def warm_up() -> None:
        from ragtune.answering.ask import generator_for
        from ragtune.models.embedders import get_embedder

        e = settings.embedder
        get_embedder(e.name, e.batch_size, settings.cache_dir, e.base_url,
                     e.api_key_env).warm_up()
        generator_for(settings).warm_up()
        # the default knowledge base (if built), so the first request does not open it
        with contextlib.suppress(ApiError):
            open_kb(None)
        ready.set()

    if warm:
        threading.Thread(target=warm_up, daemon=True, name="ragtune-warm-up").start()
    else:
        ready.set()

    @app.get("/readyz", tags=["health"], response_model=None)
    def readyz() -> dict[str, Any] | JSONResponse:
        """200 once the models are loaded (503 before: route traffic elsewhere meanwhile)."""
        if not ready.is_set():
            return _error(503, "not_ready", "loading the models")
        return {"status": "ready"}  # nothing more: this route needs no key

    @app.get("/v1/documents", tags=["documents"])
    def list_documents(key: Reader, kb: str | None = None) -> dict[str, Any]:
        base = open_kb(kb)
        docs = [d for d in base.documents() if visible(key, d.groups)]
        return {"kb": base.name, "documents": [_doc(d) for d in docs]}

    def visible_document(base: KnowledgeBase, doc_id: str, key: KeyRecord) -> Any:
        """The document, or 404 when it is missing or the key may not see it (the same)."""
        doc = base.store.get_document(doc_id)
        if doc is None or not visible(key, doc.groups):
            raise ApiError(404, "not_found", f"no document {doc_id!r}")
        return doc

    @app.get("/v1/documents/{doc_id:path}", tags=["documents"])
    def get_document(doc_id: str, key: Reader, kb: str | None = None,
                     text: bool = False) -> dict[str, Any]:
        """One document's current version (`text=true`: with its full text) and history."""
        base = open_kb(kb)
        doc = visible_document(base, doc_id, key)
        out = _doc(doc) | {"versions": [
            {"version": v.version, "event": v.event, "chars": v.chars, "chunks": v.chunks,
             "created_at": v.created_at} for v in base.store.versions(doc_id)]}
        if text:
            out["text"] = base.store.document_text(doc_id) or ""
        return out

    @app.get("/v1/chunks/{chunk_id:path}", tags=["documents"])
    def get_chunk(chunk_id: str, key: Reader, kb: str | None = None) -> dict[str, Any]:
        """One passage (what a citation's `chunk_id` points at), if the key may see it."""
        base = open_kb(kb)
        found = base.store.get_chunks([chunk_id])
        doc = base.store.get_document(found[0].doc_id) if found else None
        if doc is None or not visible(key, doc.groups):  # hidden reads exactly as missing
            raise ApiError(404, "not_found", f"no passage {chunk_id!r}")
        chunk = found[0]
        return {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "title": doc.title,
                "heading": chunk.heading, "text": chunk.text, "index": chunk.index,
                "start": chunk.start, "end": chunk.end, "version": chunk.version,
                "page": chunk.page, "flags": list(chunk.flags)}

    @app.get("/v1/whoami", tags=["keys"])
    def whoami(key: Annotated[KeyRecord, Depends(caller)]) -> dict[str, Any]:
        """The calling key: its id, name, scopes and access groups (the web page adapts)."""
        return {"id": key.id, "name": key.name, "scopes": list(key.scopes),
                "groups": list(key.groups), "sees_everything": key.sees_everything}

    @app.delete("/v1/documents/{doc_id:path}", tags=["documents"])
    def delete_document(doc_id: str, key: Ingester, kb: str | None = None) -> dict[str, Any]:
        """Delete a document the key may write (`ragtune.access`); any other is a 404,
        exactly like a missing one."""
        base = open_kb(kb)
        deleted = base.remove([doc_id], key.access)
        if not deleted:
            raise ApiError(404, "not_found", f"no document {doc_id!r}")
        return {"deleted": deleted}

    def ingest_summary(base: KnowledgeBase, reports: list[Any]) -> dict[str, Any]:
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

    @app.post("/v1/documents", tags=["documents"])
    def ingest_documents(body: IngestRequest, key: Ingester) -> dict[str, Any]:
        """JSON records in (source `api`); each document goes into the groups it names, else
        the key's, under the key's namespace (`documents` in the answer: the stored ids)."""
        base = open_kb(body.kb)
        rows = [{**{k: v for k, v in doc.metadata.items() if k != "groups"}, "_id": doc.id,
                 "title": doc.title, "text": doc.text}
                | ({} if doc.groups is None else {"groups": doc.groups})
                for doc in body.documents]
        return ingest_summary(base, [base.ingest_records(rows, source="api",
                                                         access=key.access)])

    @app.post(UPLOAD_PATH, tags=["documents"])
    def upload_documents(
        key: Ingester,
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
        import tempfile

        base = open_kb(kb)
        target = key.access.write_groups(groups.split(",") if groups is not None else None,
                                         "upload")  # refused before anything is read
        names = [_upload_name(f.filename) for f in files]
        if len(set(names)) != len(names):
            raise ApiError(422, "invalid_request", "two uploaded files have the same name")
        with tempfile.TemporaryDirectory(prefix="ragtune-upload-") as tmp:
            folder = Path(tmp)
            for name, upload in zip(names, files, strict=True):
                with (folder / name).open("wb") as out:
                    shutil.copyfileobj(upload.file, out)
            report = base.ingest([folder / n for n in names], groups=target,
                                 source_name=lambda p: f"upload:{p.name}", access=key.access)
        return ingest_summary(base, [report])

    @app.get("/metrics", tags=["health"], response_model=None,
             responses={200: {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {}}}})
    def metrics_route(key: Annotated[KeyRecord, Depends(needs("admin"))]
                      ) -> PlainTextResponse:
        """Prometheus text format (an admin key without groups: the figures cover every
        tenant; scrape with a bearer token)."""
        if not key.sees_everything:
            raise ApiError(403, "forbidden", "the metrics cover every tenant: only an admin "
                           "key without groups reads them")
        return PlainTextResponse(metrics.render())

    @app.post("/v1/search", tags=["search"])
    def search_route(body: SearchRequest, key: Reader) -> dict[str, Any]:
        from ragtune.retrieval import search

        base = open_kb(body.kb)
        return search(base, body.query, k=body.k, mode=body.mode,
                      groups=groups_of(key)).to_dict()

    def answer_for(base: KnowledgeBase, question: str, key: KeyRecord, route: str,
                   k: int | None = None, on_token: Callable[[str], None] | None = None,
                   generator: Any = None) -> Any:
        """One grounded answer: retrieval here, generation in the shared model's queue
        (batched with the answers waiting beside it), counted in the metrics and handed to
        the trace recorder (sampled, scored off the request)."""
        from ragtune.answering import Answerer

        started = time.perf_counter()
        answerer = Answerer(base, generator)
        with generations.coming():  # retrieval in parallel; the queue may wait for it
            prepared = answerer.prepare(question, k, None, groups_of(key))
        generation = None
        if answerer.should_generate(prepared):
            generation = generations.generate(answerer.generator, prepared.prompt.messages,
                                              answerer.config(),
                                              answerer.draft_callback(on_token))
        answer = answerer.finish(prepared, generation)
        answerer.relay(answer, on_token)  # only the checked answer is streamed
        metrics.observe_answer(answer.refused)
        recorder.record(base, answer, route=route, key_id=key.id, key_groups=key.groups,
                        latency_ms=(time.perf_counter() - started) * 1000)
        return answer

    @app.post("/v1/ask", tags=["answers"], response_model=None, responses=STREAMED)
    def ask_route(body: AskRequest, key: Reader) -> dict[str, Any] | StreamingResponse:
        base = open_kb(body.kb)

        def answer(on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
            result = answer_for(base, body.question, key, "/v1/ask", body.k, on_token)
            out: dict[str, Any] = result.to_dict(context=False)
            return out

        if not body.stream:
            return answer()
        return StreamingResponse(_events(answer), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.post("/v1/evaluate", tags=["answers"])
    def evaluate_route(body: EvaluateRequest, key: Reader) -> dict[str, Any]:
        """Score up to 50 cases (`ragtune eval` on the server): each answered with the key's
        view of the knowledge base, its metrics, and the summary. Generation waits its turn
        in the shared model's queue."""
        from ragtune.answering.ask import generator_for
        from ragtune.evaluation.cases import parse_case
        from ragtune.evaluation.runner import Evaluator

        base = open_kb(body.kb)
        cases = [parse_case(row, f"cases[{i}]") for i, row in enumerate(body.cases)]
        evaluator = Evaluator(base, body.arch, k=body.k, groups=groups_of(key),
                              generator=generations.proxy(generator_for(settings)))
        run = evaluator.run(cases)
        return {"kb": base.name, "arch": body.arch, "summary": run.summary,
                "cases": [r.to_dict(drafts=False) for r in run.results]}

    Admin = Annotated[KeyRecord, Depends(needs("admin"))]

    def visible_trace(trace: Trace, key: KeyRecord) -> bool:
        """A trace shows passages and a question: only keys holding all its groups (its
        documents' and its asker's) read it."""
        return key.access.holds_all(trace.doc_groups)

    @app.get("/v1/traces", tags=["traces"])
    def list_traces(key: Admin, kb: str | None = None,
                    below: Annotated[float | None, Query(ge=0, le=1)] = None,
                    refused: bool | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """Served answers' traces, newest first, with their online scores; `below`: only
        answers whose groundedness is under it (the ones to read first)."""
        base = open_kb(kb)
        traces = base.store.list_traces(limit=limit, below=below, refused=refused)
        return {"kb": base.name, "traces": [trace_to_dict(t, detail=False) for t in traces
                                            if visible_trace(t, key)]}

    @app.get("/v1/traces/{trace_id}", tags=["traces"])
    def get_trace(trace_id: str, key: Admin, kb: str | None = None) -> dict[str, Any]:
        """One trace: the answer, its passages, the judged claims, timings."""
        base = open_kb(kb)
        trace = base.store.get_trace(trace_id)
        if trace is None or not visible_trace(trace, key):
            raise ApiError(404, "not_found", f"no trace {trace_id!r}")
        return trace_to_dict(trace)

    @app.get("/v1/checklist", tags=["decision"])
    def checklist_questions(key: Reader) -> dict[str, Any]:
        """The nine questions of `ragtune assess`, with their choices (what `/v1/assess`
        takes: one answer per key)."""
        from ragtune.lab.checklist import QUESTIONS

        return {"questions": [{"key": q.key, "text": q.text, "choices": [
            {"value": c.value, "label": c.label} for c in q.choices]} for q in QUESTIONS]}

    @app.post("/v1/assess", tags=["decision"])
    def assess_route(body: AssessRequest, key: Reader) -> dict[str, Any]:
        """The checklist's recommendation (rag, fine-tune, hybrid or neither) with its reasons
        and warnings; `report` names a lab report whose measurements decide among the
        architectures the answers allow."""
        from ragtune.lab.checklist import LAB_FILE, assess, load_evidence

        evidence = None
        if body.report is not None:
            evidence = replace(load_evidence(visible_report(body.report, key) / LAB_FILE),
                               source=f"report {body.report}")  # not a server path
        return assess(body.answers, evidence).to_dict()

    def labs() -> dict[str, Path]:
        """Lab folders under <home>/labs holding a report (`ragtune compare`, `ragtune demo`)."""
        folder = settings.home / "labs"
        if not folder.is_dir():
            return {}
        return {p.name: p for p in sorted(folder.iterdir())
                if (p / "lab.json").is_file() and (p / "report.html").is_file()}

    def lab_summary(folder: Path) -> dict[str, Any]:
        data = json.loads((folder / "lab.json").read_text(encoding="utf-8"))
        exp = data.get("experiment", {})
        rec = data.get("recommendation", {})
        return {"name": folder.name, "experiment": exp.get("name"),
                "created_at": data.get("created_at"), "groups": exp.get("groups", []),
                "recommendation": rec.get("recommendation"),
                "architectures": data.get("order", [])}

    def visible_report(name: str, key: KeyRecord) -> Path:
        """The lab folder, or 404 when missing or when its documents' groups are not the
        key's (exactly like a hidden document)."""
        folder = labs().get(name)
        if folder is None or not visible(key, tuple(lab_summary(folder)["groups"])):
            raise ApiError(404, "not_found", f"no report {name!r}")
        return folder

    @app.get("/v1/reports", tags=["decision"])
    def list_reports(key: Reader) -> dict[str, Any]:
        """Lab reports the key may see (a lab over grouped documents: holders of a group)."""
        summaries = [lab_summary(f) for f in labs().values()]
        return {"reports": [s for s in summaries if visible(key, tuple(s["groups"]))]}

    @app.get("/v1/reports/{name}", tags=["decision"], response_model=None,
             responses={200: {"description": "the report", "content": {"text/html": {}}}})
    def get_report(name: str, key: Reader) -> HTMLResponse:
        """The self-contained HTML report (its own CSP forbids loading anything)."""
        folder = visible_report(name, key)
        return HTMLResponse((folder / "report.html").read_text(encoding="utf-8"))

    @app.get("/v1/reports/{name}/lab.json", tags=["decision"])
    def get_report_data(name: str, key: Reader) -> dict[str, Any]:
        """The lab's measurements (`lab.json`)."""
        folder = visible_report(name, key)
        data: dict[str, Any] = json.loads((folder / "lab.json").read_text(encoding="utf-8"))
        return data

    @app.get("/", include_in_schema=False)
    def web_page() -> FileResponse:
        """The web page: ask, documents, checklist, reports, traces (static files, no build)."""
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def adapters_of(base: KnowledgeBase, key: KeyRecord) -> dict[str, Path]:
        """Adapters trained for this knowledge base (RAFT: `ragtune tune --raft --kb NAME`),
        registered in the data home and still on disk, by folder name (the first of a name),
        that the key may use: its weights learned the documents its examples quoted, so the
        key must be able to read every one of them (an adapter over another tenant's documents
        is not there for it, exactly like a missing one)."""
        from ragtune.tuning.manifest import read_manifest, registered_adapters

        found: dict[str, Path] = {}
        for path in map(Path, registered_adapters(settings.home)):
            try:  # only the manifest: no staleness check (that would re-read every document)
                kb_info = read_manifest(path).knowledge_base
            except InputError:
                continue  # gone or unreadable
            if kb_info is None or kb_info.name != base.name or path.name in found:
                continue
            learned = (base.store.get_document(d) for d in kb_info.document_hashes)
            if key.access.may_read_every(None if d is None else d.groups for d in learned):
                found[path.name] = path
        return found

    @app.get("/v1/models", tags=["openai"])
    def list_models(key: Reader) -> dict[str, Any]:
        """Every knowledge base as a model `kb:<name>`, and with each adapter trained for it
        (the hybrid: retrieval + the adapter) as `kb:<name>+<adapter folder name>`."""
        folder = settings.home / "kb"
        names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

        def models_of(name: str) -> list[str]:
            try:
                base = open_kb(name)
            except ApiError:
                return []  # a folder that holds no knowledge base
            return [f"{MODEL_PREFIX}{name}{suffix}"
                    for suffix in ["", *(f"+{a}" for a in adapters_of(base, key))]]

        ids = [i for n in names for i in models_of(n)]
        return {"object": "list", "data": [
            {"id": i, "object": "model", "created": 0, "owned_by": "ragtune"} for i in ids]}

    @app.post("/v1/chat/completions", tags=["openai"], response_model=None,
              responses=STREAMED)
    def chat_completions(body: ChatRequest, key: Reader) -> dict[str, Any] | StreamingResponse:
        """Grounded answers for any OpenAI client: the model names a knowledge base
        (`kb:<name>`, or `kb:<name>+<adapter>` to answer with an adapter trained for it), the
        last user message is the question, and the checked answer comes back with its
        sources in the message and as an extra `citations` field."""
        from ragtune.answering.ask import generator_for

        if not body.model.startswith(MODEL_PREFIX):
            raise ApiError(404, "not_found", f"unknown model {body.model!r}; models are "
                           f"{MODEL_PREFIX}<knowledge base>[+<adapter>] (GET /v1/models)")
        kb_name, _, adapter = body.model.removeprefix(MODEL_PREFIX).partition("+")
        base = open_kb(kb_name)
        generator = None
        if adapter:
            folder = adapters_of(base, key).get(adapter)
            if folder is None:
                raise ApiError(404, "not_found", f"no adapter {adapter!r} trained for "
                               f"knowledge base {base.name!r} (GET /v1/models)")
            generator = generator_for(settings.model_copy(update={
                "generator": settings.generator.model_copy(update={"adapter": folder})}))
        question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
        if not question.strip():
            raise ApiError(400, "invalid_request", "no user message with text")
        if len(question) > MAX_QUESTION_CHARS:
            raise ApiError(422, "invalid_request", f"messages: the last user message has "
                           f"{len(question):,} characters, over {MAX_QUESTION_CHARS:,}")
        answer = answer_for(base, question, key, "/v1/chat/completions", generator=generator)
        completion = _completion(body.model, answer)
        if not body.stream:
            return completion
        return StreamingResponse(_completion_chunks(completion),
                                 media_type="text/event-stream")

    return app


def _completion(model: str, answer: Any) -> dict[str, Any]:
    """An OpenAI `chat.completion` of a checked answer: sources listed under the text."""
    from ragtune.answering.markup import neutralize_markup

    citations = [c.to_dict() for c in answer.citations]
    content = answer.text
    if citations:  # titles and ids are documents' text too: inert markup, like the answer's
        content += "\n\nSources:\n" + "\n".join(
            f"[{c['number']}] "
            + neutralize_markup(f"{c.get('title') or c['doc_id']} ({c['doc_id']})")
            for c in citations)
    gen = answer.generation
    prompt_tokens = gen.prompt_tokens if gen else 0
    output_tokens = gen.output_tokens if gen else 0
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                  "total_tokens": prompt_tokens + output_tokens},
        "citations": citations, "refused": answer.refused,
    }


def _completion_chunks(completion: dict[str, Any]) -> Iterator[str]:
    """The completion as `chat.completion.chunk` events. The text is the checked answer (a
    refusal replaces an unsupported one), so it is sent once generation is done."""
    base = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"}
    message = completion["choices"][0]["message"]
    first = base | {"choices": [{"index": 0, "finish_reason": None,
                                 "delta": {"role": "assistant", "content": message["content"]}}]}
    last = base | {"choices": [{"index": 0, "finish_reason": "stop", "delta": {}}],
                   "citations": completion["citations"]}
    for chunk in (first, last):
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def _events(run: Callable[[Callable[[str], None]], dict[str, Any]]) -> Iterator[str]:
    """Server-sent events of one answer: the answer runs in a thread, the checked text it
    relays comes as `token` events, and the answer (or the error) ends the stream."""
    queue: Queue[tuple[str, Any]] = Queue()

    def work() -> None:
        try:
            queue.put(("answer", run(lambda text: queue.put(("token", {"text": text})))))
        except InputError as exc:
            queue.put(("error", {"type": "invalid_request", "message": str(exc)}))
        except Exception as exc:  # the stream must end: the error is its last event
            log.exception("streamed answer failed")
            queue.put(("error", {"type": "server_error", "message": str(exc)
                                 if isinstance(exc, RagtuneError) else "internal error"}))

    threading.Thread(target=work, daemon=True).start()
    while True:
        event, data = queue.get()
        yield f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
        if event != "token":
            return


def _upload_name(filename: str | None) -> str:
    """An uploaded file's own name, never a path: the client's folders are dropped."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or name.startswith(".") or len(name) > 200 or any(
            ord(c) < 32 for c in name):
        raise ApiError(422, "invalid_request", f"unusable file name {filename!r}")
    return name


def _doc(d: Any) -> dict[str, Any]:
    return {"id": d.id, "title": d.title, "source": d.source, "format": d.format,
            "version": d.version, "chunks": d.chunks, "groups": list(d.groups),
            "metadata": dict(d.metadata)}


def _version() -> str:
    from ragtune import __version__

    return __version__
