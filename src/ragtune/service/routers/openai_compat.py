"""The OpenAI-compatible endpoints: `/v1/models` (each knowledge base is a model `kb:<name>`,
and `kb:<name>+<adapter>` with each adapter trained for it that the key may use) and
`/v1/chat/completions` (the last user message is the question; the checked answer comes back
with its sources in the message and as an extra `citations` field)."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ragtune.access import Access
from ragtune.answering import Answer
from ragtune.kb import KnowledgeBase
from ragtune.models.generators import Generator
from ragtune.service.deps import ReadAccess, Reader, State
from ragtune.service.errors import ApiError
from ragtune.service.schemas import (
    MAX_QUESTION_CHARS,
    MODEL_PREFIX,
    STREAMED,
    ChatMessage,
    ChatRequest,
)
from ragtune.service.state import ServiceState
from ragtune.tuning.adapters import adapters_for

router = APIRouter(tags=["openai"])


@router.get("/v1/models")
def list_models(access: ReadAccess, state: State) -> dict[str, Any]:
    """Every knowledge base as a model `kb:<name>`, and with each adapter trained for it
    (the hybrid: retrieval + the adapter) as `kb:<name>+<adapter folder name>`."""
    ids = [i for name in state.kb_names() for i in _model_ids(state, name, access)]
    return {"object": "list", "data": [
        {"id": i, "object": "model", "created": 0, "owned_by": "ragtune"} for i in ids]}


@router.post("/v1/chat/completions", response_model=None, responses=STREAMED)
def chat_completions(body: ChatRequest, key: Reader, state: State
                     ) -> dict[str, Any] | StreamingResponse:
    """Grounded answers for any OpenAI client: the model names a knowledge base
    (`kb:<name>`, or `kb:<name>+<adapter>` to answer with an adapter trained for it), the
    last user message is the question, and the checked answer comes back with its
    sources in the message and as an extra `citations` field."""
    kb_name, adapter = _parse_model(body.model)
    base = state.open_kb(kb_name)
    generator = _adapter_generator(state, base, key.access, adapter) if adapter else None
    question = _question(body.messages)
    answer = state.answer(base, question, key, "/v1/chat/completions", generator=generator)
    completion = _completion(body.model, answer)
    if not body.stream:
        return completion
    return StreamingResponse(_completion_chunks(completion), media_type="text/event-stream")


def _model_ids(state: ServiceState, name: str, access: Access) -> list[str]:
    """The models of knowledge base `name`: itself, and with each adapter the key may use."""
    try:
        base = state.open_kb(name)
    except ApiError:
        return []  # a folder that holds no knowledge base
    adapters = adapters_for(state.settings.home, base, access)
    return [f"{MODEL_PREFIX}{name}{suffix}" for suffix in ["", *(f"+{a}" for a in adapters)]]


def _parse_model(model: str) -> tuple[str, str]:
    """(knowledge base, adapter or "") of a model name `kb:<name>[+<adapter>]`."""
    if not model.startswith(MODEL_PREFIX):
        raise ApiError(404, "not_found", f"unknown model {model!r}; models are "
                       f"{MODEL_PREFIX}<knowledge base>[+<adapter>] (GET /v1/models)")
    kb_name, _, adapter = model.removeprefix(MODEL_PREFIX).partition("+")
    return kb_name, adapter


def _adapter_generator(state: ServiceState, base: KnowledgeBase, access: Access,
                       adapter: str) -> Generator:
    """The generator with `adapter` (one trained for `base` that the key may use; 404 for
    any other, exactly like a missing one)."""
    from ragtune.answering.ask import generator_for

    folder = adapters_for(state.settings.home, base, access).get(adapter)
    if folder is None:
        raise ApiError(404, "not_found", f"no adapter {adapter!r} trained for "
                       f"knowledge base {base.name!r} (GET /v1/models)")
    settings = state.settings
    return generator_for(settings.model_copy(update={
        "generator": settings.generator.model_copy(update={"adapter": folder})}))


def _question(messages: list[ChatMessage]) -> str:
    """The last user message's text: the question (400 without one, 422 when too long)."""
    question = next((m.text() for m in reversed(messages) if m.role == "user"), "")
    if not question.strip():
        raise ApiError(400, "invalid_request", "no user message with text")
    if len(question) > MAX_QUESTION_CHARS:
        raise ApiError(422, "invalid_request", f"messages: the last user message has "
                       f"{len(question):,} characters, over {MAX_QUESTION_CHARS:,}")
    return question


def _completion(model: str, answer: Answer) -> dict[str, Any]:
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
        "verification": None if answer.verification is None
        else answer.verification.to_dict(),
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
                   "citations": completion["citations"],
                   "verification": completion["verification"]}
    for chunk in (first, last):
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
