"""Health, readiness and metrics: `/healthz` and `/readyz` need no key (load balancers call
them and they say nothing else); `/metrics` covers every tenant, so only the operator reads it."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from ragtune.service.deps import AdminAccess, State
from ragtune.service.errors import ApiError, error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(state: State) -> dict[str, Any] | JSONResponse:
    """200 once the models are loaded (503 before: route traffic elsewhere meanwhile)."""
    if not state.ready.is_set():
        return error_response(503, "not_ready", "loading the models")
    return {"status": "ready"}  # nothing more: this route needs no key


@router.get("/metrics", response_model=None,
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {}}}})
def metrics_route(access: AdminAccess, state: State) -> PlainTextResponse:
    """Prometheus text format (an admin key without groups: the figures cover every
    tenant; scrape with a bearer token)."""
    if not access.everything:
        raise ApiError(403, "forbidden", "the metrics cover every tenant: only an admin "
                       "key without groups reads them")
    return PlainTextResponse(state.metrics.render())
