"""Answers: `/v1/ask` (one grounded, checked answer, as JSON or server-sent events) and
`/v1/evaluate` (`ragtune eval` over a few cases). Both see only what the key may read, and
their generation waits its turn in the shared model's queue (`ServiceState.answer`)."""

import json
import logging
import threading
from collections.abc import Callable, Iterator
from functools import partial
from queue import Queue
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ragtune.errors import InputError, RagtuneError
from ragtune.kb import KnowledgeBase
from ragtune.service.deps import ReadAccess, Reader, State
from ragtune.service.keys import KeyRecord
from ragtune.service.schemas import STREAMED, AskRequest, EvaluateRequest
from ragtune.service.state import ServiceState

log = logging.getLogger("ragtune.service")
router = APIRouter(tags=["answers"])


@router.post("/v1/ask", response_model=None, responses=STREAMED)
def ask_route(body: AskRequest, key: Reader, state: State) -> dict[str, Any] | StreamingResponse:
    answer = partial(_answer_json, state, state.open_kb(body.kb), body, key)
    if not body.stream:
        return answer()
    return StreamingResponse(_events(answer, body.drafts), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/v1/evaluate")
def evaluate_route(body: EvaluateRequest, access: ReadAccess, state: State) -> dict[str, Any]:
    """Score up to 50 cases (`ragtune eval` on the server): each answered with the key's
    view of the knowledge base, its metrics, and the summary. Generation waits its turn
    in the shared model's queue."""
    from ragtune.answering.ask import generator_for
    from ragtune.cases import parse_case
    from ragtune.evaluation.runner import Evaluator

    base = state.open_kb(body.kb)
    cases = [parse_case(row, f"cases[{i}]") for i, row in enumerate(body.cases)]
    evaluator = Evaluator(base, body.arch, k=body.k, groups=access.view,
                          generator=state.generations.proxy(generator_for(state.settings)))
    run = evaluator.run(cases)
    return {"kb": base.name, "arch": body.arch, "summary": run.summary,
            "cases": [r.to_dict(drafts=False) for r in run.results]}


def _answer_json(state: ServiceState, base: KnowledgeBase, body: AskRequest, key: KeyRecord,
                 on_token: Callable[[str], None] | None = None,
                 on_draft: Callable[[str], None] | None = None) -> dict[str, Any]:
    result = state.answer(base, body.question, key, "/v1/ask", body.k, on_token,
                          on_draft=on_draft,
                          on_unverified="mark" if body.allow_unverified else None)
    out: dict[str, Any] = result.to_dict(context=False)
    return out


def _events(run: Callable[..., dict[str, Any]], drafts: bool = False) -> Iterator[str]:
    """Server-sent events of one answer: the answer runs in a thread; with `drafts` the
    unchecked draft comes as `draft` events while it is generated, then the checked text as
    `token` events, and the answer (or the error) ends the stream."""
    queue: Queue[tuple[str, Any]] = Queue()

    def work() -> None:
        draft = (lambda text: queue.put(("draft", {"text": text}))) if drafts else None
        try:
            queue.put(("answer", run(lambda text: queue.put(("token", {"text": text})),
                                     draft)))
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
        if event not in ("token", "draft"):
            return
