"""The HTTP API (FastAPI): thin routes over the library, keys and access groups enforced.

    >>> app = create_app(Settings.load())              # what `ragtune serve` runs
    >>> # GET /healthz; /v1/documents, /v1/search, /v1/ask with "Authorization: Bearer rt_..."

Every route under `/v1/` needs a key (`ragtune keys create`); its scope decides what the route
may do and its groups what the caller sees: retrieval, answers, citations and document listings
only ever come from documents the key may read (`ragtune.access`). A document the key may not
see answers 404, exactly like one that does not exist. Errors have one shape:
`{"error": {"type": "...", "message": "..."}}` (`ragtune.service.errors`).

The package, one module per concern: `state` (what the routes share: knowledge bases, the
shared model's queue, the trace recorder, metrics, keys), `deps` (the state and the calling
key or its `Access`, as FastAPI dependencies), `routers/` (one `APIRouter` per area: health
and metrics; documents; keys; search; answers; traces; the decision: checklist, `assess`, lab
reports; the web page at `/`; the OpenAI-compatible `/v1/models` + `/v1/chat/completions`),
`schemas` (request bodies), `guards` (body limits, header timeouts, rate limits). Every
answer's generation goes through one queue on the shared local model (batching the answers
that wait together) and, sampled, to the trace recorder (`ragtune.evaluation.online`), which
scores it off the request path.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ragtune.config import Settings
from ragtune.service.errors import install_error_handlers
from ragtune.service.guards import BodyLimit, check_bind, header_timeout_protocol
from ragtune.service.keys import KeyStore
from ragtune.service.metrics import RequestMetrics
from ragtune.service.routers import ROUTERS
from ragtune.service.routers.web import STATIC
from ragtune.service.schemas import ERRORS, MAX_BODY_BYTES
from ragtune.service.state import ServiceState

__all__ = ["MAX_BODY_BYTES", "check_bind", "create_app", "header_timeout_protocol"]


def create_app(settings: Settings, keys: KeyStore | None = None, warm: bool = True
               ) -> FastAPI:
    """The service for one data home. Knowledge bases open on first use and stay open;
    `warm` loads the embedder and the generator in the background (`/readyz` says when)."""
    state = ServiceState(settings, keys or KeyStore.open(settings))
    # No /docs or /redoc: they load their scripts from a CDN (an offline product serves none);
    # the schema itself is at /openapi.json.
    app = FastAPI(title="ragtune", version=_version(), responses=ERRORS, docs_url=None,
                  redoc_url=None,
                  description="Grounded answers from your documents, with citations, "
                              "API keys and per-document access groups.")
    app.state.service = state
    # tests and shutdown reach these two directly: recorder.flush(), generations.batches
    app.state.recorder, app.state.generations = state.recorder, state.generations
    install_error_handlers(app)
    # registered first, so inside the request metrics: refusals are counted too
    app.add_middleware(BodyLimit, limit_for=state.body_limit,
                       timeout=settings.service.body_timeout_s)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    state.start(warm)
    return app


def _version() -> str:
    from ragtune import __version__

    return __version__
