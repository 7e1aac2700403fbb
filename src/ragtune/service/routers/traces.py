"""Served answers' traces (admin keys): a trace shows passages and a question, so only a key
holding every group it was drawn from (its documents' and its asker's) reads it."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ragtune.evaluation.online import trace_to_dict
from ragtune.service.deps import AdminAccess, State
from ragtune.service.errors import ApiError

router = APIRouter(tags=["traces"])


@router.get("/v1/traces")
def list_traces(access: AdminAccess, state: State, kb: str | None = None,
                below: Annotated[float | None, Query(ge=0, le=1)] = None,
                refused: bool | None = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """Served answers' traces, newest first, with their online scores; `below`: only
    answers whose groundedness is under it (the ones to read first)."""
    base = state.open_kb(kb)
    traces = base.store.list_traces(limit=limit, below=below, refused=refused)
    return {"kb": base.name, "traces": [trace_to_dict(t, detail=False) for t in traces
                                        if access.holds_all(t.doc_groups)]}


@router.get("/v1/traces/{trace_id}")
def get_trace(trace_id: str, access: AdminAccess, state: State,
              kb: str | None = None) -> dict[str, Any]:
    """One trace: the answer, its passages, the judged claims, timings."""
    base = state.open_kb(kb)
    trace = base.store.get_trace(trace_id)
    if trace is None or not access.holds_all(trace.doc_groups):
        raise ApiError(404, "not_found", f"no trace {trace_id!r}")
    return trace_to_dict(trace)
