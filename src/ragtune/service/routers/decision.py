"""The decision: the checklist's questions, `assess` (optionally with a lab report's
measurements as evidence) and the lab reports (`ragtune.lab.discovery`): a report over grouped
documents is seen only by keys that may read them, and a hidden one answers 404 like a missing
one."""

from dataclasses import replace
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ragtune.access import Access
from ragtune.lab.discovery import LabReport, find_report, visible_reports
from ragtune.service.deps import ReadAccess, State
from ragtune.service.errors import ApiError
from ragtune.service.schemas import AssessRequest
from ragtune.service.state import ServiceState

router = APIRouter(tags=["decision"])


@router.get("/v1/checklist")
def checklist_questions(access: ReadAccess) -> dict[str, Any]:
    """The nine questions of `ragtune assess`, with their choices (what `/v1/assess`
    takes: one answer per key)."""
    from ragtune.lab.checklist import QUESTIONS

    return {"questions": [{"key": q.key, "text": q.text, "choices": [
        {"value": c.value, "label": c.label} for c in q.choices]} for q in QUESTIONS]}


@router.post("/v1/assess")
def assess_route(body: AssessRequest, access: ReadAccess, state: State) -> dict[str, Any]:
    """The checklist's recommendation (rag, fine-tune, hybrid or neither) with its reasons
    and warnings; `report` names a lab report whose measurements decide among the
    architectures the answers allow."""
    from ragtune.lab.checklist import assess, load_evidence

    evidence = None
    if body.report is not None:
        report = _visible_report(state, body.report, access)
        evidence = replace(load_evidence(report.data_path),
                           source=f"report {body.report}")  # not a server path
    return assess(body.answers, evidence).to_dict()


@router.get("/v1/reports")
def list_reports(access: ReadAccess, state: State) -> dict[str, Any]:
    """Lab reports the key may see (a lab over grouped documents: holders of a group)."""
    return {"reports": [r.to_dict() for r in visible_reports(state.settings.home, access)]}


@router.get("/v1/reports/{name}", response_model=None,
            responses={200: {"description": "the report", "content": {"text/html": {}}}})
def get_report(name: str, access: ReadAccess, state: State) -> HTMLResponse:
    """The self-contained HTML report (its own CSP forbids loading anything)."""
    return HTMLResponse(_visible_report(state, name, access).html())


@router.get("/v1/reports/{name}/lab.json")
def get_report_data(name: str, access: ReadAccess, state: State) -> dict[str, Any]:
    """The lab's measurements (`lab.json`)."""
    return _visible_report(state, name, access).data()


def _visible_report(state: ServiceState, name: str, access: Access) -> LabReport:
    """The report, or 404 when it is missing or the key may not see it (the same answer)."""
    report = find_report(state.settings.home, name, access)
    if report is None:
        raise ApiError(404, "not_found", f"no report {name!r}")
    return report
